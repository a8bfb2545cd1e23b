"""PixArt loading and parity: diffusers' PixArtTransformer2DModel (random weights, saved with
save_pretrained) vs minidit through weights_loader; key/shape contracts at full size; original .pth."""
import json

import pytest
import torch

from minidit.pixart import PRESETS, PixArt, PixArtConfig
from weights_loader import CheckpointError, load_pixart
from weights_loader.pixart import pixart_config_from_diffusers, pixart_from_diffusers

from helpers import FP32, assert_key_contract, assert_parity, random_state_dict, randomize, require, shapes
from helpers.layouts.pixart import documented_original_keys, original_to_diffusers

diffusers = require("diffusers")

# Tiny configs (docs/testing.md#tiny-oracles-what-makes-them-work-offline). α-like: sample_size 128 with use_additional_conditions and
# interpolation_scale left unset (diffusers' defaults -> micro-conditions on, pe 2). Σ-like: explicit.
ALPHA_LIKE = dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=24, caption_channels=32, sample_size=128, patch_size=2)
SIGMA_LIKE = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=16, caption_channels=32, sample_size=16, patch_size=2,
                  interpolation_scale=0.5, use_additional_conditions=False)


@pytest.fixture(scope="session")
def diffusers_models(tmp_path_factory):
    out = {}
    for name, kw in [("alpha", ALPHA_LIKE), ("sigma", SIGMA_LIKE)]:
        # non-trivial weights everywhere: no table, adaLN or output layer is zero
        ref = randomize(diffusers.PixArtTransformer2DModel(**kw), seed=0,
                        scale=lambda name: 0.3 if "scale_shift_table" in name else 0.1)
        folder = tmp_path_factory.mktemp(name)
        ref.save_pretrained(folder)
        out[name] = (ref, folder)
    return out


def _inputs(H, W, B=2, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, 4, H, W, generator=g), torch.randn(B, L, 32, generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 4:] = 0                                                    # second caption: 4 real tokens
    t = torch.tensor([999.0, 37.5])[:B]
    return x, t, y, mask


@pytest.mark.parametrize("which", ["alpha", "sigma"])
@pytest.mark.parametrize("H,W", [(8, 8), (8, 12), (16, 6)])
def test_same_output_as_diffusers(diffusers_models, which, H, W):
    ref, folder = diffusers_models[which]
    model = load_pixart(folder)
    x, t, y, mask = _inputs(H, W)
    hw, ar = torch.tensor([[H * 8.0, W * 8.0]] * 2), torch.tensor([[H / W]] * 2)
    with torch.no_grad():
        expected = ref(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask,
                       added_cond_kwargs={"resolution": hw, "aspect_ratio": ar}).sample
        got = model(x, t, y, mask, img_hw=hw, aspect_ratio=ar)
    assert expected.abs().max() > 0.5                                  # a real signal, not zeros
    assert_parity(got, expected, tol=FP32, what=f"PixArt {which} {H}x{W} vs diffusers")


def test_diffusers_config_traps_are_reproduced(diffusers_models):
    alpha = load_pixart(diffusers_models["alpha"][1]).config
    sigma = load_pixart(diffusers_models["sigma"][1]).config
    assert (alpha.micro_condition, alpha.pe_interpolation, alpha.input_size) == (True, 2.0, 128)
    assert (sigma.micro_condition, sigma.pe_interpolation, sigma.input_size) == (False, 0.5, 16)
    # the translation follows what diffusers itself builds from the same config (full size, meta)
    for cfg in [{"sample_size": 128}, {"sample_size": 128, "use_additional_conditions": False},
                {"sample_size": 256}, {"sample_size": 32, "interpolation_scale": 0.5}, {"sample_size": 64}]:
        with torch.device("meta"):
            ref = diffusers.PixArtTransformer2DModel(caption_channels=4096, **cfg)
        ours = pixart_config_from_diffusers(dict(ref.config))
        assert ours.micro_condition == ref.use_additional_conditions, cfg
        assert ours.pe_interpolation == ref.pos_embed.interpolation_scale, cfg
        assert ours.base_size == ref.pos_embed.base_size, cfg


def test_diffusers_folder_has_no_null_caption(diffusers_models, tmp_path):
    model = load_pixart(diffusers_models["sigma"][1])
    assert not model.y_embedder.has_null_caption
    with pytest.raises(RuntimeError, match="null caption"):
        model.y_embedder.null_caption()
    # from a pipeline root the caption length comes from the pipeline class
    root = tmp_path / "pipe"
    (root / "transformer").mkdir(parents=True)
    for f in diffusers_models["sigma"][1].iterdir():
        (root / "transformer" / f.name).write_bytes(f.read_bytes())
    (root / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline"}))
    assert load_pixart(root).config.model_max_length == 300


# ---------------------------------------------------------------------------------------------
# Full-size key/shape contracts (meta device, no memory)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_keys_match_the_documented_original_layout(name):
    with torch.device("meta"):
        model = PixArt(PRESETS[name])
    expected = documented_original_keys(PRESETS[name])
    expected.pop("pos_embed")                                          # the one recomputed key
    assert_key_contract(model.state_dict(), expected, f"{name} vs the documented original layout")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_keys_match_diffusers_after_mapping(name):
    c = PRESETS[name]
    with torch.device("meta"):       # the config the official converters write for this checkpoint
        ref = diffusers.PixArtTransformer2DModel(
            sample_size=c.input_size, interpolation_scale=c.pe_interpolation, caption_channels=4096,
            use_additional_conditions=c.micro_condition)
        ours = PixArt(c)
    assert pixart_config_from_diffusers(dict(ref.config), c.model_max_length) == c
    mapped = pixart_from_diffusers(ref.state_dict(), c.depth)
    ours = shapes(ours.state_dict())
    ours.pop("y_embedder.y_embedding")                                 # diffusers does not store it
    assert_key_contract(ours, mapped, f"{name}: minidit vs diffusers after mapping")


# ---------------------------------------------------------------------------------------------
# Original .pth layout: random weights, written from the documented key list, loaded strictly
# ---------------------------------------------------------------------------------------------

ORIG = PixArtConfig(input_size=16, hidden_size=144, depth=2, num_heads=2, caption_channels=32,
                    pe_interpolation=2.0, model_max_length=11, micro_condition=True)


@pytest.fixture(scope="module")
def original_file(tmp_path_factory):
    from diffusers.models.embeddings import get_2d_sincos_pos_embed
    sd = random_state_dict(documented_original_keys(ORIG), seed=3, scale=0.1)
    sd["pos_embed"] = get_2d_sincos_pos_embed(144, 8, base_size=8, interpolation_scale=2.0).float()[None]
    path = tmp_path_factory.mktemp("orig") / "PixArt-tiny.pth"
    torch.save({"state_dict": sd}, path)                               # the released files' wrapper
    return path, sd


def test_original_pth_loads_strictly_with_detected_config(original_file):
    path, sd = original_file
    model = load_pixart(path)
    assert model.config == ORIG                                        # detected from the tensors alone
    assert model.y_embedder.has_null_caption
    torch.testing.assert_close(model.y_embedder.y_embedding, sd["y_embedder.y_embedding"])
    # the same weights in diffusers (mapped by the documented rules) give the same output
    with torch.device("meta"):
        ref = diffusers.PixArtTransformer2DModel(
            num_attention_heads=2, attention_head_dim=72, num_layers=2, cross_attention_dim=144,
            caption_channels=32, sample_size=16, interpolation_scale=2, use_additional_conditions=True)
    ref.load_state_dict(original_to_diffusers(sd, 2), strict=True, assign=True)
    ref.pos_embed.pos_embed = torch.zeros(1, 64, 144)                  # non-persistent; recomputed off-size
    x, t, y, mask = _inputs(8, 12, L=11)
    hw, ar = torch.tensor([[64.0, 96.0]] * 2), torch.tensor([[8 / 12]] * 2)
    with torch.no_grad():
        expected = ref.eval()(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask,
                              added_cond_kwargs={"resolution": hw, "aspect_ratio": ar}).sample
        got = model(x, t, y, mask, img_hw=hw, aspect_ratio=ar)
    assert_parity(got, expected, tol=FP32, what="original .pth vs diffusers holding the same weights")


def test_original_pth_errors(original_file, tmp_path):
    path, sd = original_file
    with pytest.raises(CheckpointError, match="wrong preset"):
        load_pixart(path, config=PixArtConfig(**{**ORIG.__dict__, "pe_interpolation": 1.0}))
    no_pos = {k: v for k, v in sd.items() if k != "pos_embed"}
    with pytest.raises(CheckpointError, match="no pos_embed"):
        load_pixart(no_pos)
    assert load_pixart(no_pos, config=ORIG).config == ORIG            # a preset supplies the resolution
    broken = dict(sd)
    del broken["blocks.1.cross_attn.kv_linear.bias"]
    with pytest.raises(CheckpointError, match="missing keys: blocks.1.cross_attn.kv_linear.bias"):
        load_pixart(broken)
    with pytest.raises(CheckpointError, match="config.json"):
        load_pixart(original_to_diffusers(sd, 2))
