"""Grader for exercise 6: python -m pytest exercises/test_ex06_vae_resnet_block.py"""
import torch
import torch.nn.functional as F

from exercises._grading import check_close, check_shape, copy_weights, load
from minidit import vae as reference

ex = load("ex06_vae_resnet_block")


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():       # GroupNorm scales around 1, the rest around 0
            p.copy_(0.3 * torch.randn(p.shape, generator=g) + (1.0 if "norm" in name and "weight" in name else 0.0))
    return module


def test_resnet_block_shape():
    block = ex.ResnetBlock(16, 24, groups=8)
    out = block(torch.randn(2, 16, 9, 7))
    check_shape(out, (2, 24, 9, 7), "ResnetBlock(16 -> 24)(x of shape (2, 16, 9, 7))")


def _formula(block, x, groups, eps=1e-6, silu_first=False, shortcut=True):
    """The block written out with torch.nn.functional and the block's own parameters; the keyword
    arguments give the usual wrong versions (another GroupNorm eps, SiLU before the norm, no shortcut)."""
    def act_norm(h, norm):
        if silu_first:
            return F.group_norm(F.silu(h), groups, norm.weight, norm.bias, eps=eps)
        return F.silu(F.group_norm(h, groups, norm.weight, norm.bias, eps=eps))
    h = F.conv2d(act_norm(x, block.norm1), block.conv1.weight, block.conv1.bias, padding=1)
    h = F.conv2d(act_norm(h, block.norm2), block.conv2.weight, block.conv2.bias, padding=1)
    if not shortcut:
        return h
    nin = block.nin_shortcut
    return (x if nin is None else F.conv2d(x, nin.weight, nin.bias)) + h


MISTAKES = {"SiLU comes after each GroupNorm: conv(SiLU(norm(x))), not conv(norm(SiLU(x))).": {"silu_first": True},
            "The shortcut is missing: return shortcut + h (shortcut = x, or nin_shortcut(x) when the width "
            "changes).": {"shortcut": False},
            "GroupNorm's eps is wrong (1e-5 is torch's default): use the stub's norm layers, eps = 1e-6.":
                {"eps": 1e-5}}


def _check_formula(block, x, groups, what):
    with torch.no_grad():
        mistakes = {hint: _formula(block, x, groups, **kw) for hint, kw in MISTAKES.items()}
        check_close(block(x), _formula(block, x, groups), what, mistakes=mistakes)


def test_resnet_block_equals_its_formula():
    """The block written out with torch.nn.functional and your own parameters (no reference code)."""
    torch.manual_seed(0)
    block = _randomise(ex.ResnetBlock(16, 24, groups=8), 1)
    _check_formula(block, torch.randn(2, 16, 6, 10), 8, "ResnetBlock(16 -> 24) vs its formula")


def test_resnet_block_on_a_flat_region():
    """A nearly flat input (an image region of one colour): its variance, 1e-6, is as small as GroupNorm's
    eps, so an eps of 1e-5 instead of 1e-6 changes the output."""
    block = _randomise(ex.ResnetBlock(8, 8, groups=4), 5)
    x = 0.5 + 1e-3 * torch.randn(1, 8, 6, 6, generator=torch.Generator().manual_seed(5))
    _check_formula(block, x, 4, "ResnetBlock(8 -> 8) on a nearly flat input (x = 0.5 + 1e-3 * noise)")


def test_zero_residual_leaves_the_shortcut():
    """With conv2 = 0 the residual branch vanishes: the block is the identity (same width)."""
    block = _randomise(ex.ResnetBlock(16, 16, groups=8), 2)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
        x = torch.randn(1, 16, 5, 5)
        check_close(block(x), x, "ResnetBlock with conv2 = 0 (should return x unchanged)",
                    mistakes={"The shortcut is missing: return shortcut + h.": torch.zeros_like(x)})


def test_resnet_block_matches_minidit():
    ref = _randomise(reference.ResnetBlock(8, 16, groups=4), 3)
    student = ex.ResnetBlock(8, 16, groups=4)
    copy_weights(ref, student)
    x = torch.randn(3, 8, 7, 5)
    with torch.no_grad():
        check_close(student(x), ref(x), "ResnetBlock(8 -> 16) vs minidit.vae.ResnetBlock")


def test_downsample_shape():
    down = ex.Downsample(4)
    check_shape(down(torch.randn(2, 4, 8, 6)), (2, 4, 4, 3), "Downsample(x of shape (2, 4, 8, 6))")


def test_downsample_pads_right_and_bottom_only():
    """Hand-built kernels pick one input pixel: kernel tap (a, b) reads padded[2i + a, 2j + b]."""
    down = ex.Downsample(1)
    x = torch.arange(1.0, 37.0).reshape(1, 1, 6, 6)
    padded = F.pad(x, (0, 1, 0, 1))                                  # zeros on the right and bottom
    for a, b in [(0, 0), (2, 2), (1, 2)]:
        with torch.no_grad():
            down.conv.weight.zero_()
            down.conv.bias.zero_()
            down.conv.weight[0, 0, a, b] = 1.0
            out = down(x)
        expected = padded[:, :, a::2, b::2][:, :, :3, :3]

        def picked(pad, mode="constant"):   # the tap of another padding
            return F.pad(x, pad, mode=mode)[:, :, a::2, b::2][:, :, :3, :3]
        # On an even size a symmetric pad (Conv2d's padding=1) never reads its right and bottom column: it is
        # the same mistake as padding the left and top.
        mistakes = {"You padded on the left and top (a symmetric pad, Conv2d's padding=1, does that too): pad one "
                    "pixel on the right and bottom only, F.pad(x, (0, 1, 0, 1)) — F.pad's order is (left, right, "
                    "top, bottom).": picked((1, 0, 1, 0)),
                    "You padded with copies of the edge pixels: ldm pads with zeros.":
                        picked((0, 1, 0, 1), "replicate")}
        check_close(out, expected, f"Downsample with a kernel that picks tap ({a}, {b})", mistakes=mistakes)


def test_downsample_matches_minidit():
    ref = _randomise(reference.Downsample(3), 4)
    student = ex.Downsample(3)
    copy_weights(ref, student)
    x = torch.randn(2, 3, 10, 12)
    with torch.no_grad():
        check_close(student(x), ref(x), "Downsample vs minidit.vae.Downsample")
