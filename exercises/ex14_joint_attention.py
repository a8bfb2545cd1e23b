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
        # ┌──────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: the half-blocks do the per-stream work; you do the mixing.                      │
        # │ 1. (q, k, v), qkv2, mods = block.pre_attention(tokens, c)  for each stream:          │
        # │       q, k, v are (B, nh, L, hd) for the text, (B, nh, T, hd) for the image;         │
        # │       qkv2 is the image stream's extra image-only (q, k, v), or None;                │
        # │       mods are the stream's adaLN vectors (pass them on unchanged).                  │
        # │ 2. Concatenate the text's and the image's q along the sequence, TEXT FIRST,          │
        # │    likewise k and v                                           -> (B, nh, L+T, hd)    │
        # │ 3. out = merge_heads(attention(q, k, v))                      -> (B, L+T, D)         │
        # │    and cut it back: the first L tokens are the text's, the rest the image's.          │
        # │ 4. If the image stream has qkv2: attn2 = merge_heads(attention(*qkv2)), else None.    │
        # │ 5. context = context_block.post_attention(context, text_part, None, text_mods)       │
        # │    unless context_block.pre_only (the last layer): then context = None.               │
        # │    x = x_block.post_attention(x, image_part, attn2, image_mods)                       │
        # │ Return (context, x).                                                                  │
        # └──────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("JointBlock.forward")
        # *****END OF YOUR CODE*****
