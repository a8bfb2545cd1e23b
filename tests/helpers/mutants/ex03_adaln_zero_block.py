"""Wrong adaLN-Zero blocks (exercise 3)."""

from helpers.mutants import Mutant
from minidit.dit import DiTBlock, modulate


def _modulate_swapped(x, shift, scale):
    return x * (1 + shift[:, None]) + scale[:, None]


def _modulate_without_one(x, shift, scale):
    return x * scale[:, None] + shift[:, None]


class GateOnResidual(DiTBlock):
    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = gate_msa[:, None] * x + self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return gate_mlp[:, None] * x + self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class ShiftScaleSwapped(DiTBlock):
    def forward(self, x, c):
        scale_msa, shift_msa, gate_msa, scale_mlp, shift_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class ParallelBranches(DiTBlock):
    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        attn = self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        mlp = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + gate_msa[:, None] * attn + gate_mlp[:, None] * mlp


MUTANTS = [
    Mutant("modulate: shift and scale swapped", {"modulate": _modulate_swapped}, "shift and scale are swapped"),
    Mutant("modulate: no 1 +", {"modulate": _modulate_without_one}, 'the "1 +" is missing'),
    Mutant("block: gate applied to the residual", {"DiTBlock": GateOnResidual}, "the gate multiplies the residual"),
    Mutant("block: shift and scale chunks swapped", {"DiTBlock": ShiftScaleSwapped},
           "shift_msa and scale_msa are swapped"),
    Mutant("block: MLP branch on the block's input (parallel)", {"DiTBlock": ParallelBranches},
           "it must see the x the attention branch has just updated"),
]
