"""Load AutoencoderKL checkpoints into `minidit.vae.AutoencoderKL` (whose names are the ldm keys).

Layouts (facts: docs/checkpoints.md#vae):
  * ldm single files: a standalone VAE (`vae-ft-mse-840000-ema-pruned.ckpt`, `sdxl_vae.safetensors`:
    keys `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`), or the VAE inside a full
    model file under `first_stage_model.` (SD 1.x/2.x/SDXL, SD3/3.5 `sd3_medium.safetensors`) or
    `vae.`. The training loss's discriminator (`loss.*`), which some ldm files carry, is dropped.
  * diffusers `AutoencoderKL` folders (`vae/` of a pipeline, or `stabilityai/sd-vae-ft-mse`):
    renamed blocks, the decoder's up blocks in REVERSED order (diffusers' `up_blocks.0` is ldm's
    deepest `up.3`), attention weights stored as Linear [C, C] instead of 1x1 Conv [C, C, 1, 1], and
    in folders written by diffusers < 0.14 the old attention names query/key/value/proj_attn.

Config detection from an ldm file: widths, levels, blocks per level and latent channels from the
tensor shapes; quant convs from their presence. The latent scaling is not stored in the weights:
16 latent channels without quant convs = the SD3 VAE (1.5305, shift 0.0609); a 4-channel VAE inside
an SDXL file (`conditioner.*` keys) = 0.13025, inside an SD 1.x/2.x file (`cond_stage_model.*`) =
0.18215; a standalone 4-channel file is ambiguous and needs `config=` (e.g. `minidit.vae.SD_VAE`).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import replace

import torch

from minidit.vae import SD3_VAE, SD_VAE, SDXL_VAE, AutoencoderKL, VAEConfig
from .configs import component_folder, read_config, translate_config
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict, weight_keys
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks, select_prefix

LDM_PREFIXES = ("first_stage_model.", "vae.")
TRAINING_ONLY_PREFIXES = ("loss.",)     # ldm's LPIPS + patch-GAN discriminator; not part of the VAE

_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
           "conv_shortcut": "nin_shortcut"}
_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
         # diffusers < 0.14 (still on the hub, e.g. stabilityai/sd-vae-ft-mse):
         "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}


def load_vae(source, config: VAEConfig | None = None, *, overrides: dict | None = None, dtype=torch.float32,
             device="cpu") -> AutoencoderKL:
    """Load an ldm VAE file (standalone or inside a full SD/SDXL/SD3 file), a diffusers
    `AutoencoderKL` folder (pipeline root or `vae/`) or a state dict into minidit's AutoencoderKL.
    `overrides`: `VAEConfig` fields set on the config read or detected (or on `config`).

    float32 is the default dtype on purpose (see "Precision" in `minidit/vae.py`).
    """
    folder = component_folder(source, "vae")
    if folder is not None:
        config = config or translate_config(vae_config_from_diffusers, read_config(folder))
        sd = vae_from_diffusers(read_state_dict(folder, dtype=reading_dtype(dtype)), len(config.ch_mult))
        what = f"diffusers AutoencoderKL folder {folder}"
    else:
        keys = weight_keys(source)                                   # every component's names, no tensors
        prefix = next((p for p in LDM_PREFIXES if any(k.startswith(p) for k in keys)), None)
        sd = select_vae_part(read_state_dict(source, only_prefix=prefix, dtype=reading_dtype(dtype)))
        if any(k.startswith("encoder.down_blocks.") for k in sd):      # a diffusers state dict
            sd = vae_from_diffusers(sd, count_blocks(sd, "encoder.down_blocks."))
        sd = {k: _linear_to_conv(v) if _is_attn_weight(k) else v for k, v in sd.items()}
        config = config or detect_vae_config(sd, dict.fromkeys(keys))
        what = "VAE checkpoint" if isinstance(source, dict) else f"VAE checkpoint {source}"
    config = apply_overrides(config, overrides)
    if dtype == torch.float16 and config.force_upcast:
        warnings.warn("this VAE is known to overflow in float16 (force_upcast=True): decoding may give NaN. "
                      "Use float32/bfloat16, or the fp16-fix weights (madebyollin/sdxl-vae-fp16-fix).",
                      stacklevel=2)
    model = build_on_meta(AutoencoderKL, config)
    return load_into(model, sd, dtype=dtype, device=device, what=what)


def select_vae_part(sd: dict) -> dict:
    """The VAE's own keys: under `first_stage_model.` / `vae.` if the file has them, else the whole
    dict without the training loss (`loss.*`)."""
    for prefix in LDM_PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            sd = select_prefix(sd, prefix)
            break
    return {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}



def _is_attn_weight(key: str) -> bool:
    return re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.weight", key) is not None


def detect_vae_config(sd: dict, full: dict | None = None) -> VAEConfig:
    """A `VAEConfig` read off an ldm-layout state dict (rules in the module docstring). `full` is the
    whole file, used to tell SD from SDXL by its other components."""
    try:
        conv_in = sd["encoder.conv_in.weight"]                          # (ch, in_channels, 3, 3)
        z = sd["decoder.conv_in.weight"].shape[1]
        out_ch = sd["decoder.conv_out.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"this does not look like an AutoencoderKL checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    ch, levels = conv_in.shape[0], count_blocks(sd, "encoder.down.")
    widths = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
    if any(w % ch for w in widths) or ch % 32:
        raise CheckpointError(f"unusual VAE widths {widths}: pass config=VAEConfig(...) explicitly")
    quant, post_quant = "quant_conv.weight" in sd, "post_quant_conv.weight" in sd
    shape = dict(in_channels=conv_in.shape[1], out_ch=out_ch, ch=ch, ch_mult=tuple(w // ch for w in widths),
                 num_res_blocks=count_blocks(sd, "encoder.down.0.block."), z_channels=z,
                 use_quant_conv=quant, use_post_quant_conv=post_quant)
    keys = set(full or sd)
    if z == 16 and not quant and not post_quant:
        preset = SD3_VAE
    elif z == 4 and any(k.startswith("conditioner.") for k in keys):
        preset = SDXL_VAE
    elif z == 4 and any(k.startswith("cond_stage_model.") for k in keys):
        preset = SD_VAE
    else:
        raise CheckpointError(
            f"this {z}-channel VAE file does not say which latent scaling_factor it was trained with. "
            "Pass config= explicitly: minidit.vae.SD_VAE (sd-vae-ft-mse/ema, 0.18215), SDXL_VAE (0.13025), "
            "SDXL_VAE_FP16_FIX or SD3_VAE, or dataclasses.replace(preset, scaling_factor=...)")
    return replace(preset, **shape)


def vae_config_from_diffusers(cfg: dict) -> VAEConfig:
    """Translate a diffusers `AutoencoderKL` config.json into a `VAEConfig` (defaults = diffusers')."""
    if cfg.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise CheckpointError(f"it describes a {cfg['_class_name']}, not an AutoencoderKL (the VAE): pass the vae/ "
                              "folder or the pipeline root")
    down = set(cfg.get("down_block_types", ["DownEncoderBlock2D"]))
    up = set(cfg.get("up_block_types", ["UpDecoderBlock2D"]))
    unsupported = {
        "down_block_types": down != {"DownEncoderBlock2D"}, "up_block_types": up != {"UpDecoderBlock2D"},
        "act_fn": cfg.get("act_fn", "silu") != "silu",
        "mid_block_add_attention": not cfg.get("mid_block_add_attention", True),
        "latents_mean": cfg.get("latents_mean") is not None,
    }
    bad = [k for k, is_bad in unsupported.items() if is_bad]
    if bad:
        raise CheckpointError(f"unsupported AutoencoderKL options {bad} in config.json: minidit implements the "
                              "ldm VAE of SD 1.x/2.x, SDXL and SD3")
    widths = list(cfg.get("block_out_channels", [64]))
    ch = widths[0]
    if any(w % ch for w in widths):
        raise CheckpointError(f"block_out_channels {widths} are not multiples of the first width")
    shift = cfg.get("shift_factor")
    return VAEConfig(in_channels=cfg.get("in_channels", 3), out_ch=cfg.get("out_channels", 3), ch=ch,
                     ch_mult=tuple(w // ch for w in widths), num_res_blocks=cfg.get("layers_per_block", 1),
                     z_channels=cfg.get("latent_channels", 4), norm_num_groups=cfg.get("norm_num_groups", 32),
                     use_quant_conv=cfg.get("use_quant_conv", True),
                     use_post_quant_conv=cfg.get("use_post_quant_conv", True),
                     scaling_factor=cfg.get("scaling_factor", 0.18215),
                     shift_factor=0.0 if shift is None else shift, force_upcast=cfg.get("force_upcast", True))


def _ldm_key(key: str, num_levels: int) -> str | None:
    """The ldm name of one diffusers key (None if it has no place in the VAE)."""
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(weight|bias)", key)
    if m:
        return f"{m[1]}.{'norm_out' if m[2] == 'conv_norm_out' else m[2]}.{m[3]}"
    m = re.fullmatch(r"(quant_conv|post_quant_conv)\.(weight|bias)", key)
    if m:
        return key
    resnet = "(norm1|conv1|norm2|conv2|conv_shortcut)"
    m = re.fullmatch(rf"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.{resnet}\.(weight|bias)", key)
    if m:
        return f"encoder.down.{m[1]}.block.{m[2]}.{_RESNET[m[3]]}.{m[4]}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    m = re.fullmatch(rf"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.{resnet}\.(weight|bias)", key)
    if m:                                   # up_blocks.0 is the deepest level = ldm's up.{n-1}
        return f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_RESNET[m[3]]}.{m[4]}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    m = re.fullmatch(rf"(encoder|decoder)\.mid_block\.resnets\.([01])\.{resnet}\.(weight|bias)", key)
    if m:
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_RESNET[m[3]]}.{m[4]}"
    attn = "|".join(re.escape(k) for k in _ATTN)
    m = re.fullmatch(rf"(encoder|decoder)\.mid_block\.attentions\.0\.({attn})\.(weight|bias)", key)
    if m:
        return f"{m[1]}.mid.attn_1.{_ATTN[m[2]]}.{m[3]}"
    return None


def vae_from_diffusers(sd: dict, num_levels: int) -> dict:
    """Rename a diffusers AutoencoderKL state dict to ldm (= minidit) keys. Every key must be used; a
    dict is emptied as it is renamed (KeyMap consume=True), so old and new tensors are not all alive together."""
    keys = KeyMap(sd, "diffusers AutoencoderKL", consume=True)
    for key in keys.remaining():
        new = _ldm_key(key, num_levels)
        if new is not None:               # a key with no ldm name stays unused: finish() lists it
            keys.move(key, new, _linear_to_conv if _is_attn_weight(new) else None)
    return keys.finish()


def _linear_to_conv(weight):
    """diffusers' attention Linear [C, C] -> ldm's 1x1 conv [C, C, 1, 1] (already 4-D: unchanged)."""
    return weight[:, :, None, None] if weight.ndim == 2 else weight
