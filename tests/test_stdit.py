"""STDiT (Open-Sora 1.0, minidit/stdit.py): the forward against the official equations written out in
tests/helpers/stdit_official.py, and the zero-initialised temporal projection that makes STDiT, frame by
frame, exactly PixArt-α (minidit.pixart) with the same weights."""
import pytest
import torch

from helpers import FP32, assert_parity, randomize
from helpers.stdit_official import official_stdit_forward
from minidit.errors import InputError
from minidit.pixart import PIXART_ALPHA_512, PixArt, PixArtConfig
from minidit.stdit import PRESETS, STDIT_XL_2_16x256, STDiT, STDiTConfig

torch.set_num_threads(1)
TINY = STDiTConfig(input_size=(3, 6, 6), hidden_size=48, depth=2, num_heads=4, caption_channels=16,
                   model_max_length=5, space_scale=0.5, time_scale=1.0)


def _inputs(c: STDiTConfig, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, c.in_channels, *c.input_size, generator=g)
    y = torch.randn(B, c.model_max_length, c.caption_channels, generator=g)
    mask = torch.ones(B, c.model_max_length, dtype=torch.long)
    mask[1, 3:] = 0                                          # the second caption has 3 real tokens
    return x, torch.tensor([3.0, 721.5]), y, mask


@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 1, 2)])
def test_forward_equals_the_official_equations(patch):
    c = STDiTConfig(**{**TINY.__dict__, "input_size": (4, 6, 6), "patch_size": patch})
    model = randomize(STDiT(c), seed=1, scale=0.1)           # attn_temp.proj non-zero: the temporal path counts
    x, t, y, mask = _inputs(c)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ours = model(x, t, y, mask)
        theirs = official_stdit_forward(sd, x, t, y[:, None], mask, depth=c.depth, heads=c.num_heads, patch=patch,
                                        space_scale=c.space_scale, time_scale=c.time_scale)
    assert ours.shape == (2, 8, *c.input_size)
    assert_parity(ours, theirs, tol=FP32, what=f"STDiT vs the official equations, patch {patch}")


def test_temporal_attention_and_its_table_matter():
    model = randomize(STDiT(TINY), seed=2, scale=0.1)
    x, t, y, mask = _inputs(TINY)
    with torch.no_grad():
        ours = model(x, t, y, mask)
        shuffled = model(x[:, :, [2, 0, 1]], t, y, mask)[:, :, [1, 2, 0]]   # frames permuted and back
        full = model(x, t, y, mask, attention="full")
    # the temporal table makes the model order-aware: permuting frames is not equivariant
    assert (ours - shuffled).abs().max() > 1e-3
    assert (ours - full).abs().max() > 1e-3 and full.shape == ours.shape


def _pixart_with_stdit_weights(model: STDiT) -> PixArt:
    """A PixArt-α with STDiT's weights minus attn_temp (as Open-Sora 1.0 started: the reverse of its
    `reparameter`, which gave PixArt's Conv2d weight a time axis of 1)."""
    c = model.config
    H0 = c.input_size[1]
    pix = PixArt(PixArtConfig(input_size=H0, patch_size=c.patch_size[1], in_channels=c.in_channels,
                              hidden_size=c.hidden_size, depth=c.depth, num_heads=c.num_heads,
                              caption_channels=c.caption_channels, model_max_length=c.model_max_length,
                              pe_interpolation=c.space_scale))
    sd = {k: v for k, v in model.state_dict().items() if ".attn_temp." not in k}
    sd["x_embedder.proj.weight"] = sd["x_embedder.proj.weight"][:, :, 0]
    pix.load_state_dict(sd, strict=True)
    return pix.eval()


def test_zero_temporal_projection_is_pixart_alpha_on_every_frame():
    torch.manual_seed(3)
    model = randomize(STDiT(TINY), seed=3, scale=0.1)
    with torch.no_grad():
        for block in model.blocks:                            # the official initialize_temporal
            block.attn_temp.proj.weight.zero_()
            block.attn_temp.proj.bias.zero_()
    pix = _pixart_with_stdit_weights(model)
    x, t, y, mask = _inputs(TINY)
    B, F = x.shape[0], x.shape[2]
    frames = x.permute(0, 2, 1, 3, 4).reshape(B * F, *x.shape[1:2], *x.shape[3:])   # (B*F, C, H, W)
    with torch.no_grad():
        video = model(x, t, y, mask)                                                 # (B, C_out, F, H, W)
        per_frame = pix(frames, t.repeat_interleave(F), y.repeat_interleave(F, 0), mask.repeat_interleave(F, 0))
    per_frame = per_frame.reshape(B, F, *per_frame.shape[1:]).permute(0, 2, 1, 3, 4)
    assert_parity(video, per_frame, tol=FP32, what="zero-init STDiT vs PixArt-α per frame")
    # and a fresh STDiT is initialised that way
    fresh = STDiT(TINY)
    assert all(b.attn_temp.proj.weight.abs().max() == 0 and b.attn_temp.proj.bias.abs().max() == 0
               for b in fresh.blocks)
    assert all(b.attn_temp.qkv.weight.abs().max() > 0 for b in fresh.blocks)


def test_xl_parameter_count_by_hand():
    """STDiT-XL/2 = PixArt-α-512 + 28 temporal attentions of 4 D^2 + 4 D parameters: 759,620,768.
    The Open-Sora README's "724M" is this count in units of 2^20 (759,620,768 / 1,048,576 = 724.4)."""
    with torch.device("meta"):
        stdit, pixart = STDiT(STDIT_XL_2_16x256), PixArt(PIXART_ALPHA_512)
    n_stdit = sum(p.numel() for p in stdit.parameters())
    n_pixart = sum(p.numel() for p in pixart.parameters())
    D = 1152
    assert n_stdit == n_pixart + 28 * (4 * D * D + 4 * D) == 759_620_768
    assert round(n_stdit / 2**20) == 724


def test_presets_differ_in_size_and_space_scale_only():
    a, b = PRESETS["OpenSora-v1-HQ-16x256x256"], PRESETS["OpenSora-v1-HQ-16x512x512"]
    assert (a.input_size, a.space_scale, b.input_size, b.space_scale) == ((16, 32, 32), 0.5, (16, 64, 64), 1.0)
    assert {k for k in a.__dict__ if a.__dict__[k] != b.__dict__[k]} == {"input_size", "space_scale"}
    assert a.grid == (16, 16, 16) and a.model_max_length == 120 and a.out_channels == 8


def test_bad_inputs():
    model = STDiT(TINY).eval()
    x, t, y, mask = _inputs(TINY)
    with pytest.raises(InputError, match="video latents"):
        model(x[:, :, 0], t, y, mask)
    with pytest.raises(InputError, match="attention="):
        model(x, t, y, mask, attention="windowed")
    with pytest.raises(InputError, match="not divisible"):
        model(x[..., :5], t, y, mask)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        STDiTConfig(hidden_size=50, num_heads=4)
