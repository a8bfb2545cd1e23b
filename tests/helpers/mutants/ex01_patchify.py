"""Wrong patchify/unpatchify solutions (exercise 1)."""

from helpers.mutants import Mutant


def _patchify(order, check=True):
    def patchify(x, p):
        B, C, H, W = x.shape
        if check and (H % p or W % p):
            raise ValueError("not divisible")
        h, w = H // p, W // p
        return x.reshape(B, C, h, p, w, p).permute(0, *order).reshape(B, h * w, C * p * p)
    return patchify


def _unpatchify(read_as, order, swap_hw=False):
    def unpatchify(x, p, h, w):
        B = x.shape[0]
        C = x.shape[-1] // (p * p)
        if swap_hw:
            h, w = w, h
        sizes = {"rcc": (p, p, C), "crc": (C, p, p)}[read_as]
        return x.reshape(B, h, w, *sizes).permute(0, *order).reshape(B, C, h * p, w * p)
    return unpatchify


MUTANTS = [
    Mutant("patchify: tokens column-major (h and w swapped)", {"patchify": _patchify((4, 2, 1, 3, 5))},
           "h and w are swapped"),
    Mutant("patchify: token ordered (row, col, c)", {"patchify": _patchify((2, 4, 3, 5, 1))},
           "ordered (c, row, col)"),
    Mutant("patchify: row and col swapped inside a patch", {"patchify": _patchify((2, 4, 1, 5, 3))},
           "row and col offsets are swapped"),
    Mutant("patchify: no ValueError for a bad size", {"patchify": _patchify((2, 4, 1, 3, 5), check=False)},
           "expected a ValueError for patchify"),
    Mutant("unpatchify: tokens read as (c, row, col)", {"unpatchify": _unpatchify("crc", (3, 1, 4, 2, 5))},
           "you read each token as (c, row, col)"),
    Mutant("unpatchify: row and col swapped inside a patch", {"unpatchify": _unpatchify("rcc", (5, 1, 4, 2, 3))},
           "row and col offsets are swapped"),
    Mutant("unpatchify: h and w swapped", {"unpatchify": _unpatchify("rcc", (5, 1, 3, 2, 4), swap_hw=True)},
           "mix up height and width"),
]
