"""weights_loader.load_stdit: Open-Sora 1.0 `.pth` files, written here with random weights in the layout of
the official module structure (tests/helpers/layouts/opensora.py, not minidit's state_dict), loaded strictly;
the full-size key/shape contract; and the loaded model against the official equations."""
import pytest
import torch

from helpers import EXACT, FP32, assert_key_contract, assert_parity, random_state_dict
from helpers.layouts.opensora import documented_stdit_keys, official_pos_embed, official_pos_embed_temporal
from helpers.stdit_official import official_stdit_forward
from minidit.stdit import PRESETS, STDiT, STDiTConfig
from weights_loader import CheckpointError, load_stdit
from weights_loader.io import build_on_meta
from weights_loader.opensora import RECOMPUTED

torch.set_num_threads(1)
# D = 144 = 2 heads of 72 (the head size the loader reads the head count with), 2 blocks, 3 x 6 x 6 latents
D, DEPTH, C, PATCH, FRAMES, SIDE, TOKENS, CAP = 144, 2, 4, (1, 2, 2), 3, 3, 5, 16


def official_file(space_scale=0.5, time_scale=1.0, seed=0):
    """A state dict as Open-Sora's training saves it: random weights + the two tables, official formulas."""
    keys = documented_stdit_keys(D, DEPTH, C, PATCH, FRAMES, SIDE, SIDE, TOKENS, CAP)
    sd = random_state_dict({k: s for k, s in keys.items() if k not in ("pos_embed", "pos_embed_temporal")}, seed)
    sd["pos_embed"] = official_pos_embed(D, SIDE, SIDE, space_scale)
    sd["pos_embed_temporal"] = official_pos_embed_temporal(D, FRAMES, time_scale)
    return sd


def test_pth_loads_strictly_with_the_config_read_off_the_file(tmp_path):
    sd = official_file()
    torch.save(sd, tmp_path / "OpenSora-v1-tiny.pth")
    model = load_stdit(tmp_path / "OpenSora-v1-tiny.pth")
    c = model.config
    assert (c.input_size, c.patch_size, c.hidden_size, c.depth, c.num_heads, c.in_channels) == \
        ((FRAMES, 2 * SIDE, 2 * SIDE), PATCH, D, DEPTH, 2, C)
    assert (c.space_scale, c.time_scale, c.model_max_length, c.caption_channels, c.pred_sigma) == \
        (0.5, 1.0, TOKENS, CAP, True)
    loaded = model.state_dict()
    assert set(loaded) == set(sd) - set(RECOMPUTED)
    for k, v in loaded.items():
        assert_parity(v, sd[k], tol=EXACT, what=k)
    # the loaded model computes what the official code computes with the file's tensors
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, C, FRAMES, 2 * SIDE, 2 * SIDE, generator=g), torch.randn(2, 1, TOKENS, CAP, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    t = torch.tensor([999.0, 12.0])
    with torch.no_grad():
        ours = model(x, t, y, mask)
        theirs = official_stdit_forward(sd, x, t, y, mask, depth=DEPTH, heads=2, patch=PATCH, space_scale=0.5)
    assert_parity(ours, theirs, tol=FP32, what="loaded STDiT vs the official equations")


def test_wrapped_and_prefixed_files_and_dtype():
    sd = official_file()
    for wrapped in ({"ema": sd}, {"state_dict": sd}, {f"module.{k}": v for k, v in sd.items()}):
        assert load_stdit(wrapped).config.depth == DEPTH
    model = load_stdit(sd, dtype=torch.bfloat16)
    assert model.blocks[1].attn_temp.qkv.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_keys_match_the_documented_layout(name):
    c = PRESETS[name]
    F, H, W = c.grid
    documented = documented_stdit_keys(1152, 28, 4, (1, 2, 2), F, H, W, 120, 4096)
    ours = build_on_meta(STDiT, c).state_dict()
    assert_key_contract({**ours, "pos_embed": (1, H * W, 1152), "pos_embed_temporal": (1, F, 1152)}, documented,
                        what=name)
    assert len(documented) == 16 + 2 + 28 * 19


def test_a_preset_is_checked_against_the_stored_tables():
    sd = official_file(space_scale=1.0)
    assert load_stdit(sd).config.space_scale == 1.0
    tiny = STDiTConfig(input_size=(FRAMES, 2 * SIDE, 2 * SIDE), hidden_size=D, depth=DEPTH, num_heads=2,
                       caption_channels=CAP, model_max_length=TOKENS, space_scale=0.5)
    with pytest.raises(CheckpointError, match="pos_embed .*wrong preset"):
        load_stdit(sd, tiny)
    with pytest.raises(CheckpointError, match="pos_embed_temporal .*wrong preset"):
        load_stdit(official_file(time_scale=2.0), tiny)
    with pytest.raises(CheckpointError, match="wrong preset"):                     # 512 preset, tiny file
        load_stdit(sd, PRESETS["OpenSora-v1-HQ-16x512x512"])
    bare = {k: v for k, v in official_file().items() if k not in RECOMPUTED}
    with pytest.raises(CheckpointError, match="training size is unknown: pass config="):
        load_stdit(bare)
    assert load_stdit(bare, tiny).config is tiny


def test_errors_name_the_problem():
    sd = official_file()
    pixart = {k: v for k, v in sd.items() if ".attn_temp." not in k}
    with pytest.raises(CheckpointError, match="image model .*load_pixart"):
        load_stdit(pixart)
    with pytest.raises(CheckpointError, match="STDiT3"):
        load_stdit({"spatial_blocks.0.attn.qkv.weight": torch.zeros(3)})
    missing = dict(sd)
    del missing["blocks.1.attn_temp.proj.bias"]
    with pytest.raises(CheckpointError, match="1 missing keys: .*blocks.1.attn_temp.proj.bias"):
        load_stdit(missing)
    extra = {**sd, "blocks.0.attn_temp.q_norm.weight": torch.ones(72)}
    with pytest.raises(CheckpointError, match="1 unexpected keys"):
        load_stdit(extra)
    flat = {**sd, "x_embedder.proj.weight": sd["x_embedder.proj.weight"][:, :, 0]}
    with pytest.raises(CheckpointError, match="Conv3d weight"):
        load_stdit(flat)


def test_stdit_from_pixart_alpha_is_the_image_model_on_every_frame(tmp_path):
    """Open-Sora 1.0's start: PixArt-α-512's weights in a fresh STDiT. With the 256² preset's space_scale 0.5
    each frame's 16 x 16 tokens sit at positions 0, 2, ..., 30: PixArt-α-512's own [0, 32) span, so
    frame by frame the new video model is PixArt-α at 256² (tiny here: 3 x 3 tokens at 0, 2, 4; file 6 x 6)."""
    from helpers.layouts.pixart import documented_original_keys
    from minidit.pixart import PixArtConfig
    from weights_loader import load_pixart
    from weights_loader.opensora import stdit_from_pixart
    pix_config = PixArtConfig(input_size=12, hidden_size=D, depth=DEPTH, num_heads=2, caption_channels=CAP,
                              model_max_length=TOKENS)
    sd = random_state_dict({k: s for k, s in documented_original_keys(pix_config).items() if k != "pos_embed"}, 5)
    sd["pos_embed"] = official_pos_embed(D, 6, 6, 1.0)
    torch.save({"state_dict": sd}, tmp_path / "PixArt-tiny.pth")
    config = STDiTConfig(input_size=(FRAMES, 6, 6), hidden_size=D, depth=DEPTH, num_heads=2, caption_channels=CAP,
                         model_max_length=TOKENS, space_scale=0.5)
    video_model = stdit_from_pixart(tmp_path / "PixArt-tiny.pth", config)
    image_model = load_pixart(tmp_path / "PixArt-tiny.pth")
    assert all(b.attn_temp.proj.weight.abs().max() == 0 for b in video_model.blocks)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(2, C, FRAMES, 6, 6, generator=g), torch.randn(2, TOKENS, CAP, generator=g)
    mask, t = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), torch.tensor([400.0, 5.0])
    with torch.no_grad():
        video = video_model(x, t, y, mask)
        frames = image_model(x.transpose(1, 2).flatten(0, 1), t.repeat_interleave(FRAMES),
                             y.repeat_interleave(FRAMES, 0), mask.repeat_interleave(FRAMES, 0))
    assert_parity(video, frames.unflatten(0, (2, FRAMES)).transpose(1, 2), tol=FP32,
                  what="STDiT from PixArt-α vs PixArt-α per frame")
    with pytest.raises(CheckpointError, match="keys with a different shape: y_embedder.y_embedding"):
        stdit_from_pixart(sd, STDiTConfig(**{**config.__dict__, "model_max_length": 120}))
    with pytest.raises(CheckpointError, match="already has temporal attention"):
        stdit_from_pixart(official_file(), config)
