"""AutoencoderKL: parity with diffusers (tiny and full SDXL / SD3 configs), key contracts, ldm files.

Oracles: diffusers' `AutoencoderKL` with random weights saved by `save_pretrained` (the real on-disk
layout), and diffusers' own ldm converter `convert_ldm_vae_checkpoint` for the original layout.
"""
import dataclasses
import warnings

import pytest
import torch

from minidit import vae as V
from minidit.attention import attention_backend
from weights_loader import CheckpointError, load_vae
from weights_loader.vae import vae_config_from_diffusers, vae_from_diffusers

from helpers import BF16, EXACT, FP32, FP32_OTHER_KERNEL, assert_key_contract, assert_parity, perturb, require
from helpers.layouts.vae import ldm_shapes, random_ldm

diffusers = require("diffusers")
from diffusers import AutoencoderKL as DiffusersVAE  # noqa: E402


def diffusers_vae(widths=(8, 16, 16, 16), layers=1, latent=4, groups=8, **kw):
    torch.manual_seed(0)
    vae = DiffusersVAE(block_out_channels=widths, layers_per_block=layers, latent_channels=latent,
                       norm_num_groups=groups, down_block_types=("DownEncoderBlock2D",) * len(widths),
                       up_block_types=("UpDecoderBlock2D",) * len(widths), **kw)
    # GroupNorm starts as (1, 0): make it matter, so a swapped norm is caught
    return perturb(vae, seed=None, scale=0.2, where=lambda name: "norm" in name)


SD3_KW = dict(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609)
FULL = dict(widths=(128, 256, 512, 512), layers=2, groups=32)


def assert_same_vae(ours, ref, x, z, tol=FP32_OTHER_KERNEL):
    with torch.no_grad():
        post_ref, post = ref.encode(x).latent_dist, ours.encode(x)
        assert_parity(post.mean, post_ref.mean, tol=tol, what="posterior mean")
        assert_parity(post.logvar, post_ref.logvar, tol=tol, what="posterior logvar")
        assert_parity(ours.decode(z), ref.decode(z).sample, tol=tol, what="decode")


@pytest.mark.parametrize("kind", ["sd", "sd3"])
def test_tiny_parity_with_diffusers_folder(kind, tmp_path):
    ref = diffusers_vae(latent=16, **SD3_KW) if kind == "sd3" else diffusers_vae()
    ref.save_pretrained(tmp_path)
    ours = load_vae(tmp_path)
    assert ours.config.use_quant_conv == (kind == "sd")
    assert ours.config.scaling_factor == ref.config.scaling_factor
    torch.manual_seed(1)
    x, z = torch.rand(2, 3, 64, 48) * 2 - 1, torch.randn(2, ref.config.latent_channels, 8, 6)
    assert_same_vae(ours, ref, x, z)
    # the SDPA and the manual attention path give the same VAE
    with torch.no_grad(), attention_backend("manual"):
        assert_parity(ours.decode(z), ref.decode(z).sample, tol=FP32_OTHER_KERNEL, what="decode, manual attention")


@pytest.fixture(scope="module")
def full_vaes(tmp_path_factory):
    """The full SDXL and SD3 VAE configurations (84 M parameters each), random weights, saved once."""
    out = {}
    for name, kw in [("sdxl", dict(scaling_factor=0.13025)), ("sd3", dict(latent=16, **SD3_KW))]:
        ref = diffusers_vae(**FULL, **kw)
        folder = tmp_path_factory.mktemp(name)
        ref.save_pretrained(folder)
        out[name] = (ref, folder)
    return out


@pytest.mark.parametrize("name,preset", [("sdxl", V.SDXL_VAE), ("sd3", V.SD3_VAE)])
def test_full_config_parity_at_64px(full_vaes, name, preset):
    ref, folder = full_vaes[name]
    ours = load_vae(folder)
    assert dataclasses.replace(ours.config, force_upcast=preset.force_upcast) == preset
    torch.manual_seed(2)
    x, z = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, preset.z_channels, 8, 8)
    with torch.no_grad():
        post_ref, post = ref.encode(x).latent_dist, ours.encode(x)
        assert_parity(post.mean, post_ref.mean, tol=FP32_OTHER_KERNEL, what=f"{name} posterior mean")
        assert_parity(post.logvar, post_ref.logvar, tol=FP32_OTHER_KERNEL, what=f"{name} posterior logvar")
        # diffusers' pipelines decode latents as decode(z / scaling_factor + shift_factor)
        scale, shift = ref.config.scaling_factor, ref.config.shift_factor or 0.0
        assert_parity(V.decode_latents(ours, z), ref.decode(z / scale + shift).sample, tol=FP32_OTHER_KERNEL,
                      what=f"{name} decode_latents")
        # ... and encode images to (mean - shift_factor) * scaling_factor
        assert_parity(V.encode_latents(ours, x), (post_ref.mean - shift) * scale, tol=FP32_OTHER_KERNEL,
                      what=f"{name} encode_latents")


def test_posterior_sample_uses_the_generator_like_diffusers(tmp_path):
    ref = diffusers_vae()
    ref.save_pretrained(tmp_path)
    ours = load_vae(tmp_path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = ref.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(5))
        b = ours.encode(x).sample(generator=torch.Generator().manual_seed(5))
    assert_parity(b, a, tol=FP32_OTHER_KERNEL, what="posterior sample with the same generator")
    assert not torch.allclose(a, ours.encode(x).mode())
    with torch.no_grad():                               # the KL regulariser of VAE training, too
        assert_parity(ours.encode(x).kl(), ref.encode(x).latent_dist.kl(), tol=FP32, what="KL")


def test_posterior_logvar_is_clamped_like_ldm(tmp_path):
    """ldm's DiagonalGaussianDistribution clamps the log-variance to [-30, 20] (so std = exp(logvar / 2)
    stays finite); diffusers does the same. Push the encoder's logvar channels far outside that range."""
    ref = diffusers_vae()
    with torch.no_grad():                              # quant_conv's second half of the outputs is the logvar
        ref.quant_conv.bias[4:6] = 1e4
        ref.quant_conv.bias[6:] = -1e4
    ref.save_pretrained(tmp_path)
    ours = load_vae(tmp_path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        post, post_ref = ours.encode(x), ref.encode(x).latent_dist
        assert torch.all(post.logvar[:, :2] == 20.0) and torch.all(post.logvar[:, 2:] == -30.0)
        assert_parity(post.logvar, post_ref.logvar, tol=EXACT, what="clamped logvar")
        torch.testing.assert_close(post.std, torch.exp(0.5 * post.logvar))
        z = post.sample(generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(z).all()
        assert_parity(z, post_ref.sample(generator=torch.Generator().manual_seed(0)), tol=FP32_OTHER_KERNEL,
                      what="sample from the clamped posterior")


# --------------------------------------------------------------------------------------------
# Key / shape contracts at full size (meta device)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sd-vae-ft-mse", "sdxl-vae", "sdxl-vae-fp16-fix", "sd3-vae"])
def test_full_size_key_contract(name):
    preset = V.PRESETS[name]
    with torch.device("meta"):
        ours = V.AutoencoderKL(preset)
        ref = DiffusersVAE(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                           latent_channels=preset.z_channels, down_block_types=("DownEncoderBlock2D",) * 4,
                           up_block_types=("UpDecoderBlock2D",) * 4, use_quant_conv=preset.use_quant_conv,
                           use_post_quant_conv=preset.use_post_quant_conv)
    ldm = ldm_shapes(128, (1, 2, 4, 4), 2, preset.z_channels, quant=preset.use_quant_conv)
    assert_key_contract(ours.state_dict(), ldm, f"{name} vs the ldm layout")
    assert_key_contract(ours.state_dict(), vae_from_diffusers(ref.state_dict(), 4), f"{name} vs diffusers, mapped")
    n = sum(v.numel() for v in ours.state_dict().values())
    assert n == (83_819_683 if preset.z_channels == 16 else 83_653_863), n     # the "83M" VAE


# --------------------------------------------------------------------------------------------
# Original (ldm) single files
# --------------------------------------------------------------------------------------------

SMALL = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)


@pytest.mark.parametrize("kind", ["sd3", "sd1", "sdxl"])
def test_ldm_single_file_loads_strictly_and_matches_diffusers_converter(kind, tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from weights_loader.io import save_safetensors
    z, quant = (16, False) if kind == "sd3" else (4, True)
    shapes = ldm_shapes(**SMALL, z=z, quant=quant)
    others = {"sd3": "model.diffusion_model.x_embedder.proj.weight", "sd1": "cond_stage_model.transformer.w",
              "sdxl": "conditioner.embedders.0.transformer.w"}
    sd = random_ldm(shapes, prefix="first_stage_model.")
    sd[others[kind]] = torch.zeros(3)
    save_safetensors(sd, tmp_path / "model.safetensors")
    ours = load_vae(tmp_path / "model.safetensors")            # config detected from the file
    expected = {"sd3": V.SD3_VAE, "sd1": V.SD_VAE, "sdxl": V.SDXL_VAE}[kind]
    assert ours.config == dataclasses.replace(expected, **SMALL)
    # independent oracle: diffusers' own ldm -> diffusers conversion
    cfg = dict(block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=z,
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               use_quant_conv=quant, use_post_quant_conv=quant)
    ref = DiffusersVAE(**cfg).eval()
    ref.load_state_dict(convert_ldm_vae_checkpoint(sd, cfg), strict=True)
    torch.manual_seed(3)
    assert_same_vae(ours, ref, torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, z, 4, 4))


def test_ldm_file_errors_and_training_keys():
    sd = random_ldm(ldm_shapes(**SMALL, z=4))
    with pytest.raises(CheckpointError, match="config="):          # standalone 4-channel: scaling unknown
        load_vae(sd)
    sd["loss.discriminator.main.0.weight"] = torch.zeros(2)       # the training loss is dropped ...
    vae = load_vae(sd, dataclasses.replace(V.SD_VAE, **SMALL))
    assert vae.config.scaling_factor == 0.18215
    vae_prefixed = load_vae({f"vae.{k}": v for k, v in sd.items()}, dataclasses.replace(V.SD_VAE, **SMALL))
    assert torch.equal(vae_prefixed.decoder.conv_out.weight, vae.decoder.conv_out.weight)
    sd["encoder.extra.weight"] = torch.zeros(2)                    # ... anything else is an error
    del sd["decoder.mid.attn_1.q.bias"]
    with pytest.raises(CheckpointError, match="encoder.extra.weight") as e:
        load_vae(sd, dataclasses.replace(V.SD_VAE, **SMALL))
    assert "decoder.mid.attn_1.q.bias" in str(e.value)
    with pytest.raises(CheckpointError, match="AutoencoderKL"):
        load_vae({"foo.weight": torch.zeros(1)})


def test_old_diffusers_attention_names(tmp_path):
    """Folders written by diffusers < 0.14 (stabilityai/sd-vae-ft-mse) name the attention
    query/key/value/proj_attn and store Linear weights."""
    ref = diffusers_vae()
    old = {}
    for k, v in ref.state_dict().items():
        for new, legacy in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")]:
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{legacy}.")
        old[k] = v
    assert any(".proj_attn." in k for k in old)
    config = vae_config_from_diffusers(dict(ref.config))
    ours = load_vae(old, config)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert_parity(ours.decode(z), ref.decode(z).sample, tol=FP32_OTHER_KERNEL, what="decode, legacy names")


def test_unsupported_diffusers_config_is_refused():
    with pytest.raises(CheckpointError, match="mid_block_add_attention"):
        vae_config_from_diffusers({"_class_name": "AutoencoderKL", "mid_block_add_attention": False})


# --------------------------------------------------------------------------------------------
# Precision policy
# --------------------------------------------------------------------------------------------

def test_nan_decode_raises_instead_of_a_black_image(tmp_path):
    ref = diffusers_vae(scaling_factor=0.13025)
    ref.save_pretrained(tmp_path)
    vae = load_vae(tmp_path)
    z = torch.randn(1, 4, 4, 4)
    z[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        V.decode_latents(vae, z)
    # bfloat16 has float32's range: a safe (if less precise) decode
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert_parity(V.decode_latents(load_vae(tmp_path, dtype=torch.bfloat16), z).float(), V.decode_latents(vae, z),
                      tol=BF16, what="bf16 decode vs fp32")
    # float16: activations beyond 65504 overflow to inf (what the SDXL VAE does at real scale)
    with pytest.warns(UserWarning, match="float16"):
        half = load_vae(tmp_path, dtype=torch.float16)
    with torch.no_grad():
        half.decoder.conv_in.weight.mul_(3e4)
    with pytest.raises(FloatingPointError, match="fp16-fix"):
        V.decode_latents(half, torch.randn(1, 4, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # the fp16-fix config loads without a warning
        config = dataclasses.replace(vae.config, force_upcast=False)
        load_vae(tmp_path, config, dtype=torch.float16)


# --------------------------------------------------------------------------------------------
# Real weights (skipped unless downloaded)
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["sd-vae-ft-mse", "sdxl-vae", "sdxl-vae-fp16-fix"])
def test_real_vae_matches_diffusers(name):
    import os
    from pathlib import Path
    folder = Path(os.environ.get("MINIDIT_WEIGHTS", "/nonexistent")) / name
    repo = {"sdxl-vae-fp16-fix": "madebyollin"}.get(name, "stabilityai") + "/" + name
    if not (folder / "config.json").is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name}/ "
                    f"(huggingface-cli download {repo} --local-dir $MINIDIT_WEIGHTS/{name})")
    from sklearn.datasets import load_sample_image
    ours, ref = load_vae(folder), DiffusersVAE.from_pretrained(folder).eval()
    photo = torch.tensor(load_sample_image("china.jpg")[:256, :256]).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        latents = V.encode_latents(ours, photo)
        assert_parity(latents, ref.encode(photo).latent_dist.mean * ref.config.scaling_factor,
                      tol=FP32_OTHER_KERNEL, what=f"{name} encode_latents")
        image = V.decode_latents(ours, latents)
        assert_parity(image, ref.decode(latents / ref.config.scaling_factor).sample, tol=FP32_OTHER_KERNEL,
                      what=f"{name} decode_latents")
    assert ((image - photo) ** 2).mean() < 0.01            # a real autoencoder reconstructs the photo


def test_mid_block_attention_gets_channel_contiguous_inputs(monkeypatch):
    """SDPA's fused CPU kernel needs q/k/v contiguous along the channels; strided ones (taken straight
    from the 1x1-conv layout) silently fall back to the math path, which materialises the N x N
    scores: 16 GiB at a 2048² decode. The block must hand attention() contiguous (B, 1, N, C) inputs."""
    seen, real_attention = [], V.attention

    def spy(q, k, v, *args, **kwargs):
        seen.append([t.stride(-1) for t in (q, k, v)])
        return real_attention(q, k, v, *args, **kwargs)

    monkeypatch.setattr(V, "attention", spy)
    block = V.AttnBlock(32, groups=8).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        out = block(x)
        # the same block computed with the convolutions themselves, as the ldm code does
        h = block.norm(x)
        q, k, v = (conv(h).flatten(2).transpose(1, 2) for conv in (block.q, block.k, block.v))   # (B, N, C)
        w = torch.softmax(q @ k.transpose(1, 2) / 32**0.5, dim=-1)
        expected = x + block.proj_out((w @ v).transpose(1, 2).reshape(2, 32, 6, 5))
    assert seen == [[1, 1, 1]]
    assert_parity(out, expected, tol=FP32, what="AttnBlock vs the ldm formula")
