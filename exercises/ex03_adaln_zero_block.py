"""Exercise 3 — the adaLN-Zero DiT block (chapter 03_dit_adaln_zero).

The conditioning vector c (timestep embedding + class embedding, shape (B, D)) controls every
block through six vectors produced by one Linear: a shift and a scale for each LayerNorm
(adaptive layer norm) and a gate on each residual branch. The Linear is initialised to zero
("-Zero"), so a fresh block is the identity. Write `modulate` and `DiTBlock.forward`; the layers
are created for you with the names of the released DiT checkpoints. Then check yourself:

    python -m pytest exercises/test_ex03_adaln_zero_block.py
"""
import torch
from torch import nn

from minidit.attention import Attention, Mlp

# The minidit code these stubs re-implement (used by CI to check the grader itself).
REFERENCE = {"modulate": "minidit.dit:modulate", "DiTBlock": "minidit.dit:DiTBlock"}


def modulate(x, shift, scale):
    """adaLN: x * (1 + scale) + shift, with (B, D) shift/scale broadcast over the tokens."""
    # ┌───────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is (B, T, D); shift and scale are (B, D).                                     │
    # │   1. give shift and scale a token axis:  (B, D) -> (B, 1, D)   (unsqueeze(1))         │
    # │   2. return x * (1 + scale) + shift                             -> (B, T, D)          │
    # │ Note the "1 +": a zero scale leaves the normalised x unchanged.                       │
    # └───────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("modulate")
    # *****END OF YOUR CODE*****


class DiTBlock(nn.Module):
    """A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        # We create the layers for you, with the checkpoint's names (blocks.{i}.norm1, .attn.qkv, ...).
        # LayerNorms without weights: all the affine part comes from c.
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, qkv_bias=True)          # (B, T, D) -> (B, T, D)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x, c):
        """x: (B, T, D) tokens, c: (B, D) conditioning -> (B, T, D)."""
        # ┌───────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO:                                                                             │
        # │   1. self.adaLN_modulation(c)                                  -> (B, 6D)         │
        # │      split it into six (B, D) vectors, IN THIS ORDER (the checkpoint's rows):     │
        # │      shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp   (.chunk)    │
        # │   2. attention branch:                                                            │
        # │      h = modulate(self.norm1(x), shift_msa, scale_msa)         -> (B, T, D)       │
        # │      x = x + gate_msa[:, None] * self.attn(h)                  -> (B, T, D)       │
        # │   3. MLP branch, the same with norm2, shift_mlp, scale_mlp, self.mlp, gate_mlp    │
        # │ The gates multiply the branch output, not the residual: x + gate * branch.        │
        # └───────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("DiTBlock.forward")
        # *****END OF YOUR CODE*****
