"""Wrong timestep embeddings (exercise 2)."""
import math

import torch

from helpers.mutants import Mutant


def _embedding(layout="cos_sin", denominator="right", pad="last", dtype=torch.float32):
    def timestep_embedding(t, dim, max_period=10000.0, freq_shift=0.0):
        half = dim // 2
        d = {"right": half - freq_shift, "dim": dim, "half": half, "half-1": half - 1}[denominator]
        k = torch.arange(half, dtype=dtype)
        args = t[:, None].to(dtype) * torch.exp(-math.log(max_period) * k / d)[None]
        cos, sin = torch.cos(args), torch.sin(args)
        emb = {"cos_sin": lambda: torch.cat([cos, sin], -1), "sin_cos": lambda: torch.cat([sin, cos], -1),
               "pairs": lambda: torch.stack([cos, sin], -1).flatten(1)}[layout]()
        if dim % 2:
            zeros = torch.zeros_like(emb[:, :1])
            emb = torch.cat([emb, zeros] if pad == "last" else [zeros, emb], -1)
        return emb
    return timestep_embedding


MUTANTS = [
    Mutant("sin first", {"timestep_embedding": _embedding(layout="sin_cos")}, "you put sin first"),
    Mutant("cos/sin interleaved", {"timestep_embedding": _embedding(layout="pairs")}, "interleaved"),
    Mutant("exponent divided by dim", {"timestep_embedding": _embedding(denominator="dim")}, "divided by dim"),
    Mutant("exponent divided by half - 1 always", {"timestep_embedding": _embedding(denominator="half-1")},
           "divided by half - 1"),
    Mutant("freq_shift ignored", {"timestep_embedding": _embedding(denominator="half")}, "freq_shift is ignored"),
    Mutant("odd dim padded at the front", {"timestep_embedding": _embedding(pad="first")},
           "last column must be zeros"),
    Mutant("float64 embedding", {"timestep_embedding": _embedding(dtype=torch.float64)}, "should be float32"),
]
