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
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is (B, T, D); shift and scale are (B, D): one vector per sample, the same for all  │
    # │ of its T tokens. Give them a token axis so that they broadcast over the tokens,            │
    # │ (B, D) -> (B, 1, D), and apply the docstring's formula                     -> (B, T, D)    │
    # │ Note the "1 +": a zero scale must leave the normalised x unchanged.                        │
    # │ Read first: chapters/03_dit_adaln_zero.ipynb, section                                      │
    # │   - The block                                                                              │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
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
        # ┌────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: x (B, T, D) tokens, c (B, D) conditioning.                                       │
        # │   1. self.adaLN_modulation(c)                                     -> (B, 6D)           │
        # │      cut it into six (B, D) vectors, IN THIS ORDER (the checkpoint's rows):            │
        # │      shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp                    │
        # │   2. attention branch: norm1, modulate with shift_msa and scale_msa, self.attn,        │
        # │      then added to x through gate_msa                             -> (B, T, D)         │
        # │   3. MLP branch: the same with norm2, shift_mlp, scale_mlp, self.mlp and gate_mlp,     │
        # │      on the x that step 2 has just updated (one after the other, not in parallel)      │
        # │ The gates multiply the branch output, not the residual x. A (B, D) gate needs a        │
        # │ token axis too, to broadcast against (B, T, D).                                        │
        # │ Read first: chapters/03_dit_adaln_zero.ipynb, sections                                 │
        # │   - The block                                                                          │
        # │   - "-Zero": a fresh block is the identity                                             │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.           │
        # └────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("DiTBlock.forward")
        # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# modulate
# --------
#     return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
# Why: unsqueeze(1) turns (B, D) into (B, 1, D); broadcasting then repeats it over the T tokens, so every
# token of a sample gets the same affine map, chosen by that sample's condition. The block's LayerNorms
# have no weight or bias of their own (elementwise_affine=False): (1 + scale) and shift ARE their weight
# and bias, predicted per sample. The "1 +" makes a zero output of adaLN_modulation mean weight 1, bias
# 0: the plain LayerNorm. (minidit writes the same as torch.addcmul(shift, x, 1 + scale), which avoids
# one (B, T, D) temporary; both are right.)
#
# DiTBlock.forward
# ----------------
#     shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
#         self.adaLN_modulation(c).chunk(6, dim=1)                                # six (B, D)
#     x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
#     x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
#     return x
# Why:
# * chunk(6, dim=1) cuts the 6D outputs into consecutive blocks of D: the Linear's rows 0..D-1 are
#   shift_msa, the next D rows scale_msa, and so on. The released weights were trained with that order;
#   another order runs without error and computes a different model.
# * the gate sits on the branch: DiT initialises the adaLN Linear to zero, so every gate starts at 0,
#   each line is x = x + 0, and a fresh block is exactly the identity (the "-Zero"). A gate on the
#   residual would instead wipe x out. gate[:, None] is the (B, 1, D) view, as in modulate.
# * the second line normalises the x of the first line: a sequential pre-norm block, as in GPT-2-style
#   transformers. Two branches on the block's input would be a different (parallel) model.
