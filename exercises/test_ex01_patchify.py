"""Grader for exercise 1: python -m pytest exercises/test_ex01_patchify.py"""
import torch

from exercises._grading import EXACT, check_close, check_raises, check_shape, load

ex = load("ex01_patchify")


def test_patchify_shape():
    x = torch.randn(2, 3, 8, 12)
    check_shape(ex.patchify(x, 4), (2, 6, 48), "patchify(x of shape (2, 3, 8, 12), p=4)")


def test_patchify_equals_strided_conv():
    # A patch embedding is a Conv2d with kernel = stride = p; patchify + matmul must reproduce it.
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 10)
    conv = torch.nn.Conv2d(3, 5, kernel_size=2, stride=2)
    expected = conv(x).flatten(2).transpose(1, 2)                    # (B, T, D)
    got = ex.patchify(x, 2) @ conv.weight.flatten(1).T + conv.bias
    B, C, h, w, p = 2, 3, 3, 5, 2
    blocks = x.reshape(B, C, h, p, w, p)

    def tokens(*order):                 # what patchify would give with another permute
        return blocks.permute(0, *order).reshape(B, h * w, C * p * p) @ conv.weight.flatten(1).T + conv.bias
    mistakes = {
        "Your tokens go column by column: h and w are swapped. Tokens are row-major, the grid axes "
        "permute to (B, h, w, ...).": tokens(4, 2, 1, 3, 5),
        "Each token is ordered (row, col, c); patchify's token is ordered (c, row, col), the "
        "order of the Conv2d weight's (C, p, p) dims: permute to (B, h, w, C, p, p).": tokens(2, 4, 3, 5, 1),
        "Inside each patch, the row and col offsets are swapped: the token is ordered (c, row, col).":
            tokens(2, 4, 1, 5, 3),
    }
    check_close(got, expected.detach(), "patchify(x, 2) @ W.T + b vs the strided Conv2d",
                mistakes={k: v.detach() for k, v in mistakes.items()})


def test_patchify_rejects_bad_sizes():
    check_raises(ValueError, lambda: ex.patchify(torch.randn(1, 3, 7, 8), 2),
                 "patchify(x of shape (1, 3, 7, 8), p=2): H = 7 is not divisible by p")
    check_raises(ValueError, lambda: ex.patchify(torch.randn(1, 3, 8, 9), 2),
                 "patchify(x of shape (1, 3, 8, 9), p=2): W = 9 is not divisible by p")


def test_unpatchify_token_layout():
    # Hand-built tokens: channel index (row*p + col)*C + c holds the value 1000*c + 10*row + col.
    p, C, h, w = 2, 3, 2, 3
    tokens = torch.zeros(1, h * w, p * p * C)
    for r in range(p):
        for q in range(p):
            for c in range(C):
                tokens[0, :, (r * p + q) * C + c] = 1000 * c + 10 * r + q
    img = ex.unpatchify(tokens, p, h, w)
    check_shape(img, (1, C, h * p, w * p), "unpatchify output")
    expected = torch.zeros(1, C, h * p, w * p)
    for c in range(C):
        for y in range(h * p):
            for x in range(w * p):
                expected[0, c, y, x] = 1000 * c + 10 * (y % p) + (x % p)
    mistakes = {
        "You read each token as (c, row, col), patchify's order; the final layer's channel index is "
        "(row*p + col)*C + c: reshape to (B, h, w, p, p, C).":
            tokens.reshape(1, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(1, C, h * p, w * p),
        "Inside each patch, the row and col offsets are swapped: permute (B, h, w, p, p, C) to "
        "(B, C, h, p, w, p).": tokens.reshape(1, h, w, p, p, C).permute(0, 5, 1, 4, 2, 3).reshape(1, C, h * p, w * p),
    }
    check_close(img, expected, "unpatchify of hand-built tokens (pixel (c, y, x) should hold "
                "1000*c + 10*(y % p) + (x % p), its patch row and col)", tol=EXACT, mistakes=mistakes)


def test_unpatchify_inverts_the_final_layer_order():
    # Tokens laid out as (row, col, c) per patch: unpatchify must give back the image exactly.
    torch.manual_seed(2)
    img = torch.randn(2, 4, 6, 8)
    p, h, w = 2, 3, 4
    tokens = img.reshape(2, 4, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(2, h * w, p * p * 4)
    check_close(ex.unpatchify(tokens, p, h, w), img, "unpatchify(tokens)")
