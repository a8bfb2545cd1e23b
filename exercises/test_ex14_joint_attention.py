"""Grader for exercise 14: python -m pytest exercises/test_ex14_joint_attention.py"""
import pytest
import torch

from exercises._grading import FP32, check_close, check_shape, copy_weights, load, require
from minidit.attention import merge_heads
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


def _attention(q, k, v, scale=True):
    w = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5 if scale else 1.0)
    return merge_heads(w.softmax(-1) @ v)


def _variant(block, context, x, c, image_first=False, joint=True, qkv2=True, scale=True):
    """The layer written out with one of the usual mistakes (on the reference's half-blocks):
    image_first: q, k, v concatenated [image, text] but cut as if the text came first;
    joint=False: each stream attends only to itself; qkv2=False: MMDiT-X's image-only attention dropped;
    scale=False: softmax(q k^T) without the 1/sqrt(head_dim)."""
    ctx_qkv, _, ctx_mods = block.context_block.pre_attention(context, c)
    x_qkv, x_qkv2, x_mods = block.x_block.pre_attention(x, c)
    L = context.shape[1]
    if joint:
        pairs = zip(x_qkv, ctx_qkv) if image_first else zip(ctx_qkv, x_qkv)
        out = _attention(*(torch.cat(pair, dim=2) for pair in pairs), scale=scale)
        text, image = out[:, :L], out[:, L:]
    else:
        text, image = _attention(*ctx_qkv, scale=scale), _attention(*x_qkv, scale=scale)
    attn2 = _attention(*x_qkv2, scale=scale) if x_qkv2 is not None and qkv2 else None
    new_x = block.x_block.post_attention(x, image, attn2, x_mods)
    new_context = None if block.context_block.pre_only else block.context_block.post_attention(
        context, text, None, ctx_mods)
    return new_context, new_x


MISTAKES = {"You concatenated [image, text] but cut the output as if the text came first: the text goes "
            "first, cat([text, image]), and the first L tokens are the text's.": {"image_first": True},
            "Each stream attends only to itself: the attention is joint, one attention over the "
            "concatenated text and image tokens.": {"joint": False},
            "The image stream's extra self-attention (qkv2, MMDiT-X) is missing: pass "
            "merge_heads(attention(*qkv2)) to x_block.post_attention.": {"qkv2": False},
            "Your attention has no 1/sqrt(head_dim) scale: use minidit's attention(q, k, v).": {"scale": False}}


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
        wrong = {hint: _variant(ref, context, x, c, **kw) for hint, kw in MISTAKES.items()}
    if kind == "last layer (pre_only)":
        assert got[0] is None, "after a pre_only context block the text stream ends: return None for it"
    else:
        check_close(got[0], expected[0], f"the new context ({kind})", tol=FP32,
                    mistakes={hint: out[0] for hint, out in wrong.items()})
    check_close(got[1], expected[1], f"the new x ({kind})", tol=FP32,
                mistakes={hint: out[1] for hint, out in wrong.items()})


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
