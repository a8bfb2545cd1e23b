"""DiT: module parity with diffusers (tier 2), full-size key/shape contracts (tier 3), and the
checkpoint semantics the official code fixes (timestep frequencies, CFG channels, adaLN-Zero)."""
import dataclasses

import pytest
import torch
from torch.testing import assert_close

from minidit.dit import CHECKPOINTS, DIT_XL_2, PRESETS, DiT, DiTConfig
from weights_loader import CheckpointError, load_dit
from weights_loader.dit import dit_config_from_diffusers, dit_from_diffusers
from weights_loader.configs import read_config

from helpers import FP32, assert_key_contract, assert_parity, randomize
from helpers.layouts.dit import official_dit_keys

TINY = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
            sample_size=8, patch_size=2, num_embeds_ada_norm=10, norm_eps=1e-6)


@pytest.fixture(scope="session")
def diffusers_dit(tmp_path_factory):
    """A tiny diffusers DiTTransformer2DModel with non-trivial random weights, saved to disk."""
    from diffusers import DiTTransformer2DModel
    torch.manual_seed(0)
    # adaLN-Zero starts at zero: randomise everything so nothing is trivial
    ref = randomize(DiTTransformer2DModel(**TINY), seed=None, scale=0.2)
    with torch.no_grad():
        shared = ref.transformer_blocks[0].norm1.emb.state_dict()
        for block in ref.transformer_blocks[1:]:        # the per-block embedder copies are identical
            block.norm1.emb.load_state_dict(shared)
    folder = tmp_path_factory.mktemp("dit") / "transformer"
    ref.save_pretrained(folder)
    return ref, folder


def _inputs(B=3, size=8, classes=10):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 4, size, size, generator=g)
    t = torch.tensor([0, 17, 999])[:B]
    y = torch.tensor([1, 5, classes])[:B]               # includes the null class
    return x, t, y


def test_matches_diffusers_with_its_timestep_convention(diffusers_dit):
    ref, folder = diffusers_dit
    config = dataclasses.replace(dit_config_from_diffusers(read_config(folder)), timestep_freq_shift=1)
    model = load_dit(folder, config)
    x, t, y = _inputs()
    with torch.no_grad():
        assert_parity(model(x, t, y), ref(x, t, y).sample, tol=FP32, what="DiT vs diffusers (shift 1)")


def test_default_follows_the_official_timestep_frequencies(diffusers_dit):
    """diffusers' DiT uses downscale_freq_shift=1; the official code divides by half
    (docs/checkpoints.md#the-timestep-frequency-trap)."""
    ref, folder = diffusers_dit
    model = load_dit(folder)                             # default: official convention
    assert model.config.timestep_freq_shift == 0
    x, t, y = _inputs()
    with torch.no_grad():
        official = model(x, t, y)
        diffusers_out = ref(x, t, y).sample
        assert (official - diffusers_out).abs().max() > 1e-2   # visibly different outputs
        for block in ref.transformer_blocks:                   # give diffusers the official frequencies
            block.norm1.emb.time_proj.downscale_freq_shift = 0
        try:
            assert_parity(official, ref(x, t, y).sample, tol=FP32, what="DiT vs diffusers given the official shift 0")
        finally:
            for block in ref.transformer_blocks:
                block.norm1.emb.time_proj.downscale_freq_shift = 1


def test_non_square_latents_run():
    model = DiT(DiTConfig(input_size=8, hidden_size=32, depth=1, num_heads=2, num_classes=3))
    out = model(torch.randn(2, 4, 8, 12), torch.tensor([1, 2]), torch.tensor([0, 3]))
    assert out.shape == (2, 8, 8, 12)


def test_pipeline_root_folder_is_accepted(diffusers_dit):
    _, folder = diffusers_dit
    (folder.parent / "model_index.json").write_text("{}")
    model = load_dit(folder.parent)
    assert model.config.depth == 2 and model.config.num_classes == 10


def test_adaln_zero_blocks_start_as_identity():
    model = DiT(DiTConfig(input_size=8, hidden_size=32, depth=2, num_heads=2, num_classes=10))
    x, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    assert_close(model.blocks[0](x, c), x)               # every gate is 0 at init
    out = model(torch.randn(2, 4, 8, 8), torch.tensor([3, 4]), torch.tensor([1, 2]))
    assert torch.all(out == 0)                           # and the final layer is zero-initialised


def _random_dit(**kw):
    return randomize(DiT(DiTConfig(input_size=8, hidden_size=32, depth=2, num_heads=2, num_classes=10, **kw)),
                     seed=None, scale=0.2)


def test_forward_with_cfg_guides_three_channels_like_the_official_code():
    model = _random_dit()
    x = torch.randn(2, 4, 8, 8)
    x = torch.cat([x[:1], x[:1]])                        # [x_half, x_half]
    t, y = torch.tensor([50, 50]), torch.tensor([3, 10])  # [class, null]
    s = 4.0
    with torch.no_grad():
        raw = model(x, t, y)
        guided = model.forward_with_cfg(x, t, y, s)
        guided_all = model.forward_with_cfg(x, t, y, s, cfg_channels=None)
    cond, uncond = raw[:1], raw[1:]
    by_hand = uncond + s * (cond - uncond)
    for half in (guided[:1], guided[1:]):
        assert_close(half[:, :3], by_hand[:, :3])        # guided eps channels 0..2
    assert_close(guided[:, 3:], raw[:, 3:])              # eps channel 3 and the variance are not guided
    assert_close(guided_all[:1, :4], by_hand[:, :4])     # diffusers-style: all 4 eps channels
    assert_close(guided_all[:, 4:], raw[:, 4:])


def test_the_twelve_presets_and_xl2_parameter_count():
    assert len(PRESETS) == 12
    with torch.device("meta"):
        model = DiT(DIT_XL_2)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 674.8e6) < 0.1e6, n                  # 674.8 M without pos_embed: docs/checkpoints.md#dit-architecture
    assert CHECKPOINTS["DiT-XL-2-512x512"].input_size == 64


@pytest.mark.parametrize("name,input_size", [("DiT-XL-2-256x256", 32), ("DiT-XL-2-512x512", 64)])
def test_contract_dit_xl2_against_the_original_key_list(name, input_size):
    with torch.device("meta"):
        model = DiT(CHECKPOINTS[name])
    official = official_dit_keys(1152, 28, 2, input_size=input_size)
    official.pop("pos_embed")                            # the one recomputed key (loader allow-list)
    assert_key_contract(model.state_dict(), official, f"{name} vs the original key list")


def test_contract_dit_xl2_against_diffusers_after_mapping():
    from diffusers import DiTTransformer2DModel
    with torch.device("meta"):
        ref = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                    num_layers=28, sample_size=32, patch_size=2, num_embeds_ada_norm=1000)
        model = DiT(CHECKPOINTS["DiT-XL-2-256x256"])
    mapped = dit_from_diffusers(ref.state_dict(), depth=28)
    assert_key_contract(model.state_dict(), mapped, "DiT-XL/2 vs diffusers after mapping")
    assert dit_config_from_diffusers(dict(ref.config)) == CHECKPOINTS["DiT-XL-2-256x256"]


def test_diffusers_folder_with_diverging_embedder_copies_is_refused(diffusers_dit, tmp_path):
    """diffusers stores DiT's one timestep/label embedder once per block. A folder whose copies differ
    (e.g. fine-tuned per block) cannot be the official model: a clear error, not block 0's copy."""
    from safetensors.torch import load_file, save_file
    _, folder = diffusers_dit
    sd = load_file(folder / "diffusion_pytorch_model.safetensors")
    sd["transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight"] += 0.01
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(sd, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match="block 1's copy of class_embedder.embedding_table.weight differs"):
        load_dit(tmp_path)


def test_config_fields_are_the_official_constructor_arguments():
    official = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
                "class_dropout_prob", "num_classes", "learn_sigma"]            # DiT:models.py DiT.__init__
    names = [f.name for f in dataclasses.fields(DiTConfig)]
    assert names[:len(official)] == official and names[len(official):] == ["timestep_freq_shift"]
    defaults = DiTConfig()       # the official defaults: DiT(input_size=32, patch_size=2, ..., learn_sigma=True)
    assert (defaults.input_size, defaults.patch_size, defaults.in_channels, defaults.hidden_size, defaults.depth,
            defaults.num_heads, defaults.mlp_ratio, defaults.class_dropout_prob, defaults.num_classes,
            defaults.learn_sigma, defaults.timestep_freq_shift) == (32, 2, 4, 1152, 28, 16, 4.0, 0.1, 1000, True, 0)
