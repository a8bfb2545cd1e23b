"""Exercise 10 — the PixArt block: adaLN-single and cross-attention (chapter 06_pixart).

DiT's blocks each own a Linear that turns the condition into six modulation vectors (adaLN-Zero).
PixArt computes ONE modulation t0 = t_block(t) for the whole network and gives every block only a
learned (6, D) `scale_shift_table` that is added to it (adaLN-single, PixArt-α §2.3). The text
condition enters through cross-attention to the T5 caption tokens, which is neither normalised
nor gated. Write the block's forward; the layers are created for you with the checkpoint's names,
so the released weights would load into your block. Then check yourself:

    python -m pytest exercises/test_ex10_adaln_single_block.py
"""
import torch
from torch import nn

from minidit.attention import Mlp, MultiHeadCrossAttention
from minidit.pixart import AttentionKVCompress

# The minidit class this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"PixArtBlock": "minidit.pixart:PixArtBlock"}


class PixArtBlock(nn.Module):
    """A PixArt block: adaLN-single-modulated self-attention and MLP, unmodulated cross-attention."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, sampling=None,
                 sr_ratio: int = 1, qk_norm: bool = False):
        super().__init__()
        # We create the layers for you (names = keys of the official checkpoint `blocks.i.*`).
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = AttentionKVCompress(hidden_size, num_heads, sampling, sr_ratio, qk_norm)  # attn(x, hw)
        self.cross_attn = MultiHeadCrossAttention(hidden_size, num_heads)           # cross_attn(x, y, mask)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(self, x, y, t0, mask=None, hw=None):
        """x (B, T, D) image tokens, y (B, L, D) caption tokens, t0 (B, 6D), mask (B, L) True = real token."""
        # ┌────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: x (B, T, D), y (B, L, D), t0 (B, 6D), mask (B, L) or None; hw: the token grid.   │
        # │   1. the block's six modulation vectors: scale_shift_table (6, D) PLUS t0 seen as      │
        # │      (B, 6, D)                                                       -> (B, 6, D)      │
        # │      cut along dim 1 into six (B, 1, D) pieces, in the checkpoint's row order:         │
        # │      shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp                    │
        # │   2. self-attention branch, as in DiT (exercise 3): norm1, modulated by shift_msa      │
        # │      and scale_msa (h * (1 + scale) + shift), self.attn(..., hw), added to x           │
        # │      through gate_msa                                                                  │
        # │   3. cross-attention to the caption, self.cross_attn(x, y, mask), added to x:          │
        # │      no norm, no modulation, no gate                                                   │
        # │   4. MLP branch, as in DiT: norm2, shift_mlp and scale_mlp, self.mlp, gate_mlp         │
        # │ Each step works on the x the previous one returned. Return x, still (B, T, D).         │
        # │ Read first: chapters/06_pixart.ipynb, sections                                         │
        # │   - adaLN-single vs adaLN-Zero                                                         │
        # │   - Cross-attention and masks                                                          │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.           │
        # └────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("PixArtBlock.forward")
        # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# PixArtBlock.forward
# -------------------
#     B = x.shape[0]
#     table = self.scale_shift_table[None] + t0.reshape(B, 6, -1)                  # (B, 6, D)
#     shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = table.chunk(6, dim=1)
#     h = self.norm1(x) * (1 + scale_msa) + shift_msa                              # (B, T, D)
#     x = x + gate_msa * self.attn(h, hw)
#     x = x + self.cross_attn(x, y, mask)
#     h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
#     x = x + gate_mlp * self.mlp(h)
#     return x
# Why:
# * t0 = t_block(t) is computed ONCE for the whole network; its 6D numbers are six consecutive blocks
#   of D (the same row order as DiT's chunk), so reshape(B, 6, D) puts one vector per row. Adding the
#   block's own (6, D) table (broadcast over the batch by [None]) lets every block modulate differently
#   while sharing t0: that is adaLN-single, and it is why PixArt has no per-block adaLN Linear.
# * chunk(6, dim=1) of a (B, 6, D) tensor gives (B, 1, D) pieces: they already have the token axis, so
#   they broadcast against (B, T, D) with no unsqueeze (DiT's modulate gets (B, D) and adds it;
#   minidit.pixart.t2i_modulate is this (B, 1, D) version of the formula).
# * the caption enters only through the cross-attention's keys and values; the official block adds it
#   unnormalised, unmodulated and ungated. `mask` marks the real caption tokens (True), so padding
#   tokens get no attention; cross_attn does that for you.
# * the gates multiply the branch outputs (as in DiT) and the steps run one after the other: the
#   cross-attention sees the x that the self-attention has just updated, and the MLP sees both.
