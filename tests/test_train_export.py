"""Exports in the diffusers layout (`minidit.training.export_diffusers`, `weights_loader/export.py`): the loaders'
own key maps bring them back to exactly the weights written, and diffusers (the oracle) loads the folder with
`from_pretrained` and computes minidit's output."""
from dataclasses import replace

import pytest
import torch

from minidit.dit import DiT, DiTConfig
from minidit.pixart import PixArt, PixArtConfig
from minidit.training import export_diffusers
from tests.helpers.oracles import require
from tests.helpers.parity import EXACT, FP32, assert_parity
from weights_loader import CheckpointError, load_dit, load_pixart

diffusers = require("diffusers")


def _noisy(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_dit_diffusers_export(tmp_path):
    torch.manual_seed(0)
    config = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=2,
                       num_classes=10, timestep_freq_shift=1)       # diffusers' timestep frequencies
    model = _noisy(DiT(config))
    folder = export_diffusers(tmp_path / "transformer", model, model.state_dict())
    back = load_dit(folder, overrides={"timestep_freq_shift": 1})
    assert back.config == config
    for k, v in model.state_dict().items():
        assert_parity(back.state_dict()[k], v, tol=EXACT, what=k)
    ref = diffusers.DiTTransformer2DModel.from_pretrained(folder).eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 800]), torch.tensor([1, 10])
    with torch.no_grad():
        assert_parity(model(x, t, y), ref(x, timestep=t, class_labels=y).sample, tol=FP32, what="DiT vs diffusers")


@pytest.mark.parametrize("micro_condition", [False, True])
def test_pixart_diffusers_export(tmp_path, micro_condition):
    torch.manual_seed(0)
    config = PixArtConfig(input_size=16, patch_size=2, in_channels=4, hidden_size=48, depth=2, num_heads=2,
                          caption_channels=32, model_max_length=6, pe_interpolation=0.5, micro_condition=micro_condition)
    model = _noisy(PixArt(config))
    folder = export_diffusers(tmp_path / "transformer", model, model.state_dict())
    back = load_pixart(folder, overrides={"model_max_length": 6})
    assert back.config == config
    for k, v in model.state_dict().items():
        if k != "y_embedder.y_embedding":                        # diffusers folders do not store the null caption
            assert_parity(back.state_dict()[k], v, tol=EXACT, what=k)
    ref = diffusers.PixArtTransformer2DModel.from_pretrained(folder).eval()
    x, t, y = torch.randn(2, 4, 16, 16), torch.tensor([3, 800]), torch.randn(2, 6, 32)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    hw, ar = torch.tensor([[128.0, 128.0], [96.0, 160.0]]), torch.tensor([[1.0], [0.6]])
    micro = {"img_hw": hw, "aspect_ratio": ar} if micro_condition else {}
    with torch.no_grad():
        ours = model(x, t, y, mask, **micro)
        theirs = ref(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask,
                     added_cond_kwargs={"resolution": hw, "aspect_ratio": ar}).sample
    assert_parity(ours, theirs, tol=FP32, what="PixArt vs diffusers")


def test_pixart_with_qk_norm_has_no_diffusers_layout(tmp_path):
    model = PixArt(replace(PixArtConfig(input_size=8, hidden_size=48, depth=1, num_heads=2, caption_channels=16,
                                        model_max_length=4), qk_norm=True))
    with pytest.raises(CheckpointError, match="original layout"):
        export_diffusers(tmp_path / "t", model, model.state_dict())
