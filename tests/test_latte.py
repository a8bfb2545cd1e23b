"""Latte-1 (`minidit/latte.py`, `weights_loader/latte.py`) against diffusers' LatteTransformer3DModel:
tiny random models written with `save_pretrained` and loaded strictly (tier 2), the full Latte-1 config's
keys and shapes on the meta device (tier 3), and the properties the oracle cannot show (the caption
mask, the frame rule, strict loading)."""
import pytest
import torch

from minidit.latte import LATTE_1, PRESETS, Latte, LatteConfig
from weights_loader import CheckpointError, ConfigError
from weights_loader.latte import latte_config_from_diffusers, latte_from_diffusers, load_latte

from helpers import FP32, assert_key_contract, assert_parity, require, shapes

diffusers = require("diffusers")
from helpers.latte import FRAMES, LATTE_1 as LATTE_1_CONFIG_JSON, TINY, tiny_transformer  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(diffusers model, its folder) for the tiny random Latte."""
    ref = tiny_transformer()
    folder = tmp_path_factory.mktemp("latte") / "transformer"
    ref.save_pretrained(folder)
    return ref, folder


def inputs(frames=FRAMES, H=8, W=8, B=2, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 4, frames, H, W, generator=g), torch.tensor([17.0, 803.0])[:B],
            torch.randn(B, L, TINY["caption_channels"], generator=g))


def reference(ref, x, t, y, **kw):
    with torch.no_grad():
        return ref(x, timestep=t, encoder_hidden_states=y, return_dict=False, **kw)[0]


@pytest.mark.parametrize("frames,H,W", [(FRAMES, 8, 8), (1, 8, 8), (FRAMES, 8, 12)],
                         ids=["16-frames", "1-frame-no-temporal-table", "non-square-other-size"])
def test_same_output_as_diffusers(saved, frames, H, W):
    ref, folder = saved
    model = load_latte(folder)
    x, t, y = inputs(frames, H, W)
    expected = reference(ref, x, t, y)
    assert expected.shape == (2, 8, frames, H, W) and expected.std() > 0.1
    with torch.no_grad():
        assert_parity(model(x, t, y), expected, tol=FP32, what=f"Latte {frames}x{H}x{W} vs diffusers")


def test_without_temporal_blocks_as_diffusers(saved):
    ref, folder = saved
    model = load_latte(folder.parent)                      # the pipeline-root form of the source, too
    x, t, y = inputs()
    expected = reference(ref, x, t, y, enable_temporal_attentions=False)
    with torch.no_grad():
        assert_parity(model(x, t, y, temporal=False), expected, tol=FP32, what="temporal=False vs diffusers")
        assert (model(x, t, y) - model(x, t, y, temporal=False)).abs().max() > 1e-2   # the temporal half is live


def test_frames_interact_only_through_the_temporal_blocks(saved):
    """Hand-derived: without temporal blocks each frame is an image of its own (a frame's output does
    not depend on the other frames); with them it does."""
    model = load_latte(saved[1])
    x, t, y = inputs()
    x2 = x.clone()
    x2[:, :, 1:] = torch.randn_like(x2[:, :, 1:])
    with torch.no_grad():
        a, b = model(x, t, y, temporal=False), model(x2, t, y, temporal=False)
        assert torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-6)
        assert (model(x, t, y)[:, :, 0] - model(x2, t, y)[:, :, 0]).abs().max() > 1e-3


def test_a_masked_caption_token_is_a_dropped_one(saved):
    """Hand-derived: a key-padding mask removes those caption tokens from every frame's cross-attention
    (Latte's pipelines pass no mask; the transformer takes one, repeated per frame)."""
    model = load_latte(saved[1])
    x, t, y = inputs(L=7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[:, 4:] = False
    with torch.no_grad():
        assert_parity(model(x, t, y, mask), model(x, t, y[:, :4]), tol=FP32, what="mask vs truncation")


def test_other_frame_counts_are_refused(saved):
    model = load_latte(saved[1])
    with pytest.raises(ValueError, match="makes 16 frames"):
        model(*inputs(frames=5))
    with pytest.raises(ValueError, match="or 1 frame"):
        LATTE_1.check_frames(8)
    assert LATTE_1.check_frames(16) == 16 and LATTE_1.check_frames(1) == 1


def test_the_state_dict_is_the_checkpoint_s(saved):
    """No PixArt null caption (Latte never had one), no cross-attention in the temporal blocks."""
    model = load_latte(saved[1])
    keys = model.state_dict()
    assert "y_embedder.y_embedding" not in keys and not any(k.startswith("temporal_blocks.0.cross_attn") for k in keys)
    with pytest.raises(RuntimeError, match="no stored null caption"):
        model.y_embedder.null_caption()


# ---------------------------------------------------------------------------------------------
# Strict loading
# ---------------------------------------------------------------------------------------------

def test_missing_and_unknown_keys_are_named(saved):
    ref, folder = saved
    config = load_latte(folder).config
    sd = dict(ref.state_dict())
    sd.pop("temporal_transformer_blocks.1.attn1.to_k.weight")
    with pytest.raises(CheckpointError, match="temporal_transformer_blocks.1.attn1.to_k.weight"):
        load_latte(sd, config)
    sd = dict(ref.state_dict(), **{"temporal_transformer_blocks.0.attn2.to_q.weight": torch.zeros(16, 16)})
    with pytest.raises(CheckpointError, match="attn2.to_q"):
        load_latte(sd, config)
    with pytest.raises(CheckpointError, match="needs its config"):
        load_latte(ref.state_dict())


def test_an_unimplemented_option_is_refused(tmp_path, saved):
    import json
    folder = tmp_path / "transformer"
    folder.mkdir()
    cfg = json.loads((saved[1] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "norm_type": "layer_norm"}))
    with pytest.raises(ConfigError, match="norm_type"):
        load_latte(folder)
    with pytest.raises(ValueError, match="activation_fn"):
        LatteConfig(activation_fn="geglu")


# ---------------------------------------------------------------------------------------------
# Full size: the Latte-1 config on the meta device (no memory)
# ---------------------------------------------------------------------------------------------

def test_latte_1_keys_and_shapes_match_diffusers_after_mapping():
    with torch.device("meta"):
        ref = diffusers.LatteTransformer3DModel(**LATTE_1_CONFIG_JSON)
        ours = Latte(PRESETS["Latte-1"])
    assert latte_config_from_diffusers(dict(ref.config)) == PRESETS["Latte-1"]
    mapped = latte_from_diffusers(dict(ref.state_dict()), LATTE_1)
    assert_key_contract(shapes(ours.state_dict()), mapped, "Latte-1: minidit vs diffusers after mapping")
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in ref.parameters()) == 1_057_246_880    # 611 M PixArt-α + 446 M temporal
