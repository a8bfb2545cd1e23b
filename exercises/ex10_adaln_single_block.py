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
        self.cross_attn = MultiHeadCrossAttention(hidden_size, num_heads)                  # cross_attn(x, y, mask)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(self, x, y, t0, mask=None, hw=None):
        """x (B, T, D) image tokens, y (B, L, D) caption tokens, t0 (B, 6D), mask (B, L) True = real token."""
        # ┌──────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO:                                                                                 │
        # │ 1. table = scale_shift_table[None] + t0.reshape(B, 6, D)              -> (B, 6, D)    │
        # │    split it along dim 1 into six (B, 1, D) pieces, in the checkpoint's row order:     │
        # │    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp                     │
        # │ 2. self-attention:  x = x + gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa), │
        # │                                             hw)                                       │
        # │    where modulate(h, shift, scale) = h * (1 + scale) + shift      (shapes broadcast)  │
        # │ 3. cross-attention: x = x + cross_attn(x, y, mask)     no norm, no modulation, no gate│
        # │ 4. MLP:             x = x + gate_mlp * mlp(modulate(norm2(x), shift_mlp, scale_mlp))  │
        # │ Return x, still (B, T, D).                                                            │
        # └──────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("PixArtBlock.forward")
        # *****END OF YOUR CODE*****
