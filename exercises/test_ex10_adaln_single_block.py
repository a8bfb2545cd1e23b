"""Grader for exercise 10: python -m pytest exercises/test_ex10_adaln_single_block.py"""
import torch

from exercises._grading import check_close, check_shape, copy_weights, load, require
from minidit.pixart import PixArtBlock as Reference

ex = load("ex10_adaln_single_block")
B, T, L, D, HEADS = 2, 15, 7, 24, 3          # odd sizes, so mixed-up dimensions show


def make_blocks(seed=0):
    torch.manual_seed(seed)
    ref = Reference(D, HEADS).eval()
    with torch.no_grad():                    # the official init zeroes the cross-attention output
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    student = ex.PixArtBlock(D, HEADS).eval()
    copy_weights(ref, student)
    return ref, student


def _variant(block, x, y, t0, mask, hw, table="add", cross="plain"):
    """The block written out with one of the usual mistakes, on `block`'s own layers. table: "add" (right),
    "t0_as_D_by_6" (t0 reshaped (B, D, 6)), "no_table" (t0 alone), "no_t0" (the table alone);
    cross: "plain" (right), "gated" (times gate_msa), "normed" (on norm2(x))."""
    B, D = x.shape[0], x.shape[-1]
    rows = {"add": lambda: block.scale_shift_table[None] + t0.reshape(B, 6, D),
            "t0_as_D_by_6": lambda: block.scale_shift_table[None] + t0.reshape(B, D, 6).transpose(1, 2),
            "no_table": lambda: t0.reshape(B, 6, D),
            "no_t0": lambda: block.scale_shift_table[None].expand(B, 6, D)}[table]()
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = rows.chunk(6, dim=1)
    x = x + gate_msa * block.attn(block.norm1(x) * (1 + scale_msa) + shift_msa, hw)
    x = x + {"plain": lambda: block.cross_attn(x, y, mask), "gated": lambda: gate_msa * block.cross_attn(x, y, mask),
             "normed": lambda: block.cross_attn(block.norm2(x), y, mask)}[cross]()
    return x + gate_mlp * block.mlp(block.norm2(x) * (1 + scale_mlp) + shift_mlp)


MISTAKES = {"t0 is read as (B, D, 6): reshape it to (B, 6, D), one row per shift/scale/gate, like the table.":
            {"table": "t0_as_D_by_6"},
            "scale_shift_table is not used: the six vectors are scale_shift_table[None] + t0.reshape(B, 6, D).":
            {"table": "no_table"},
            "t0 is not used: the six vectors are scale_shift_table[None] + t0.reshape(B, 6, D).": {"table": "no_t0"},
            "The cross-attention has a gate: x = x + cross_attn(x, y, mask), no gate.": {"cross": "gated"},
            "The cross-attention reads a normalised x: x = x + cross_attn(x, y, mask), no norm.": {"cross": "normed"}}


def make_inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, T, D, generator=g), torch.randn(B, L, D, generator=g)
    t0 = 0.5 * torch.randn(B, 6 * D, generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 3:] = False                      # the second caption has 3 real tokens
    return x, y, t0, mask


def test_output_shape():
    _, student = make_blocks()
    x, y, t0, mask = make_inputs()
    with torch.no_grad():
        check_shape(student(x, y, t0, mask, (3, 5)), (B, T, D), "block(x (2, 15, 24), y, t0, mask)")


def test_matches_reference():
    ref, student = make_blocks()
    x, y, t0, mask = make_inputs()
    with torch.no_grad():
        mistakes = {hint: _variant(ref, x, y, t0, mask, (3, 5), **kw) for hint, kw in MISTAKES.items()}
        check_close(student(x, y, t0, mask, (3, 5)), ref(x, y, t0, mask, (3, 5)), "block output", mistakes=mistakes)


def test_closed_gates_leave_only_cross_attention():
    # Hand-derived: with t0 = 0 and the gate rows (2 and 5) of the table at 0, self-attention and
    # MLP are switched off, and the block is x + cross_attn(x, y, mask) — cross-attention has no gate.
    _, student = make_blocks()
    with torch.no_grad():
        student.scale_shift_table[2] = 0
        student.scale_shift_table[5] = 0
        x, y, _, mask = make_inputs()
        expected = x + student.cross_attn(x, y, mask)
        check_close(student(x, y, torch.zeros(B, 6 * D), mask, (3, 5)), expected,
                    "block output with closed gates (should be x + cross_attn(x, y, mask))",
                    mistakes={"The cross-attention has a gate: x = x + cross_attn(x, y, mask), no gate.": x})


def test_padding_tokens_are_ignored():
    _, student = make_blocks()
    x, y, t0, mask = make_inputs()
    y2 = y.clone()
    y2[1, 3:] = 50 * torch.randn(L - 3, D)
    with torch.no_grad():
        check_close(student(x, y2, t0, mask, (3, 5)), student(x, y, t0, mask, (3, 5)),
                    "output when only masked caption tokens change (pass the mask to cross_attn)")


def test_matches_diffusers_basic_transformer_block():
    # An independent implementation: diffusers' BasicTransformerBlock(norm_type="ada_norm_single"),
    # given the same weights (q/k/v and k/v split as in docs/checkpoints.md#fused-attention-weights).
    BasicTransformerBlock = require("diffusers.models.attention", "'diffusers>=0.42'").BasicTransformerBlock
    ref, student = make_blocks()
    other = BasicTransformerBlock(D, HEADS, D // HEADS, cross_attention_dim=D, activation_fn="gelu-approximate",
                                  num_embeds_ada_norm=1000, attention_bias=True, norm_type="ada_norm_single",
                                  norm_elementwise_affine=False, norm_eps=1e-6).eval()
    sd = ref.state_dict()
    q, k, v = sd["attn.qkv.weight"].chunk(3)
    qb, kb, vb = sd["attn.qkv.bias"].chunk(3)
    k2, v2 = sd["cross_attn.kv_linear.weight"].chunk(2)
    k2b, v2b = sd["cross_attn.kv_linear.bias"].chunk(2)
    other.load_state_dict({
        "scale_shift_table": sd["scale_shift_table"],
        "attn1.to_q.weight": q, "attn1.to_q.bias": qb, "attn1.to_k.weight": k, "attn1.to_k.bias": kb,
        "attn1.to_v.weight": v, "attn1.to_v.bias": vb,
        "attn1.to_out.0.weight": sd["attn.proj.weight"], "attn1.to_out.0.bias": sd["attn.proj.bias"],
        "attn2.to_q.weight": sd["cross_attn.q_linear.weight"], "attn2.to_q.bias": sd["cross_attn.q_linear.bias"],
        "attn2.to_k.weight": k2, "attn2.to_k.bias": k2b, "attn2.to_v.weight": v2, "attn2.to_v.bias": v2b,
        "attn2.to_out.0.weight": sd["cross_attn.proj.weight"], "attn2.to_out.0.bias": sd["cross_attn.proj.bias"],
        "ff.net.0.proj.weight": sd["mlp.fc1.weight"], "ff.net.0.proj.bias": sd["mlp.fc1.bias"],
        "ff.net.2.weight": sd["mlp.fc2.weight"], "ff.net.2.bias": sd["mlp.fc2.bias"]})
    x, y, t0, mask = make_inputs()
    bias = (~mask).float()[:, None] * -10000.0                        # diffusers' mask format (B, 1, L)
    with torch.no_grad():
        expected = other(x, encoder_hidden_states=y, encoder_attention_mask=bias, timestep=t0)
        check_close(student(x, y, t0, mask, (3, 5)), expected, "block output vs diffusers")
