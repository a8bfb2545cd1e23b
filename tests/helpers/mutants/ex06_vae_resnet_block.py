"""Wrong VAE ResNet blocks and downsamplers (exercise 6)."""
import torch.nn.functional as F

from helpers.mutants import Mutant
from minidit.vae import Downsample, ResnetBlock


def _downsample(pad, mode="constant", conv_padding=0):
    class WrongDownsample(Downsample):
        def forward(self, x):
            return F.conv2d(F.pad(x, pad, mode=mode), self.conv.weight, self.conv.bias, stride=2,
                            padding=conv_padding)
    return WrongDownsample


def _resnet_block(eps=1e-6, silu_first=False, shortcut=True):
    class WrongResnetBlock(ResnetBlock):
        def forward(self, x):
            def act_norm(h, norm):
                if silu_first:
                    return F.group_norm(F.silu(h), norm.num_groups, norm.weight, norm.bias, eps=eps)
                return F.silu(F.group_norm(h, norm.num_groups, norm.weight, norm.bias, eps=eps))
            h = self.conv2(act_norm(self.conv1(act_norm(x, self.norm1)), self.norm2))
            if not shortcut:
                return h
            return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h
    return WrongResnetBlock


MUTANTS = [
    Mutant("Downsample: symmetric padding (conv padding=1)", {"Downsample": _downsample((0, 0, 0, 0), conv_padding=1)},
           "a symmetric pad"),
    Mutant("Downsample: symmetric F.pad", {"Downsample": _downsample((1, 1, 1, 1))}, "you padded on the left and top"),
    Mutant("Downsample: pad on the left and top", {"Downsample": _downsample((1, 0, 1, 0))},
           "you padded on the left and top"),
    Mutant("Downsample: replicate padding", {"Downsample": _downsample((0, 1, 0, 1), mode="replicate")},
           "ldm pads with zeros"),
    Mutant("ResnetBlock: GroupNorm eps 1e-5", {"ResnetBlock": _resnet_block(eps=1e-5)}, "GroupNorm's eps is wrong"),
    Mutant("ResnetBlock: SiLU before the norm", {"ResnetBlock": _resnet_block(silu_first=True)},
           "SiLU comes after each GroupNorm"),
    Mutant("ResnetBlock: no shortcut", {"ResnetBlock": _resnet_block(shortcut=False)}, "the shortcut is missing"),
]
