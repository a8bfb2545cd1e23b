"""Wrong 2-D rotary position embeddings (exercise 15)."""
import torch

from helpers.mutants import Mutant
from minidit.embed import rope_crop


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def _rotate_pairs_signs(x):
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([b, -a], dim=-1).flatten(-2)


def _apply_backwards(x, cos, sin):
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return (x.float() * cos - torch.stack([-b, a], dim=-1).flatten(-2) * sin).to(x.dtype)


def _rope(endpoint=False, tile=False, wide_denominator=False, swap_axes=False, squeezed=False, check=True):
    def get_2d_rope(head_dim, th, tw, base_size=32):
        if check and head_dim % 4:
            raise ValueError("head_dim must be divisible by 4")
        (top, left), (bottom, right) = ((0, 0), (th, tw)) if base_size is None else rope_crop(th, tw, base_size)

        def positions(start, stop, n):
            if endpoint:
                return torch.linspace(start, stop, n, dtype=torch.float64).float()
            if squeezed:
                return torch.linspace(start, stop * (n - 1) / n, n, dtype=torch.float64).float()
            return (start + (stop - start) * torch.arange(n, dtype=torch.float64) / n).float()
        w = positions(left, right, tw).repeat(th)
        h = positions(top, bottom, th).repeat_interleave(tw)
        d = head_dim // 2

        def axis(p):
            freqs = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / (head_dim if wide_denominator else d))
            angles = torch.outer(p, freqs)
            return angles.repeat(1, 2) if tile else angles.repeat_interleave(2, dim=1)
        angles = torch.cat([axis(h), axis(w)] if swap_axes else [axis(w), axis(h)], dim=1)
        return angles.cos(), angles.sin()
    return get_2d_rope


MUTANTS = [
    Mutant("rotate-half instead of pairs", {"rotate_pairs": _rotate_half}, "that is rotate-half"),
    Mutant("rotate_pairs signs swapped", {"rotate_pairs": _rotate_pairs_signs}, "the signs are swapped"),
    Mutant("apply_rope turns backwards", {"apply_rope": _apply_backwards}, "turns the wrong way"),
    Mutant("positions include the end", {"get_2d_rope": _rope(endpoint=True)}, "include the end of the box"),
    Mutant("angle table tiled", {"get_2d_rope": _rope(tile=True)}, "repeat_interleave(2, dim=1)"),
    Mutant("frequencies over head_dim", {"get_2d_rope": _rope(wide_denominator=True)}, "d = head_dim / 2"),
    Mutant("axes swapped", {"get_2d_rope": _rope(swap_axes=True)}, "the axes are swapped"),
    Mutant("diffusers' squeezed positions", {"get_2d_rope": _rope(squeezed=True)}, "diffusers' linspace"),
    Mutant("head_dim not checked", {"get_2d_rope": _rope(check=False)}, "expected a ValueError for get_2d_rope"),
]
