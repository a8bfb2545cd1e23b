"""Wrong spacetime-patch and factorized-reshape solutions (exercise 17)."""

from helpers.mutants import Mutant


def _patchify3d(order, check=True):
    def patchify3d(x, patch):
        pt, ph, pw = (patch, patch, patch) if isinstance(patch, int) else patch
        B, C, F0, H0, W0 = x.shape
        if check and (F0 % pt or H0 % ph or W0 % pw):
            raise ValueError("not divisible")
        F, H, W = F0 // pt, H0 // ph, W0 // pw
        x = x.reshape(B, C, F, pt, H, ph, W, pw).permute(0, *order)
        return x.reshape(B, F * H * W, C * pt * ph * pw)
    return patchify3d


def _to_temporal_no_transpose(x, F, S):
    B, _, D = x.shape
    return x.reshape(B * S, F, D)


def _to_temporal_f_s_swapped(x, F, S):
    B, _, D = x.shape
    return x.reshape(B, S, F, D).transpose(1, 2).reshape(B * S, F, D)


def _to_temporal_position_major(x, F, S):
    B, _, D = x.shape
    return x.reshape(B, F, S, D).permute(2, 0, 1, 3).reshape(S * B, F, D)


def _from_temporal_no_transpose_back(x, F, S):
    BS, _, D = x.shape
    return x.reshape(BS // S, F * S, D)


def _to_spatial_frame_major(x, F, S):
    B, _, D = x.shape
    return x.reshape(B, F, S, D).transpose(0, 1).reshape(F * B, S, D)


def _to_temporal_unchecked(x, F, S):
    B, N, D = x.shape[0], x.shape[1], x.shape[-1]
    return x.reshape(B, N // S, S, D).transpose(1, 2).reshape(-1, N // S, D)


MUTANTS = [
    Mutant("patchify3d: frames-last token order (H, W, F)", {"patchify3d": _patchify3d((4, 6, 2, 1, 3, 5, 7))},
           "the frame f must be the OUTER grid index"),
    Mutant("patchify3d: H and W swapped in the grid", {"patchify3d": _patchify3d((2, 6, 4, 1, 3, 5, 7))},
           "(H and W) are swapped"),
    Mutant("patchify3d: token channels last (dt, di, dj, c)", {"patchify3d": _patchify3d((2, 4, 6, 3, 5, 7, 1))},
           "ordered (dt, di, dj, c), channels last"),
    Mutant("patchify3d: tubelet offsets in the wrong order (c, di, dj, dt)",
           {"patchify3d": _patchify3d((2, 4, 6, 1, 5, 7, 3))}, "the offsets are in the wrong order"),
    Mutant("patchify3d: di and dj swapped", {"patchify3d": _patchify3d((2, 4, 6, 1, 3, 7, 5))},
           "row and column offsets (di, dj) are swapped"),
    Mutant("patchify3d: no ValueError for a bad size", {"patchify3d": _patchify3d((2, 4, 6, 1, 3, 5, 7), check=False)},
           "expected a ValueError for patchify3d"),
    Mutant("to_temporal: reshape without the transpose", {"to_temporal": _to_temporal_no_transpose},
           "you reshaped without transposing"),
    Mutant("to_temporal: F and S swapped in the split", {"to_temporal": _to_temporal_f_s_swapped},
           "F and S are swapped"),
    Mutant("to_temporal: sequences position-major (s*B + b)", {"to_temporal": _to_temporal_position_major},
           "position-major (s*B + b)"),
    Mutant("to_temporal: no ValueError for a wrong token count", {"to_temporal": _to_temporal_unchecked},
           "expected a ValueError for to_temporal"),
    Mutant("from_temporal: forgetting to transpose back", {"from_temporal": _from_temporal_no_transpose_back},
           "you did not transpose back"),
    Mutant("to_spatial: sequences frame-major (f*B + b)", {"to_spatial": _to_spatial_frame_major},
           "frame-major (f*B + b)"),
]
