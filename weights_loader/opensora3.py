"""Load Open-Sora 1.2's checkpoints: the STDiT3 transformer and its video VAE.

Layouts (facts: docs/checkpoints.md#open-sora-12-stdit3-architecture-and-layout,
docs/checkpoints.md#open-sora-12-vae-and-sampling; both are transformers `PreTrainedModel.save_pretrained`
folders: `config.json` + `model.safetensors`, what `huggingface-cli download` gives):
  * `hpcai-tech/OpenSora-STDiT-v3`: config.json = the official `STDiT3Config` fields (`model_type`
    "STDiT3"); keys = `minidit.stdit3.STDiT3`'s own (`x_embedder.proj.*`, `t_embedder.mlp.*`,
    `fps_embedder.mlp.*`, `t_block.1.*`, `y_embedder.y_proj.fc{1,2}.*`, `y_embedder.y_embedding`,
    `spatial_blocks.i.*`, `temporal_blocks.i.*`, `final_layer.*`) plus `rope.freqs`, the RoPE
    frequencies (`rotary_embedding_torch` stores them as a frozen parameter): read if present,
    recomputed if absent. No `pos_embed` is stored (it is computed per input size).
  * `hpcai-tech/OpenSora-VAE-v1.2`: config.json = `VideoAutoencoderPipelineConfig` (`model_type`
    "VideoAutoencoderPipeline": `vae_2d` / `vae_temporal` registry dicts, `micro_frame_size`, `shift`,
    `scale`); keys `spatial_vae.module.*` in diffusers `AutoencoderKL` names (renamed here to ldm =
    `minidit.vae` names by `weights_loader.vae.vae_from_diffusers`), `temporal_vae.*` (minidit's own),
    and the `scale` / `shift` buffers (1, 4, 1, 1, 1). The official factory `OpenSoraVAE_V1_2(...)`
    passes its constants over config.json's; they are the same numbers (`minidit.vae_temporal`).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from minidit.stdit3 import STDIT3_XL_2, STDiT3, STDiT3Config
from minidit.vae_temporal import OPENSORA_VAE_V1_2, VideoAutoencoderPipeline, VideoAutoencoderPipelineConfig
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError, ConfigError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .keymap import count_blocks, select_prefix
from .stream import reading_dtype
from .vae import vae_from_diffusers

SPATIAL_PREFIX = "spatial_vae.module."
STDIT3_FIELDS = tuple(STDiT3Config.__dataclass_fields__)


def _read(source, component: str, kind: str, config, from_json, from_tensors, dtype):
    """(state dict, config, description) of a save_pretrained folder (config from its config.json)
    or of a weight file / dict (config `from_tensors(sd)`), unless `config` is given."""
    folder = component_folder(source, component)
    if folder is not None:
        config = config or translate_config(from_json, read_config(folder))
        return read_state_dict(folder, dtype=reading_dtype(dtype)), config, f"{kind} folder {folder}"
    sd = read_state_dict(source, dtype=reading_dtype(dtype))
    what = f"{kind} checkpoint" if isinstance(source, dict) else f"{kind} checkpoint {source}"
    return sd, config or from_tensors(sd), what


# --------------------------------------------------------------------------------------------
# The transformer (STDiT3)
# --------------------------------------------------------------------------------------------

def load_stdit3(source, config: STDiT3Config | None = None, *, overrides: dict | None = None,
                dtype=torch.float32, device="cpu") -> STDiT3:
    """Load `hpcai-tech/OpenSora-STDiT-v3` (the folder: config.json + model.safetensors), or an STDiT3
    state dict, into `minidit.stdit3.STDiT3` (eval mode). Strict: every key must fit; `rope.freqs`
    (if stored) must equal the frequencies RoPE recomputes, within the file's precision."""
    sd, config, what = _read(source, "transformer", "STDiT3", config, stdit3_config_from_json, detect_stdit3_config, dtype)
    config = apply_overrides(config, overrides)
    _check_rope_freqs(sd.pop("rope.freqs", None), config, what)
    return load_into(build_on_meta(STDiT3, config), sd, dtype=dtype, device=device, what=what)


def stdit3_config_from_json(cfg: dict) -> STDiT3Config:
    """config.json (`STDiT3Config.to_json_file`) -> `STDiT3Config`; transformers' own entries
    (architectures, model_type, torch_dtype, ...) are not model fields and are left out."""
    check_class_name(cfg, ("STDiT3",), "Open-Sora 1.2's STDiT3", "Pass the OpenSora-STDiT-v3 folder.")
    if cfg.get("model_type", "STDiT3") != "STDiT3":
        raise ConfigError(f"{getattr(cfg, 'path', 'config.json')} describes a {cfg['model_type']!r} model, not STDiT3")
    return STDiT3Config(**{k: cfg[k] for k in STDIT3_FIELDS if k in cfg})


def detect_stdit3_config(sd: dict) -> STDiT3Config:
    """An `STDiT3Config` read off the tensors: width, channels, tubelet, depth, caption size, head
    width (q_norm or rope.freqs), MLP ratio, learned sigma."""
    try:
        w = sd["x_embedder.proj.weight"]                                   # (D, C, pt, ph, pw)
        y_emb = sd["y_embedder.y_embedding"]                               # (L, C_cap)
        fc1 = sd["spatial_blocks.0.mlp.fc1.weight"]                        # (mlp_ratio * D, D)
        final = sd["final_layer.linear.weight"]                            # (pt*ph*pw*C_out, D)
    except KeyError as e:
        raise CheckpointError(f"this does not look like an STDiT3 checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    D, C, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
    head = sd.get("spatial_blocks.0.attn.q_norm.weight")
    hd = head.shape[0] if head is not None else 2 * sd["rope.freqs"].shape[0] if "rope.freqs" in sd else None
    if hd is None:
        raise CheckpointError("the head count cannot be read off this STDiT3 checkpoint (no q_norm, no rope.freqs): "
                              "pass config=minidit.stdit3.PRESETS[...]")
    return replace(STDIT3_XL_2, in_channels=C, patch_size=patch, hidden_size=D, num_heads=D // hd,
                   depth=count_blocks(sd, "spatial_blocks."), mlp_ratio=fc1.shape[0] / D,
                   caption_channels=y_emb.shape[1], model_max_length=y_emb.shape[0],
                   pred_sigma=final.shape[0] == 2 * C * math.prod(patch), qk_norm=head is not None)


def _check_rope_freqs(freqs, config: STDiT3Config, what: str) -> None:
    """`rope.freqs` = 10000^(-2i/hd) (rotary_embedding_torch's frozen parameter): the loader recomputes
    it (`minidit.embed.rope_temporal`), so a stored one that differs would change the model: refuse it."""
    if freqs is None:
        return
    hd = config.hidden_size // config.num_heads
    if freqs.shape != (hd // 2,):
        raise CheckpointError(f"the {what} has rope.freqs of shape {tuple(freqs.shape)}; heads of width {hd} need ({hd // 2},)")
    if freqs.is_meta:
        return
    expected = 1.0 / 10000 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    if not torch.allclose(freqs.double(), expected, rtol=1e-2, atol=0):
        raise CheckpointError(f"the {what} stores RoPE frequencies rope.freqs that are not 10000^(-2i/{hd}) "
                              f"(first: {freqs[:3].tolist()}): minidit recomputes the standard ones, so this "
                              "checkpoint would not be reproduced")


# --------------------------------------------------------------------------------------------
# The video VAE (OpenSoraVAE_V1_2)
# --------------------------------------------------------------------------------------------

def load_opensora_vae(source, config: VideoAutoencoderPipelineConfig | None = None, *,
                      overrides: dict | None = None, dtype=torch.float32, device="cpu") -> VideoAutoencoderPipeline:
    """Load `hpcai-tech/OpenSora-VAE-v1.2` (the folder, or its state dict) into
    `minidit.vae_temporal.VideoAutoencoderPipeline` (eval mode). With `config=None` the sizes are
    the released model's (`OPENSORA_VAE_V1_2`) and the clip length / batch / shift / scale come
    from config.json; the stored `shift` / `scale` buffers are what the model uses (as in the
    official `from_pretrained`), and `model.config` is set to them."""
    sd, config, what = _read(source, "vae", "Open-Sora VAE", config, opensora_vae_config_from_json,
                             lambda sd: OPENSORA_VAE_V1_2, dtype)
    config = apply_overrides(config, overrides)
    sd = opensora_vae_from_official(sd, config, what)
    model = load_into(build_on_meta(VideoAutoencoderPipeline, config), sd, dtype=dtype, device=device, what=what)
    model.config = replace(config, shift=tuple(model.shift.flatten().tolist()),
                           scale=tuple(model.scale.flatten().tolist()))
    return model


def opensora_vae_from_official(sd: dict, config: VideoAutoencoderPipelineConfig, what: str = "checkpoint") -> dict:
    """The official state dict with its `spatial_vae.module.*` part renamed from diffusers to ldm names."""
    spatial = select_prefix(sd, SPATIAL_PREFIX)
    if not spatial:
        raise CheckpointError(f"the {what} has no {SPATIAL_PREFIX}* keys (the per-frame SDXL VAE): is it the "
                              f"OpenSora-VAE-v1.2 folder? First keys: {sorted(sd)[:6]}")
    out = {k: v for k, v in sd.items() if not k.startswith(SPATIAL_PREFIX)}
    if any(k.startswith("encoder.down_blocks.") for k in spatial):        # diffusers names, as stored
        spatial = vae_from_diffusers(spatial, len(config.vae_2d.ch_mult))
    out.update({SPATIAL_PREFIX + k: v for k, v in spatial.items()})
    return out


def opensora_vae_config_from_json(cfg: dict) -> VideoAutoencoderPipelineConfig:
    """The sizes of the released VAE, with config.json's micro_frame_size, micro_batch_size, shift, scale."""
    path = getattr(cfg, "path", "config.json")
    if cfg.get("model_type", "VideoAutoencoderPipeline") != "VideoAutoencoderPipeline":
        raise ConfigError(f"{path} describes a {cfg['model_type']!r} model, not Open-Sora's VideoAutoencoderPipeline")
    kinds = {"vae_2d": "VideoAutoencoderKL", "vae_temporal": "VAE_Temporal_SD"}
    for part, kind in kinds.items():
        got = (cfg.get(part) or {}).get("type", kind)
        if got != kind:
            raise ConfigError(f"{path}: {part} is a {got!r}; minidit implements Open-Sora 1.2's {kind} only")
    c = OPENSORA_VAE_V1_2
    return replace(c, micro_frame_size=cfg.get("micro_frame_size", c.micro_frame_size),
                   micro_batch_size=(cfg.get("vae_2d") or {}).get("micro_batch_size", c.micro_batch_size),
                   shift=tuple(cfg.get("shift", c.shift)), scale=tuple(cfg.get("scale", c.scale)))


__all__ = ["load_stdit3", "stdit3_config_from_json", "detect_stdit3_config", "load_opensora_vae", "opensora_vae_config_from_json", "opensora_vae_from_official"]
