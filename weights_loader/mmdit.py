"""Load SD3 / SD3.5 MM-DiT checkpoints into `minidit.mmdit.MMDiT`.

Layouts (facts: docs/checkpoints.md#sd3-mm-dit-layouts):
  * official single files `sd3_medium.safetensors` (and the `sd3_medium_incl_clips*.safetensors`
    variants), `sd3.5_large.safetensors`, `sd3.5_large_turbo.safetensors`, `sd3.5_medium.safetensors`:
    the MM-DiT under `model.diffusion_model.` with minidit's own key names (the VAE sits under
    `first_stage_model.`, text encoders under `text_encoders.*`; other loaders read those). The files
    are float16; they are cast to the `dtype` asked for, as the official loader upcasts.
  * diffusers `SD3Transformer2DModel` folders (`transformer/` of `stabilityai/stable-diffusion-3-medium-diffusers`,
    `stable-diffusion-3.5-large`, `-medium`): q/k/v split per stream (`to_*` image, `add_*_proj`
    text), renamed layers, and `norm_out` / the last `norm1_context` storing (scale, shift) where
    the official code stores (shift, scale) (diffusers' `swap_scale_shift`).

Config detection from an official file, as `sd3_impls.BaseModel` does it: width from
`x_embedder.proj.weight` (depth = width / 64, heads = depth), patch and channels from the same
tensor, the position table's side M = sqrt(pos_embed.shape[1]), the pooled and context widths from
`y_embedder` / `context_embedder`, QK RMSNorm if `joint_blocks.0.context_block.attn.ln_k.weight`
exists, and MMDiT-X's layers from which `x_block.attn2` are present.
"""
from __future__ import annotations

import math

import torch

from minidit.mmdit import HEAD_DIM, MMDiT, MMDiTConfig
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError
from .header import read_family_config
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks, select_prefix

PREFIX = "model.diffusion_model."                # where the MM-DiT sits in an official single file


def load_mmdit(source, config: MMDiTConfig | None = None, *, overrides: dict | None = None, dtype=torch.float32,
               device="cpu") -> MMDiT:
    """Load an official SD3 / SD3.5 single file, a diffusers SD3 folder (pipeline root or
    `transformer/`) or a state dict into `minidit.mmdit.MMDiT` (eval mode). `overrides`: config
    fields set after the config is read off the folder or the file."""
    folder = component_folder(source, "transformer")
    if folder is not None:
        config = _folder_config(folder, config)
        sd = mmdit_from_diffusers(read_state_dict(folder, dtype=reading_dtype(dtype)), config)
        what = f"diffusers SD3 folder {folder}"
    else:
        sd = read_state_dict(source, only_prefix=PREFIX, dtype=reading_dtype(dtype))  # SD3 file: MM-DiT only
        if any(k.startswith(PREFIX) for k in sd):
            sd = select_prefix(sd, PREFIX)                       # a whole SD3 file: the MM-DiT part
        what = "MM-DiT state dict" if isinstance(source, dict) else f"SD3 checkpoint {source}"
        if "transformer_blocks.0.attn.to_q.weight" in sd:
            if config is None:
                raise CheckpointError("this is a diffusers SD3 state dict without its config.json: pass the folder "
                                      "that holds config.json, or config=minidit.mmdit.PRESETS[...]")
            sd = mmdit_from_diffusers(sd, config)
        config = config or detect_mmdit_config(sd)
    config = apply_overrides(config, overrides)
    return load_into(build_on_meta(MMDiT, config), sd, dtype=dtype, device=device, what=what)


def read_mmdit_config(source, overrides: dict | None = None) -> MMDiTConfig:
    """The `MMDiTConfig` `load_mmdit(source)` would build, without reading a weight: a diffusers folder's
    config.json, or an official file's keys and shapes (`header.read_shapes`: a safetensors header)."""
    return read_family_config(source, folder_config=_folder_config, detect=detect_mmdit_config, what="SD3",
                              diffusers_key="transformer_blocks.0.attn.to_q.weight", overrides=overrides,
                              prepare=lambda sd: select_prefix(sd, PREFIX) if any(k.startswith(PREFIX) for k in sd)
                              else sd, only_prefix=PREFIX)


def _folder_config(folder, config=None) -> MMDiTConfig:
    """`config`, or the one of `folder`'s config.json (whose model class is checked either way)."""
    cfg = read_config(folder)
    check_class_name(cfg, ("SD3Transformer2DModel",), "an SD3 MM-DiT", "Pass the SD3 pipeline folder or its transformer/.")
    return config or translate_config(mmdit_config_from_diffusers, cfg)


def detect_mmdit_config(sd) -> MMDiTConfig:
    """An `MMDiTConfig` read off an official-layout state dict (rules in the module docstring)."""
    try:
        w = sd["x_embedder.proj.weight"]                          # (D, C, p, p)
        pos = sd["pos_embed"]                                     # (1, M*M, D)
        y_in = sd["y_embedder.mlp.0.weight"].shape[1]
        ctx_in = sd["context_embedder.weight"].shape[1]
        fc1 = sd["joint_blocks.0.x_block.mlp.fc1.weight"]         # (mlp_ratio * D, D)
        final = sd["final_layer.linear.weight"]                   # (p*p*C_out, D)
    except KeyError as e:
        raise CheckpointError(f"this does not look like an SD3 MM-DiT checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    D, C, p = w.shape[0], w.shape[1], w.shape[-1]
    depth = count_blocks(sd, "joint_blocks.")
    if D != HEAD_DIM * depth:
        raise CheckpointError(f"width {D} with {depth} joint blocks is not the official design (width = 64 x depth), "
                              "so the head count cannot be read off the weights: pass config=MMDiTConfig(...)")
    M = math.isqrt(pos.shape[1])
    if M * M != pos.shape[1]:
        raise CheckpointError(f"pos_embed {tuple(pos.shape)} is not a square M x M table")
    return MMDiTConfig(
        patch_size=p, in_channels=C, depth=depth, hidden_size=D, num_heads=depth, mlp_ratio=fc1.shape[0] / D,
        adm_in_channels=y_in, context_dim=ctx_in, out_channels=final.shape[0] // (p * p), pos_embed_max_size=M,
        qk_norm="rms" if "joint_blocks.0.context_block.attn.ln_k.weight" in sd else None,
        x_block_self_attn_layers=tuple(i for i in range(depth) if f"joint_blocks.{i}.x_block.attn2.qkv.weight" in sd))


def mmdit_config_from_diffusers(cfg: dict) -> MMDiTConfig:
    """Translate a diffusers `SD3Transformer2DModel` config.json."""
    heads, head_dim = cfg.get("num_attention_heads", 18), cfg.get("attention_head_dim", 64)
    D = heads * head_dim
    if cfg.get("caption_projection_dim", 1152) != D:
        raise CheckpointError(f"caption_projection_dim {cfg.get('caption_projection_dim')} != heads x head_dim {D}: "
                              "not an SD3 MM-DiT minidit can represent")
    if cfg.get("pos_embed_max_size") is None:
        raise CheckpointError("config.json has no pos_embed_max_size: every SD3 release stores its position table "
                              "(192 or 384); without it diffusers computes a table of the sample size instead")
    qk = cfg.get("qk_norm")
    if qk not in (None, "rms_norm"):
        raise CheckpointError(f"qk_norm={qk!r}: the SD3 releases use None or 'rms_norm'")
    return MMDiTConfig(patch_size=cfg.get("patch_size", 2), in_channels=cfg.get("in_channels", 16),
                       depth=cfg.get("num_layers", 18), hidden_size=D, num_heads=heads,
                       adm_in_channels=cfg.get("pooled_projection_dim", 2048),
                       context_dim=cfg.get("joint_attention_dim", 4096),
                       out_channels=(cfg.get("in_channels", 16) if cfg.get("out_channels") is None
                                     else cfg["out_channels"]),
                       pos_embed_max_size=cfg["pos_embed_max_size"], qk_norm="rms" if qk else None,
                       x_block_self_attn_layers=tuple(cfg.get("dual_attention_layers") or ()))


def swap_scale_shift(t):
    """diffusers' AdaLayerNormContinuous stores (scale, shift); the official code (shift, scale)."""
    scale, shift = t.chunk(2, dim=0)
    return torch.cat([shift, scale], dim=0)


def mmdit_from_diffusers(sd, config: MMDiTConfig) -> dict:
    """Rename a diffusers SD3 state dict to the official (= minidit) keys. Every key must be used; a
    dict is emptied as it is renamed (KeyMap consume=True), so old and new tensors are not all alive together."""
    keys = KeyMap(sd, "diffusers SD3", consume=True)
    keys.move("pos_embed.pos_embed", "pos_embed")
    wb = ("weight", "bias")
    for src, dst in [("pos_embed.proj", "x_embedder.proj"), ("context_embedder", "context_embedder"),
                     ("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
                     ("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
                     ("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0"),
                     ("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2"), ("proj_out", "final_layer.linear")]:
        for kind in wb:
            keys.move(f"{src}.{kind}", f"{dst}.{kind}")
    for kind in wb:
        keys.move(f"norm_out.linear.{kind}", f"final_layer.adaLN_modulation.1.{kind}", swap_scale_shift)
    for i in range(config.depth):
        a, j = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        x, ctx = j + "x_block.", j + "context_block."
        last = i == config.depth - 1
        for kind in wb:
            keys.cat([a + f"attn.to_{n}.{kind}" for n in "qkv"], x + f"attn.qkv.{kind}")
            keys.cat([a + f"attn.add_{n}_proj.{kind}" for n in "qkv"], ctx + f"attn.qkv.{kind}")
            keys.move(a + f"attn.to_out.0.{kind}", x + f"attn.proj.{kind}")
            keys.move(a + f"norm1.linear.{kind}", x + f"adaLN_modulation.1.{kind}")
            keys.move(a + f"norm1_context.linear.{kind}", ctx + f"adaLN_modulation.1.{kind}",
                      swap_scale_shift if last else None)          # the pre_only block: AdaLayerNormContinuous
            keys.move(a + f"ff.net.0.proj.{kind}", x + f"mlp.fc1.{kind}")
            keys.move(a + f"ff.net.2.{kind}", x + f"mlp.fc2.{kind}")
            if not last:
                keys.move(a + f"attn.to_add_out.{kind}", ctx + f"attn.proj.{kind}")
                keys.move(a + f"ff_context.net.0.proj.{kind}", ctx + f"mlp.fc1.{kind}")
                keys.move(a + f"ff_context.net.2.{kind}", ctx + f"mlp.fc2.{kind}")
            if i in config.x_block_self_attn_layers:
                keys.cat([a + f"attn2.to_{n}.{kind}" for n in "qkv"], x + f"attn2.qkv.{kind}")
                keys.move(a + f"attn2.to_out.0.{kind}", x + f"attn2.proj.{kind}")
        if config.qk_norm:
            for src, dst in [("attn.norm_q", x + "attn.ln_q"), ("attn.norm_k", x + "attn.ln_k"),
                             ("attn.norm_added_q", ctx + "attn.ln_q"), ("attn.norm_added_k", ctx + "attn.ln_k")] + \
                    ([("attn2.norm_q", x + "attn2.ln_q"), ("attn2.norm_k", x + "attn2.ln_k")]
                     if i in config.x_block_self_attn_layers else []):
                keys.move(f"{a}{src}.weight", f"{dst}.weight")
    return keys.finish()
