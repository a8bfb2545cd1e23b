"""Exercise 14 — MM-DiT's joint attention (chapter 08_mmdit).

SD3 has no cross-attention. Each layer holds two half-blocks, one per stream — `context_block` for
the text tokens, `x_block` for the image tokens — each with its own adaLN, q/k/v, output projection
and MLP (`minidit.mmdit.DismantledBlock`). Their q, k, v are concatenated along the SEQUENCE, text
first, and one attention runs over the joint sequence: every image token sees every text token and
vice versa. Then the output is cut back into the two streams, and each stream finishes its own
block. Write the layer's forward; the two half-blocks are created for you with the checkpoint's
names, so the released weights would load into your layer. Then check yourself:

    python -m pytest exercises/test_ex14_joint_attention.py
"""
import torch
from torch import nn

from minidit.attention import attention, merge_heads  # noqa: F401  (you will need both)
from minidit.mmdit import DismantledBlock

# The minidit class this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"JointBlock": "minidit.mmdit:JointBlock"}


class JointBlock(nn.Module):
    """One MM-DiT layer: text and image tokens in one attention, each stream with its own weights."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, pre_only: bool = False,
                 qk_norm: str | None = None, x_block_self_attn: bool = False):
        super().__init__()
        # We create the layers for you (names = keys of the official checkpoint `joint_blocks.i.*`).
        self.context_block = DismantledBlock(dim, num_heads, mlp_ratio, pre_only, qk_norm)
        self.x_block = DismantledBlock(dim, num_heads, mlp_ratio, False, qk_norm, x_block_self_attn)

    def forward(self, context, x, c):
        """context (B, L, D) text tokens, x (B, T, D) image tokens, c (B, D) the conditioning vector.
        Returns (new context, or None if the context block is pre_only; new x)."""
        # ┌────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: the half-blocks do the per-stream work; you do the mixing.                       │
        # │   1. for each stream, (q, k, v), qkv2, mods = block.pre_attention(tokens, c):          │
        # │        q, k, v (B, nh, L, hd) for the text, (B, nh, T, hd) for the image;              │
        # │        qkv2 is the image stream's extra image-only (q, k, v), or None;                 │
        # │        mods are the stream's adaLN vectors (pass them on unchanged)                    │
        # │   2. ONE attention over the joint sequence, the text's tokens FIRST, then the          │
        # │      image's: the joint q, k, v                                -> (B, nh, L+T, hd)     │
        # │      its output with the heads merged (merge_heads)            -> (B, L+T, D)          │
        # │      cut back: the first L tokens are the text's, the rest the image's                 │
        # │   3. if the image stream has qkv2: a second attention on it alone, heads merged        │
        # │   4. each stream finishes its own block with block.post_attention(its tokens, its      │
        # │      part of the joint output, the image-only output or None, its mods); the text's    │
        # │      only unless context_block.pre_only (the last layer): then context = None          │
        # │ Return (context, x).                                                                   │
        # │ Read first: chapters/08_mmdit.ipynb, sections                                          │
        # │   - The joint block, inline                                                            │
        # │   - What the joint attention sees                                                      │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.           │
        # └────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("JointBlock.forward")
        # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# JointBlock.forward
# ------------------
#     ctx_qkv, _, ctx_mods = self.context_block.pre_attention(context, c)
#     x_qkv, x_qkv2, x_mods = self.x_block.pre_attention(x, c)
#     q, k, v = (torch.cat([a, b], dim=2) for a, b in zip(ctx_qkv, x_qkv))     # (B, nh, L+T, hd)
#     joint = merge_heads(attention(q, k, v))                                   # (B, L+T, D)
#     L = context.shape[1]
#     attn2 = merge_heads(attention(*x_qkv2)) if x_qkv2 is not None else None   # (B, T, D) or None
#     x = self.x_block.post_attention(x, joint[:, L:], attn2, x_mods)
#     if self.context_block.pre_only:
#         context = None
#     else:
#         context = self.context_block.post_attention(context, joint[:, :L], None, ctx_mods)
#     return context, x
# Why:
# * dim=2 is the sequence axis of (B, nh, S, hd): concatenating there makes one sequence of L + T tokens
#   in which every query sees every key, text or image. That is all the "MM" in MM-DiT is: the two
#   streams have separate weights but one attention, instead of DiT/PixArt's cross-attention in which
#   only the image queries the text.
# * text FIRST is the official order; the attention itself does not care (it has no positions), but
#   the split afterwards must match the concatenation: joint[:, :L] is the text, joint[:, L:] the image.
# * merge_heads turns (B, nh, S, hd) back into (B, S, nh*hd) = (B, S, D), the input of each stream's
#   output projection (done inside post_attention, with that stream's own weights and gate).
# * the last layer's context block is pre_only: it makes k and v for the image to attend to, but the
#   text tokens are not used after it, so it has no output projection or MLP and returns nothing.
# * MMDiT-X (SD3.5-medium) adds an image-only self-attention in some layers: qkv2 is its q, k, v, and
#   it never sees the text.
