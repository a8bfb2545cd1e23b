"""Load Open-Sora 1.2's checkpoints: the STDiT3 transformer and its video VAE.

Layouts (both are transformers `PreTrainedModel.save_pretrained` folders: `config.json` +
`model.safetensors`, what `huggingface-cli download` gives):
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

from dataclasses import replace

import torch

from minidit.vae_temporal import OPENSORA_VAE_V1_2, VideoAutoencoderPipeline, VideoAutoencoderPipelineConfig
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError, ConfigError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .keymap import select_prefix
from .stream import reading_dtype
from .vae import vae_from_diffusers

SPATIAL_PREFIX = "spatial_vae.module."


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
    folder = component_folder(source, "vae")
    if folder is not None:
        config = config or translate_config(opensora_vae_config_from_json, read_config(folder))
        sd, what = read_state_dict(folder, dtype=reading_dtype(dtype)), f"Open-Sora VAE folder {folder}"
    else:
        sd = read_state_dict(source, dtype=reading_dtype(dtype))
        config = config or OPENSORA_VAE_V1_2
        what = "Open-Sora VAE checkpoint" if isinstance(source, dict) else f"Open-Sora VAE checkpoint {source}"
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


__all__ = ["load_opensora_vae", "opensora_vae_config_from_json", "opensora_vae_from_official"]
