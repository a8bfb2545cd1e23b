"""Wrong PixArt (adaLN-single) blocks (exercise 10)."""
from helpers.mutants import Mutant
from minidit.pixart import PixArtBlock


def _block(table="add", cross="plain", use_mask=True):
    class WrongPixArtBlock(PixArtBlock):
        def forward(self, x, y, t0, mask=None, hw=None):
            B, D = x.shape[0], x.shape[-1]
            if table == "add":
                rows = self.scale_shift_table[None] + t0.reshape(B, 6, D)
            elif table == "t0_as_D_by_6":
                rows = self.scale_shift_table[None] + t0.reshape(B, D, 6).transpose(1, 2)
            else:                                   # t0 alone
                rows = t0.reshape(B, 6, D)
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = rows.chunk(6, dim=1)
            x = x + gate_msa * self.attn(self.norm1(x) * (1 + scale_msa) + shift_msa, hw)
            m = mask if use_mask else None
            if cross == "gated":
                x = x + gate_msa * self.cross_attn(x, y, m)
            elif cross == "normed":
                x = x + self.cross_attn(self.norm2(x), y, m)
            else:
                x = x + self.cross_attn(x, y, m)
            return x + gate_mlp * self.mlp(self.norm2(x) * (1 + scale_mlp) + shift_mlp)
    return WrongPixArtBlock


MUTANTS = [
    Mutant("t0 reshaped (B, D, 6)", {"PixArtBlock": _block(table="t0_as_D_by_6")}, "t0 is read as (B, D, 6)"),
    Mutant("scale_shift_table not added", {"PixArtBlock": _block(table="no_table")}, "scale_shift_table is not used"),
    Mutant("gated cross-attention", {"PixArtBlock": _block(cross="gated")}, "the cross-attention has a gate"),
    Mutant("cross-attention on norm2(x)", {"PixArtBlock": _block(cross="normed")},
           "the cross-attention reads a normalised x"),
    Mutant("unmasked cross-attention", {"PixArtBlock": _block(use_mask=False)}, "pass the mask to cross_attn"),
]
