"""Open-Sora 1.2's video VAE (`minidit.vae_temporal`) and its loader.

Oracles: the spatial part is diffusers' `AutoencoderKL` (what the official `VideoAutoencoderKL`
wraps); the temporal part is a functional forward written here from the official equations
(hpcaitech/Open-Sora v1.2.0 `opensora/models/vae/vae_temporal.py`, `vae.py`) on the state dict of
the official key layout (`helpers.layouts.opensora3`), with einops for the depth-to-time rearrange.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from helpers import FP32, assert_key_contract, assert_parity, random_state_dict, randomize, require
from helpers.layouts.opensora3 import vae_temporal_keys
from minidit.errors import InputError
from minidit.vae import VAEConfig
from minidit.vae_temporal import (OPENSORA_VAE_V1_2, VAE_Temporal, VAETemporalConfig, VideoAutoencoderPipeline,
                                  VideoAutoencoderPipelineConfig)
from weights_loader.io import save_safetensors
from weights_loader.opensora3 import load_opensora_vae, opensora_vae_from_official

torch.set_num_threads(1)
TINY_T = dict(filters=8, num_res_blocks=1, channel_multipliers=(1, 2, 2, 4), temporal_downsample=(False, True, True))
GROUPS = 4
TINY = VideoAutoencoderPipelineConfig(
    vae_2d=VAEConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, norm_num_groups=GROUPS, scaling_factor=0.18215),
    vae_temporal=VAETemporalConfig(**TINY_T, num_groups=GROUPS))
SHIFT, SCALE = (-0.10, 0.34, 0.27, 0.98), (3.85, 2.32, 2.33, 3.06)


# --------------------------------------------------------------------------------------------
# The official equations, written out on a state dict
# --------------------------------------------------------------------------------------------

def causal_conv(x, sd, name, stride_t=1):
    w, b = sd[f"{name}.conv.weight"], sd.get(f"{name}.conv.bias")
    kt, kh, kw = w.shape[2:]
    time_pad = (kt - 1) + (1 - stride_t)                       # CausalConv3d: dilation 1
    return F.conv3d(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, time_pad, 0)), w, b, stride=(stride_t, 1, 1))


def res_block(x, sd, name):
    def gn(h, n):
        return F.group_norm(h, GROUPS, sd[f"{n}.weight"], sd[f"{n}.bias"], eps=1e-5)
    h = causal_conv(F.silu(gn(x, f"{name}.norm1")), sd, f"{name}.conv1")
    h = causal_conv(F.silu(gn(h, f"{name}.norm2")), sd, f"{name}.conv2")
    return h + (causal_conv(x, sd, f"{name}.conv3") if f"{name}.conv3.conv.weight" in sd else x)


def official_temporal_encode_mean(sd, x, nres=1, levels=4, tdown=(False, True, True)):
    pad = 0 if x.shape[2] % 4 == 0 else 4 - x.shape[2] % 4
    x = causal_conv(F.pad(x, (0, 0, 0, 0, pad, 0)), sd, "encoder.conv_in")
    for i in range(levels):
        for j in range(nres):
            x = res_block(x, sd, f"encoder.block_res_blocks.{i}.{j}")
        if i < levels - 1 and tdown[i]:
            x = causal_conv(x, sd, f"encoder.conv_blocks.{i}", stride_t=2)
    for j in range(nres):
        x = res_block(x, sd, f"encoder.res_blocks.{j}")
    x = F.group_norm(x, GROUPS, sd["encoder.norm1.weight"], sd["encoder.norm1.bias"], eps=1e-5)
    moments = causal_conv(causal_conv(F.silu(x), sd, "encoder.conv2"), sd, "quant_conv")
    return moments.chunk(2, dim=1)[0]


def official_temporal_decode(sd, z, num_frames, nres=1, levels=4, tdown=(False, True, True)):
    pad = 0 if num_frames % 4 == 0 else 4 - num_frames % 4
    x = causal_conv(causal_conv(z, sd, "post_quant_conv"), sd, "decoder.conv1")
    for j in range(nres):
        x = res_block(x, sd, f"decoder.res_blocks.{j}")
    for i in reversed(range(levels)):
        for j in range(nres):
            x = res_block(x, sd, f"decoder.block_res_blocks.{i}.{j}")
        if i > 0:
            ts = 2 if tdown[i - 1] else 1
            if tdown[i - 1]:
                x = causal_conv(x, sd, f"decoder.conv_blocks.{i - 1}")
            x = rearrange(x, "B (C ts hs ws) T H W -> B C (T ts) (H hs) (W ws)", ts=ts, hs=1, ws=1)
    x = F.group_norm(x, GROUPS, sd["decoder.norm1.weight"], sd["decoder.norm1.bias"], eps=1e-5)
    return causal_conv(F.silu(x), sd, "decoder.conv_out")[:, :, pad:]


def official_pipeline_decode(sd, spatial, z, num_frames, micro=17):
    """VideoAutoencoderPipeline.decode: denormalise, temporal decode per 5 latent frames, 2-D decode per frame."""
    z = z * torch.tensor(SCALE)[None, :, None, None, None] + torch.tensor(SHIFT)[None, :, None, None, None]
    clips, left = [], num_frames
    for i in range(0, z.shape[2], 5):                      # micro_z_frame_size: 17 frames -> 5 latents
        clips.append(official_temporal_decode(sd, z[:, :, i:i + 5], min(micro, left)))
        left -= micro
    x = rearrange(torch.cat(clips, dim=2), "B C T H W -> (B T) C H W")
    x = spatial.decode(x / 0.18215).sample
    return rearrange(x, "(B T) C H W -> B C T H W", B=z.shape[0])


def official_pipeline_encode_mean(sd, spatial, x, micro=17):
    B = x.shape[0]
    x_z = spatial.encode(rearrange(x, "B C T H W -> (B T) C H W")).latent_dist.mode() * 0.18215
    x_z = rearrange(x_z, "(B T) C H W -> B C T H W", B=B)
    z = torch.cat([official_temporal_encode_mean(sd, x_z[:, :, i:i + micro]) for i in range(0, x_z.shape[2], micro)], 2)
    return (z - torch.tensor(SHIFT)[None, :, None, None, None]) / torch.tensor(SCALE)[None, :, None, None, None]


# --------------------------------------------------------------------------------------------
# A folder in the official layout
# --------------------------------------------------------------------------------------------

OFFICIAL_CONFIG = {
    "architectures": ["VideoAutoencoderPipeline"], "model_type": "VideoAutoencoderPipeline",
    "vae_2d": {"type": "VideoAutoencoderKL", "from_pretrained": "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers",
               "subfolder": "vae", "micro_batch_size": 4, "local_files_only": False},
    "vae_temporal": {"type": "VAE_Temporal_SD", "from_pretrained": None},
    "from_pretrained": None, "freeze_vae_2d": False, "cal_loss": False, "micro_frame_size": 17,
    "shift": list(SHIFT), "scale": list(SCALE), "torch_dtype": "float32", "transformers_version": "4.36.2"}


def diffusers_spatial(widths=(8, 16), layers=1, groups=GROUPS):
    diffusers = require("diffusers")
    n = len(widths)
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * n,
                                   up_block_types=["UpDecoderBlock2D"] * n, block_out_channels=list(widths),
                                   layers_per_block=layers, latent_channels=4, norm_num_groups=groups)


@pytest.fixture(scope="module")
def official_folder(tmp_path_factory):
    torch.manual_seed(0)
    spatial = randomize(diffusers_spatial(), seed=1, scale=0.2)
    temporal = random_state_dict(vae_temporal_keys(**TINY_T), seed=2, scale=0.2)
    sd = {f"spatial_vae.module.{k}": v for k, v in spatial.state_dict().items()}
    sd.update({f"temporal_vae.{k}": v for k, v in temporal.items()})
    sd["scale"] = torch.tensor(SCALE)[None, :, None, None, None]
    sd["shift"] = torch.tensor(SHIFT)[None, :, None, None, None]
    folder = tmp_path_factory.mktemp("OpenSora-VAE-v1.2")
    save_safetensors(sd, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(OFFICIAL_CONFIG))
    return folder, spatial, temporal


def test_official_folder_loads_strictly_and_decodes_like_the_official_code(official_folder):
    folder, spatial, temporal = official_folder
    vae = load_opensora_vae(folder, TINY)
    assert vae.config.shift == pytest.approx(SHIFT) and vae.config.scale == pytest.approx(SCALE)
    g = torch.Generator().manual_seed(3)
    for frames in (17, 40):                                 # one clip; two full clips and a 6-frame rest
        z = torch.randn(1, 4, vae.latent_frames(frames), 4, 4, generator=g)
        with torch.no_grad():
            ours, theirs = vae.decode(z, num_frames=frames), official_pipeline_decode(temporal, spatial, z, frames)
        assert ours.shape == (1, 3, frames, 8, 8)
        assert_parity(ours, theirs, tol=FP32, what=f"decode of {frames} frames")


def test_encode_means_match_the_official_code(official_folder):
    folder, spatial, temporal = official_folder
    vae = load_opensora_vae(folder, TINY)
    x = torch.rand(1, 3, 20, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        assert_parity(vae.encode(x, sample=False), official_pipeline_encode_mean(temporal, spatial, x), tol=FP32,
                      what="encode (posterior means)")


def test_config_json_is_read():
    from weights_loader.configs import ConfigDict
    from weights_loader.opensora3 import opensora_vae_config_from_json
    assert opensora_vae_config_from_json(ConfigDict(OFFICIAL_CONFIG, "config.json")) == OPENSORA_VAE_V1_2
    bad = ConfigDict({**OFFICIAL_CONFIG, "vae_temporal": {"type": "VAE_Temporal"}}, "config.json")
    with pytest.raises(ValueError, match="VAE_Temporal_SD"):
        opensora_vae_config_from_json(bad)


def test_full_size_key_contract_on_meta():
    """The released layout (SDXL diffusers VAE + VAE_Temporal_SD + buffers), renamed by the loader, has
    exactly the keys and shapes of minidit's full-size model."""
    with torch.device("meta"):
        spatial = diffusers_spatial((128, 256, 512, 512), layers=2, groups=32)
        ours = VideoAutoencoderPipeline(OPENSORA_VAE_V1_2).state_dict()
    sd = {f"spatial_vae.module.{k}": v for k, v in spatial.state_dict().items()}
    sd.update({f"temporal_vae.{k}": torch.empty(s, device="meta") for k, s in vae_temporal_keys().items()})
    sd["scale"] = sd["shift"] = torch.empty(1, 4, 1, 1, 1, device="meta")
    assert_key_contract(ours, opensora_vae_from_official(sd, OPENSORA_VAE_V1_2), "OpenSora-VAE-v1.2")
    assert sum(v.numel() for k, v in ours.items() if k not in ("scale", "shift")) == 393_341_007


@pytest.fixture(scope="module")
def tiny_vae():
    return randomize(VideoAutoencoderPipeline(TINY), seed=5, scale=0.2)


@pytest.mark.parametrize("frames, latents", [(17, 5), (34, 10), (51, 15), (1, 1), (16, 4)])
def test_shapes(tiny_vae, frames, latents):
    x = torch.rand(1, 3, frames, 8, 8, generator=torch.Generator().manual_seed(frames)) * 2 - 1
    with torch.no_grad():
        z = tiny_vae.encode(x, sample=False)
        assert z.shape == (1, 4, latents, 4, 4) and tiny_vae.latent_frames(frames) == latents
        assert tiny_vae.decode(z, num_frames=frames).shape == x.shape


def test_micro_batching(tiny_vae):
    g = torch.Generator().manual_seed(6)
    z17, z34 = torch.randn(1, 4, 5, 4, 4, generator=g), torch.randn(1, 4, 10, 4, 4, generator=g)
    one_pass = VideoAutoencoderPipeline(VideoAutoencoderPipelineConfig(
        **{**TINY.__dict__, "micro_frame_size": None, "micro_batch_size": None}))
    one_pass.load_state_dict(tiny_vae.state_dict())
    with torch.no_grad():
        # the 2-D VAE's micro batches (4 frames per call) and a 17-frame clip: the same as one pass
        assert_parity(tiny_vae.decode(z17, num_frames=17), one_pass.decode(z17, num_frames=17), tol=FP32)
        # 34 frames = two independent 17-frame clips (what the model was trained on): the official loop.
        # (The 2-D VAE then runs on other batches of frames: the same numbers up to the conv kernels' rounding.)
        two = tiny_vae.decode(z34, num_frames=34)
        halves = torch.cat([tiny_vae.decode(z34[:, :, :5], num_frames=17), tiny_vae.decode(z34[:, :, 5:], num_frames=17)], 2)
        assert_parity(two, halves, tol=FP32)


def test_clips_are_not_one_pass(tiny_vae):
    """Encoding 34 frames in one pass (micro_frame_size=None) gives other latents: 9, not 2 x 5."""
    x = torch.rand(1, 4, 34, 4, 4, generator=torch.Generator().manual_seed(7))
    t = tiny_vae.temporal_vae
    with torch.no_grad():
        clips = torch.cat([t.encode(x[:, :, :17]).mode(), t.encode(x[:, :, 17:]).mode()], 2)
        whole = t.encode(x).mode()
    assert clips.shape[2] == 10 and whole.shape[2] == 9


def test_bad_inputs(tiny_vae):
    with pytest.raises(InputError, match="latent frames"):
        tiny_vae.decode(torch.zeros(1, 4, 5, 4, 4), num_frames=34)
    with pytest.raises(InputError, match="decode to"):
        tiny_vae.temporal_vae.decode(torch.zeros(1, 4, 5, 4, 4), num_frames=8)
    with pytest.raises(InputError, match="B, 3, F, H, W"):
        tiny_vae.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="temporal_downsample"):
        VAETemporalConfig(temporal_downsample=(True,))


def test_temporal_module_alone_matches_the_oracle():
    sd = random_state_dict(vae_temporal_keys(**TINY_T), seed=8, scale=0.2)
    t = VAE_Temporal(VAETemporalConfig(**TINY_T, num_groups=GROUPS))
    t.load_state_dict(sd, strict=True)
    z = torch.randn(2, 4, 3, 5, 3, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_parity(t.decode(z, num_frames=10), official_temporal_decode(sd, z, 10), tol=FP32)


def test_bfloat16_decode(official_folder):
    from helpers import BF16
    folder, _, _ = official_folder
    z = torch.randn(1, 4, 5, 4, 4, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        ref = load_opensora_vae(folder, TINY).decode(z, num_frames=17)
        half = load_opensora_vae(folder, TINY, dtype=torch.bfloat16).decode(z, num_frames=17)
    assert half.dtype == torch.bfloat16
    assert_parity(half.float(), ref, tol=BF16, what="bf16 vs fp32 decode")
