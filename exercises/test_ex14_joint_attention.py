"""Grader for exercise 14: python -m pytest exercises/test_ex14_joint_attention.py"""
import pytest
import torch

from exercises._grading import FP32, check_close, check_shape, copy_weights, load, require
from minidit.mmdit import JointBlock as Reference

ex = load("ex14_joint_attention")
B, T, L, D, HEADS = 2, 15, 7, 32, 4          # odd token counts, so a mixed-up split shows
KINDS = {"SD3": {}, "SD3.5 (QK-norm)": {"qk_norm": "rms"}, "MMDiT-X": {"qk_norm": "rms", "x_block_self_attn": True},
         "last layer (pre_only)": {"pre_only": True}}


def make_blocks(kind, seed=0):
    torch.manual_seed(seed)
    ref = Reference(D, HEADS, **KINDS[kind]).eval()
    with torch.no_grad():                    # random everywhere, also the gates
        for p in ref.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    student = ex.JointBlock(D, HEADS, **KINDS[kind]).eval()
    copy_weights(ref, student)
    return ref, student


def make_inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, D, generator=g), torch.randn(B, T, D, generator=g), torch.randn(B, D, generator=g)


def test_output_shapes():
    _, student = make_blocks("SD3")
    context, x, c = make_inputs()
    with torch.no_grad():
        out = student(context, x, c)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError("forward should return a pair (context, x)")
    check_shape(out[0], (B, L, D), "the new context (text tokens)")
    check_shape(out[1], (B, T, D), "the new x (image tokens)")


@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_reference(kind):
    ref, student = make_blocks(kind)
    context, x, c = make_inputs()
    with torch.no_grad():
        got, expected = student(context, x, c), ref(context, x, c)
    if kind == "last layer (pre_only)":
        assert got[0] is None, "after a pre_only context block the text stream ends: return None for it"
    else:
        check_close(got[0], expected[0], f"the new context ({kind})", tol=FP32)
    check_close(got[1], expected[1], f"the new x ({kind})", tol=FP32)


def test_text_and_image_see_each_other():
    # Hand-derived: the attention is joint, so changing only the text tokens changes the image
    # stream's output, and changing only the image tokens changes the text stream's output.
    _, student = make_blocks("SD3")
    context, x, c = make_inputs()
    other_context, other_x, _ = make_inputs(seed=2)     # (a constant shift would vanish in the LayerNorm)
    with torch.no_grad():
        base = student(context, x, c)
        other_text = student(other_context, x, c)
        other_image = student(context, other_x, c)
    assert (other_text[1] - base[1]).abs().max() > 1e-3, "the image tokens do not see the text tokens"
    assert (other_image[0] - base[0]).abs().max() > 1e-3, "the text tokens do not see the image tokens"


def test_matches_diffusers_joint_transformer_block():
    # An independent implementation: diffusers' JointTransformerBlock given the same weights
    # (its q/k/v split per stream, docs/checkpoints.md#sd3-mm-dit-layouts).
    JointTransformerBlock = require("diffusers.models.attention", "'diffusers>=0.42'").JointTransformerBlock
    ref, student = make_blocks("SD3")
    other = JointTransformerBlock(D, HEADS, D // HEADS, context_pre_only=False).eval()
    sd = ref.state_dict()
    mapped = {}
    for prefix, names in (("x_block.", ("to_q", "to_k", "to_v")), ("context_block.", ("add_q_proj", "add_k_proj",
                                                                                       "add_v_proj"))):
        for kind in ("weight", "bias"):
            for name, part in zip(names, sd[f"{prefix}attn.qkv.{kind}"].chunk(3)):
                mapped[f"attn.{name}.{kind}"] = part
    for kind in ("weight", "bias"):
        mapped[f"attn.to_out.0.{kind}"] = sd[f"x_block.attn.proj.{kind}"]
        mapped[f"attn.to_add_out.{kind}"] = sd[f"context_block.attn.proj.{kind}"]
        mapped[f"norm1.linear.{kind}"] = sd[f"x_block.adaLN_modulation.1.{kind}"]
        mapped[f"norm1_context.linear.{kind}"] = sd[f"context_block.adaLN_modulation.1.{kind}"]
        for ours, theirs in (("x_block.mlp.fc1", "ff.net.0.proj"), ("x_block.mlp.fc2", "ff.net.2"),
                             ("context_block.mlp.fc1", "ff_context.net.0.proj"),
                             ("context_block.mlp.fc2", "ff_context.net.2")):
            mapped[f"{theirs}.{kind}"] = sd[f"{ours}.{kind}"]
    other.load_state_dict(mapped)
    context, x, c = make_inputs()
    with torch.no_grad():
        got = student(context, x, c)
        expected_context, expected_x = other(hidden_states=x, encoder_hidden_states=context, temb=c)
    check_close(got[1], expected_x, "the new x vs diffusers' JointTransformerBlock", tol=FP32)
    check_close(got[0], expected_context, "the new context vs diffusers' JointTransformerBlock", tol=FP32)
