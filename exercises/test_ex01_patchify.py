"""Grader for exercise 1: python -m pytest exercises/test_ex01_patchify.py"""
import pytest
import torch

from exercises._grading import check_close, check_shape, load

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
    check_close(got, expected.detach(), "patchify(x, 2) @ W.T + b vs the strided Conv2d")


def test_patchify_rejects_bad_sizes():
    with pytest.raises(ValueError):
        ex.patchify(torch.randn(1, 3, 7, 8), 2)


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
    for c in range(C):
        for y in range(h * p):
            for x in range(w * p):
                assert img[0, c, y, x] == 1000 * c + 10 * (y % p) + (x % p), (
                    f"pixel (c={c}, y={y}, x={x}) should come from patch row {y % p}, col {x % p}")


def test_unpatchify_inverts_the_final_layer_order():
    # Tokens laid out as (row, col, c) per patch: unpatchify must give back the image exactly.
    torch.manual_seed(2)
    img = torch.randn(2, 4, 6, 8)
    p, h, w = 2, 3, 4
    tokens = img.reshape(2, 4, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(2, h * w, p * p * 4)
    check_close(ex.unpatchify(tokens, p, h, w), img, "unpatchify(tokens)")
