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
        check_close(student(x, y, t0, mask, (3, 5)), ref(x, y, t0, mask, (3, 5)), "block output")


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
                    "block output with closed gates (should be x + cross_attn(x, y, mask))")


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
