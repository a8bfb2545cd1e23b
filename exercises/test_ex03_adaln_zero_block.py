"""Grader for exercise 3: python -m pytest exercises/test_ex03_adaln_zero_block.py"""
import torch

from exercises._grading import EXACT, check_close, check_shape, copy_weights, load
from minidit.dit import DiTBlock as ReferenceDiTBlock

ex = load("ex03_adaln_zero_block")
GATE = ("The gate multiplies the residual; it multiplies the branch's output: "
        "x = x + gate * attn(...), not x = gate * x + attn(...).")

B, T, D, HEADS = 2, 5, 12, 3          # small odd sizes, so that mixed-up axes show


def _student_block(seed=0):
    """The student's block holding the weights of a seeded reference block (init order cannot matter)."""
    torch.manual_seed(seed)
    reference = ReferenceDiTBlock(D, HEADS, mlp_ratio=2.0)
    # The reference initialises adaLN_modulation like any Linear; make it clearly non-zero.
    torch.nn.init.normal_(reference.adaLN_modulation[1].weight, std=0.3)
    torch.nn.init.normal_(reference.adaLN_modulation[1].bias, std=0.3)
    student = ex.DiTBlock(D, HEADS, mlp_ratio=2.0)
    copy_weights(reference, student)
    return student.eval(), reference.eval()


def _set_modulation(block, shift_msa=0.0, scale_msa=0.0, gate_msa=0.0, shift_mlp=0.0, scale_mlp=0.0,
                    gate_mlp=0.0):
    """Make adaLN_modulation ignore c and output these six constants (weight 0, bias = the values)."""
    linear = block.adaLN_modulation[1]
    values = [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.cat([torch.as_tensor(v, dtype=torch.float32).expand(D) for v in values]))


def test_modulate_hand_derived():
    x = torch.full((2, 3, 4), 2.0)
    shift = torch.tensor([[2.0] * 4, [0.0] * 4])
    scale = torch.tensor([[3.0] * 4, [-1.0] * 4])
    out = ex.modulate(x, shift, scale)
    check_shape(out, (2, 3, 4), "modulate(x (2, 3, 4), shift (2, 4), scale (2, 4))")
    # sample 0: 2 * (1 + 3) + 2 = 10 everywhere; sample 1: 2 * (1 - 1) + 0 = 0 everywhere
    expected = torch.stack([torch.full((3, 4), 10.0), torch.zeros(3, 4)])
    mistakes = {"shift and scale are swapped: modulate is x * (1 + scale) + shift.":
                    torch.stack([torch.full((3, 4), 9.0), torch.full((3, 4), 1.0)]),
                'the "1 +" is missing: modulate is x * (1 + scale) + shift, so a zero scale keeps x.':
                    torch.stack([torch.full((3, 4), 8.0), torch.full((3, 4), -2.0)])}
    check_close(out, expected, "modulate(x = 2) with shift=2, scale=3 (sample 0) and shift=0, scale=-1 (sample 1)",
                mistakes=mistakes)


def test_forward_shape():
    block, _ = _student_block()
    out = block(torch.randn(B, T, D), torch.randn(B, D))
    check_shape(out, (B, T, D), f"DiTBlock(D={D}, heads={HEADS}) on x of shape {(B, T, D)}")


def test_zero_initialised_block_is_identity():
    # adaLN-Zero: with the modulation Linear at zero, both gates are zero and the block returns x.
    block, _ = _student_block()
    _set_modulation(block)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        h = block.attn(block.norm1(x))
        gate_on_residual = block.mlp(block.norm2(h))
    check_close(block(x, torch.randn(B, D)), x, "a block whose adaLN_modulation is zero (should be the identity)",
                tol=EXACT, mistakes={GATE: gate_on_residual})


def test_attention_branch_and_chunk_order():
    # Only the attention branch open (gate_msa = 0.5, gate_mlp = 0), with known shift/scale:
    #   out = x + 0.5 * attn(norm1(x) * (1 + 0.3) + 0.2)
    block, _ = _student_block()
    _set_modulation(block, shift_msa=0.2, scale_msa=0.3, gate_msa=0.5, shift_mlp=9.0, scale_mlp=9.0)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        expected = x + 0.5 * block.attn(block.norm1(x) * 1.3 + 0.2)
        swapped = x + 0.5 * block.attn(block.norm1(x) * 1.2 + 0.3)
        x1 = 0.5 * x + block.attn(block.norm1(x) * 1.3 + 0.2)
        gate_on_residual = block.mlp(block.norm2(x1) * 10 + 9)
        got = block(x, torch.randn(B, D))
    check_close(got, expected, "attention branch with (shift, scale, gate)_msa = (0.2, 0.3, 0.5) and gate_mlp = 0 "
                "— check the chunk order shift, scale, gate",
                mistakes={"shift_msa and scale_msa are swapped: the chunks are shift, scale, gate.": swapped,
                          GATE: gate_on_residual})


def test_mlp_branch_and_chunk_order():
    # Only the MLP branch open: out = x + (-0.7) * mlp(norm2(x) * (1 - 0.4) + 0.1)
    block, _ = _student_block()
    _set_modulation(block, shift_msa=9.0, scale_msa=9.0, shift_mlp=0.1, scale_mlp=-0.4, gate_mlp=-0.7)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        expected = x - 0.7 * block.mlp(block.norm2(x) * 0.6 + 0.1)
        got = block(x, torch.randn(B, D))
    check_close(got, expected, "MLP branch with (shift, scale, gate)_mlp = (0.1, -0.4, -0.7) and gate_msa = 0 "
                "— check the chunk order and that the MLP branch sees norm2(x) of the updated x")


def test_mlp_branch_sees_the_attention_output():
    # Both branches open: the MLP normalises the x that the attention branch updated (sequential,
    # not parallel): x1 = x + 0.5 * attn(norm1(x)), out = x1 + 0.8 * mlp(norm2(x1) * 1.1 - 0.3).
    block, _ = _student_block(seed=3)
    _set_modulation(block, gate_msa=0.5, shift_mlp=-0.3, scale_mlp=0.1, gate_mlp=0.8)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        x1 = x + 0.5 * block.attn(block.norm1(x))
        expected = x1 + 0.8 * block.mlp(block.norm2(x1) * 1.1 - 0.3)
        parallel = x1 + 0.8 * block.mlp(block.norm2(x) * 1.1 - 0.3)
        got = block(x, torch.randn(B, D))
    check_close(got, expected, "both branches open (gate_msa = 0.5, (shift, scale, gate)_mlp = (-0.3, 0.1, 0.8))",
                mistakes={"The MLP branch normalises the block's input x; it must see the x the attention "
                          "branch has just updated (the branches run one after the other).": parallel})


def test_conditioning_is_per_sample():
    # Two samples with different c must be modulated differently: compare each with a batch of one.
    block, _ = _student_block(seed=1)
    x, c = torch.randn(B, T, D), torch.randn(B, D)
    with torch.no_grad():
        together = block(x, c)
        alone = torch.cat([block(x[i:i + 1], c[i:i + 1]) for i in range(B)])
    check_close(together, alone, "block(x, c) on a batch vs one sample at a time")


def test_matches_minidit_block():
    block, reference = _student_block(seed=2)
    x, c = torch.randn(B, T, D), torch.randn(B, D)
    with torch.no_grad():
        check_close(block(x, c), reference(x, c), "DiTBlock(x, c) vs minidit's DiTBlock")
