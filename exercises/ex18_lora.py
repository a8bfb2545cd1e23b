"""Exercise 18 — the LoRA layer: its forward, merge and unmerge (chapter 12_training_and_lora).

LoRA (Hu et al., arXiv 2106.09685) fine-tunes a frozen Linear y = W x + b through a low-rank update:

    y = W x + b + (alpha / r) B A dropout(x)        A: (r, D_in), B: (D_out, r), r << D_in, D_out

Only A and B train (r (D_in + D_out) numbers instead of D_in D_out). B starts at zero, so the adapted
layer starts as the base layer. For inference the update can be folded into the weight,

    merge:    W <- W + (alpha / r) B A              (then the forward is the base layer's, same output)
    unmerge:  W <- W - (alpha / r) B A              (the base weight again)

The layer is created for you (`__init__`, with the names PEFT and minidit use); write `forward`,
`merge` and `unmerge`. Check yourself with

    python -m pytest exercises/test_ex18_lora.py

The grader compares your layer with the formulas above (eval and train mode, replaying the dropout's
random draws), checks that merge changes the weight by exactly the update and that the merged layer
gives the adapter's output, and that unmerge gives the base weight back.

You may NOT use minidit.lora (it is the answer).
"""
import math

import torch
from torch import nn

# The minidit class this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"LoRALinear": "minidit.lora:LoRALinear"}


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / rank) B A dropout(x), with the base Linear frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        # We create the layer for you. base: the frozen nn.Linear (weight (D_out, D_in), bias (D_out,)).
        self.base = base.requires_grad_(False)
        self.rank, self.alpha = rank, float(alpha)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))            # (r, D_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))           # (D_out, r), zero: y = base(x)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))                     # random, as nn.Linear's init
        self.dropout = nn.Dropout(dropout)          # an nn.Module: active after .train(), off after .eval()
        self.merged = False                         # True while the update is inside base.weight

    def forward(self, x):
        """x (..., D_in) -> (..., D_out)."""
        # ┌──────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: x (N, D_in), any leading dims N.                                                   │
        # │   1. the frozen layer: self.base(x)                                -> (N, D_out)         │
        # │   2. if self.merged, that is all (the update is inside base.weight already)              │
        # │   3. else add the low-rank path: the dropout on the LoRA input only (not on the          │
        # │      base path), then A, then B, times the scale alpha / rank:                           │
        # │        dropout(x) @ A^T                                            -> (N, r)             │
        # │        ... @ B^T                                                   -> (N, D_out)         │
        # │ Never build the (D_out, D_in) matrix B A here: the point is r (D_in + D_out) work.       │
        # │ Use self.dropout (it knows train / eval mode), not F.dropout with training=True.         │
        # │ Read first: chapters/12_training_and_lora.ipynb, section                                 │
        # │   - LoRA                                                                                 │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.             │
        # └──────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("LoRALinear.forward")
        # *****END OF YOUR CODE*****

    @torch.no_grad()
    def merge(self):
        """Fold the update into the base weight: W <- W + (alpha / rank) B A; then self.merged is True."""
        # ┌──────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: the update dW = (alpha / rank) B A                           -> (D_out, D_in)      │
        # │   add it to self.base.weight in place, and set self.merged = True.                       │
        # │   Merging twice must not add the update twice (check self.merged first).                 │
        # │ Read first: chapters/12_training_and_lora.ipynb, section                                 │
        # │   - LoRA                                                                                 │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.             │
        # └──────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("LoRALinear.merge")
        # *****END OF YOUR CODE*****

    @torch.no_grad()
    def unmerge(self):
        """Take the update out again: W <- W - (alpha / rank) B A; then self.merged is False."""
        # ┌──────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: the inverse of merge, only when the layer is merged.                               │
        # │ Read first: chapters/12_training_and_lora.ipynb, section                                 │
        # │   - LoRA                                                                                 │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.             │
        # └──────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("LoRALinear.unmerge")
        # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# LoRALinear.forward
# ------------------
#     y = self.base(x)
#     if self.merged:
#         return y
#     h = self.dropout(x) @ self.lora_A.T                                    # (N, r)
#     return y + (self.alpha / self.rank) * (h @ self.lora_B.T)              # (N, D_out)
# Why:
# * a Linear computes x @ W^T, so the update B A acts as x @ (B A)^T = (x @ A^T) @ B^T: first down to
#   r numbers per token, then up to D_out. x @ B @ A would apply (B A)^T, the transposed update, which
#   runs without an error whenever D_in = D_out (every attention projection) and is a different layer.
# * the scale is alpha / r, not alpha: with it, the update's size hardly changes when you change r,
#   so one alpha (and one learning rate) serves every rank (the paper's §4.1).
# * dropout regularises the adapter only: the frozen base path sees x itself. self.dropout is an
#   nn.Dropout, which is the identity after model.eval(): sampling must be deterministic.
# * after merge the update is inside W; adding the low-rank path again would count it twice.
#
# LoRALinear.merge
# ----------------
#     if not self.merged:
#         self.base.weight += (self.alpha / self.rank) * (self.lora_B @ self.lora_A)
#         self.merged = True
# Why: W x + s B A x = (W + s B A) x, so the merged weight gives the same output with no extra work at
# inference. The scale belongs in the merged weight too: without it the merged layer is another model.
# B @ A is (D_out, r) @ (r, D_in) = (D_out, D_in), W's shape; A @ B would be (r, r).
#
# LoRALinear.unmerge
# ------------------
#     if self.merged:
#         self.base.weight -= (self.alpha / self.rank) * (self.lora_B @ self.lora_A)
#         self.merged = False
# Why: the same update, subtracted: W + dW - dW is W again, up to one float rounding (PEFT does the
# same; keeping a copy of W would cost a second copy of every adapted weight).
