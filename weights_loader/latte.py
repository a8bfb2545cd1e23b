"""Load Latte-1 (diffusers `LatteTransformer3DModel` folders) into `minidit.latte.Latte`.
(Facts: docs/checkpoints.md#latte-1-architecture, docs/checkpoints.md#latte-1-sampling.)

Layout: `maxin-cn/Latte-1` is released as a diffusers pipeline; its `transformer/` folder
(`config.json` + `diffusion_pytorch_model.safetensors`) is also what the official sampling script
loads (`LatteT2V.from_pretrained(..., subfolder="transformer")`), so there is no other layout.
Its keys are PixArt's diffusers keys (renamed by `weights_loader.pixart`'s own rules: q/k/v fused into
`attn.qkv`, k/v into `cross_attn.kv_linear`, ...) plus `temporal_transformer_blocks.i.*`, the same
block without `attn2` (-> `temporal_blocks.i.*`). Not in the file: the 2-D position table and the
temporal sin-cos table (`temp_pos_embed`, a non-persistent buffer in diffusers), both recomputed. PixArt's
null caption `y_embedder.y_embedding` does not exist in Latte (minidit's `Latte` removes the buffer).
"""
from __future__ import annotations

import dataclasses

import torch

from minidit.latte import FIXED, Latte, LatteConfig
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .keymap import KeyMap, count_blocks
from .pixart import rename_pixart_block, rename_pixart_top
from .stream import reading_dtype

CLASS_NAMES = ("LatteTransformer3DModel",)
# Kept by a pipeline folder's model_index.json for the transformer of a Latte pipeline.
PIPELINE_CLASS = "LattePipeline"


def load_latte(source, config: LatteConfig | None = None, *, overrides: dict | None = None,
               dtype=torch.float32, device="cpu") -> Latte:
    """A diffusers Latte folder (the pipeline root or its `transformer/`), or a diffusers-layout state
    dict with `config=`, -> `minidit.latte.Latte` in eval mode. Strict: a missing, unknown or
    mis-shaped key raises `CheckpointError` listing it. `overrides`: LatteConfig fields to change."""
    folder = component_folder(source, "transformer")
    if folder is not None:
        config = config or read_latte_config(folder)
        sd, what = read_state_dict(folder, dtype=reading_dtype(dtype)), f"diffusers Latte folder {folder}"
    elif isinstance(source, dict):
        if config is None:
            raise CheckpointError("a Latte state dict needs its config: pass the folder that holds config.json, or "
                                  "config=minidit.latte.PRESETS['Latte-1']")
        sd, what = dict(source), "Latte state dict"
    else:
        raise CheckpointError(f"{source} is not a diffusers Latte folder (no config.json in it or in its "
                              "transformer/): download one with `huggingface-cli download maxin-cn/Latte-1 "
                              "--local-dir Latte-1`")
    config = apply_overrides(config, overrides)
    depth = count_blocks(sd, "transformer_blocks.")
    if depth != config.num_layers or count_blocks(sd, "temporal_transformer_blocks.") != config.num_layers:
        raise CheckpointError(f"the {what} has {depth} spatial and "
                              f"{count_blocks(sd, 'temporal_transformer_blocks.')} temporal blocks, but its config "
                              f"says num_layers={config.num_layers}")
    sd = latte_from_diffusers(sd, config)
    return load_into(build_on_meta(Latte, config), sd, dtype=dtype, device=device, what=what)


def read_latte_config(source) -> LatteConfig:
    """The `LatteConfig` of a diffusers Latte folder (pipeline root or `transformer/`), from config.json alone."""
    folder = component_folder(source, "transformer")
    if folder is None:
        raise CheckpointError(f"{source} is not a diffusers Latte folder (no transformer/config.json)")
    cfg = read_config(folder)
    check_class_name(cfg, CLASS_NAMES, "a Latte transformer", "Pass the Latte-1 pipeline folder or its transformer/.")
    return translate_config(latte_config_from_diffusers, cfg)


def latte_config_from_diffusers(cfg: dict) -> LatteConfig:
    """config.json -> LatteConfig: the same field names; diffusers' __init__ defaults for absent fields
    (not Latte-1's: an absent norm_type is diffusers' "layer_norm", which this model refuses)."""
    defaults = dict(num_attention_heads=16, attention_head_dim=88, in_channels=None, out_channels=None,
                    num_layers=1, dropout=0.0, cross_attention_dim=None, attention_bias=False, sample_size=64,
                    patch_size=None, activation_fn="geglu", num_embeds_ada_norm=None, norm_type="layer_norm",
                    norm_elementwise_affine=True, norm_eps=1e-5, caption_channels=None, video_length=16)
    values = {k: cfg.get(k, v) for k, v in defaults.items()}
    bad = {k: values[k] for k, want in FIXED.items() if values[k] != want}
    if bad:
        raise CheckpointError(f"config.json options {bad} are not Latte-1's ({FIXED}): minidit implements "
                              "the Latte-1 architecture (PixArt-α blocks, adaLN-single)")
    for key in ("in_channels", "patch_size", "caption_channels"):
        if values[key] is None:
            raise CheckpointError(f"config.json has no {key}: every Latte text-to-video model sets it")
    names = {f.name for f in dataclasses.fields(LatteConfig)}
    return LatteConfig(**{k: v for k, v in values.items() if k in names})


def latte_from_diffusers(sd, config: LatteConfig):
    """diffusers keys -> minidit's: PixArt's renames for the embedders, the spatial blocks and the final
    layer, `rename_pixart_block(cross_attention=False)` for the temporal blocks. Every key is used once."""
    keys = KeyMap(sd, "diffusers Latte", consume=True)
    rename_pixart_top(keys)
    for i in range(config.num_layers):
        rename_pixart_block(keys, f"transformer_blocks.{i}.", f"blocks.{i}.")
        rename_pixart_block(keys, f"temporal_transformer_blocks.{i}.", f"temporal_blocks.{i}.", cross_attention=False)
    return keys.finish()
