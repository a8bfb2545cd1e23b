"""Load Open-Sora 1.0 checkpoints into `minidit.stdit.STDiT`.

Layout (facts: docs/checkpoints.md#open-sora-10-stdit-checkpoints): `OpenSora-v1-16x256x256.pth`,
`OpenSora-v1-HQ-16x256x256.pth`, `OpenSora-v1-HQ-16x512x512.pth` (hf `hpcai-tech/Open-Sora`) are
FLAT state dicts: the official loader (`opensora/utils/ckpt_utils.py find_model`) `torch.load`s them
and unwraps nothing for these names (only the PixArt and Latte files it knows are unwrapped). Their
keys are PixArt-α's (`minidit.pixart`, with a 5-D `x_embedder.proj.weight`) plus
`blocks.i.attn_temp.{qkv,proj}.*`, and two fixed tables that minidit recomputes (`RECOMPUTED`):
`pos_embed` (1, S, D) and `pos_embed_temporal` (1, F, D). A wrapped file (`{"ema": ...}`,
`{"state_dict": ...}`, a `module.` prefix: a training save) is unwrapped as well.

Config detection: width/tubelet/channels from `x_embedder.proj.weight` (D, C, pt, ph, pw), depth from
the blocks, heads = width / 72, caption width and length from `y_embedder.y_embedding`, learned sigma
from the final layer; the training size and `space_scale` / `time_scale` from the two stored tables
(the 256^2 files: 16 x 16 tokens, space_scale 0.5; 512^2: 32 x 32, 1.0). A given config is checked
against the stored tables, so a wrong preset fails instead of silently shifting every position.

`stdit_from_pixart` is how Open-Sora 1.0 began training: a PixArt-α `.pth` (its `reparameter`: the
Conv2d patch weight gets a time axis of 1, `pos_embed` is dropped) loaded into a fresh STDiT whose
`attn_temp` keeps its initialisation (qkv xavier-uniform, proj zero), so the new model is, frame by
frame, the image model.
"""
from __future__ import annotations

import math
from math import prod

import torch

from minidit.embed import get_2d_sincos_pos_embed, pos_embed_temporal
from minidit.stdit import STDiT, STDiTConfig
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .keymap import count_blocks, strip_prefix
from .pixart import HEAD_DIM, _resolution_from_pos_embed
from .stream import reading_dtype

# The fixed sin-cos tables the file stores and minidit recomputes (after checking them): nothing else is dropped.
RECOMPUTED = ("pos_embed", "pos_embed_temporal")
TIME_SCALES = (0.5, 1.0, 2.0, 4.0)


def load_stdit(source, config: STDiTConfig | None = None, *, overrides: dict | None = None,
               dtype=torch.float32, device="cpu") -> STDiT:
    """Load an Open-Sora 1.0 `.pth` (or a state dict in its layout) into `minidit.stdit.STDiT`, strictly
    (eval mode). `config`: e.g. `minidit.stdit.PRESETS["OpenSora-v1-HQ-16x512x512"]`; None reads it off
    the file. `overrides`: `STDiTConfig` fields set on that config."""
    sd = strip_prefix(read_state_dict(source, dtype=reading_dtype(dtype, RECOMPUTED)), ("module.",))  # tables as stored
    what = "Open-Sora STDiT checkpoint" if isinstance(source, dict) else f"Open-Sora STDiT checkpoint {source}"
    _check_is_stdit(sd)
    config = apply_overrides(config or detect_stdit_config(sd), overrides)
    check_tables(sd, config)
    for key in RECOMPUTED:
        sd.pop(key, None)
    return load_into(build_on_meta(STDiT, config), sd, dtype=dtype, device=device, what=what)


def stdit_from_pixart(source, config: STDiTConfig, *, dtype=torch.float32, device="cpu", seed: int = 0) -> STDiT:
    """A fresh STDiT (`config`) initialised from a PixArt-α original `.pth` (or its state dict): every
    PixArt weight is used, strictly; only `attn_temp` is new (seeded initialisation, proj = 0)."""
    sd = strip_prefix(read_state_dict(source, dtype=reading_dtype(dtype)), ("module.",))
    if "blocks.0.attn_temp.qkv.weight" in sd:
        raise CheckpointError("this checkpoint already has temporal attention (an STDiT): load it with load_stdit")
    if "x_embedder.proj.weight" not in sd or sd["x_embedder.proj.weight"].ndim != 4:
        raise CheckpointError("stdit_from_pixart needs an original PixArt-α checkpoint (a 4-D x_embedder.proj.weight, "
                              "keys as in weights_loader.load_pixart's original layout)")
    sd.pop("pos_embed", None)                                            # a fixed table: recomputed
    sd["x_embedder.proj.weight"] = sd["x_embedder.proj.weight"][:, :, None]   # (D, C, p, p) -> (D, C, 1, p, p)
    torch.manual_seed(seed)
    fresh = STDiT(config)                                                # attn_temp: the official initialisation
    new = {k: v for k, v in fresh.state_dict().items() if ".attn_temp." in k}
    unexpected_new = sorted(set(new) & set(sd))
    if unexpected_new:
        raise CheckpointError(f"the PixArt checkpoint holds STDiT-only keys {unexpected_new[:4]}")
    what = "PixArt-α checkpoint" if isinstance(source, dict) else f"PixArt-α checkpoint {source}"
    return load_into(fresh, {**sd, **new}, dtype=dtype, device=device, what=what + " (as an STDiT)")


def _check_is_stdit(sd) -> None:
    if "blocks.0.attn_temp.qkv.weight" in sd:
        return
    if "blocks.0.attn.qkv.weight" in sd:
        raise CheckpointError("this checkpoint has no temporal attention (blocks.i.attn_temp.*): it is an image "
                              "model (PixArt-α?), not Open-Sora 1.0's STDiT. Load it with weights_loader.load_pixart")
    if "spatial_blocks.0.attn.qkv.weight" in sd:
        raise CheckpointError("this is an Open-Sora 1.2 STDiT3 checkpoint (spatial_blocks / temporal_blocks), "
                              "not Open-Sora 1.0's STDiT")
    raise CheckpointError(f"this does not look like an Open-Sora 1.0 STDiT checkpoint: no "
                          f"'blocks.0.attn_temp.qkv.weight' (first keys: {sorted(sd)[:6]})")


def detect_stdit_config(sd) -> STDiTConfig:
    """An `STDiTConfig` read off an Open-Sora 1.0 state dict (rules in the module docstring)."""
    try:
        w = sd["x_embedder.proj.weight"]                          # (D, C, pt, ph, pw)
        y_emb = sd["y_embedder.y_embedding"]                      # (L, C_cap)
        fc1 = sd["blocks.0.mlp.fc1.weight"]                       # (mlp_ratio * D, D)
        final = sd["final_layer.linear.weight"]                   # (pt*ph*pw*C_out, D)
    except KeyError as e:
        raise CheckpointError(f"this does not look like an Open-Sora 1.0 STDiT checkpoint: no {e.args[0]!r}") from None
    if w.ndim != 5:
        raise CheckpointError(f"x_embedder.proj.weight is {tuple(w.shape)}: STDiT's tubelet embedding is a Conv3d "
                              "weight (D, C, pt, ph, pw)")
    hidden, in_channels, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
    if hidden % HEAD_DIM:
        raise CheckpointError(f"width {hidden} is not a multiple of the head size {HEAD_DIM}, so the number of "
                              "heads cannot be read off the weights: pass config=STDiTConfig(...)")
    if "pos_embed" not in sd or "pos_embed_temporal" not in sd:
        raise CheckpointError("the checkpoint lacks pos_embed / pos_embed_temporal, so its training size is "
                              "unknown: pass config=minidit.stdit.PRESETS['OpenSora-v1-HQ-16x512x512'] (or the "
                              "right preset)")
    side, space_scale = _resolution_from_pos_embed(sd, hidden, 1)      # tokens per side, positions / scale
    frames, time_scale = _frames_from_temporal_table(sd["pos_embed_temporal"], hidden)
    return STDiTConfig(
        input_size=(frames * patch[0], side * patch[1], side * patch[2]), in_channels=in_channels,
        patch_size=patch, hidden_size=hidden, depth=count_blocks(sd, "blocks."), num_heads=hidden // HEAD_DIM,
        mlp_ratio=fc1.shape[0] / hidden, pred_sigma=final.shape[0] // prod(patch) == 2 * in_channels,
        caption_channels=y_emb.shape[1], model_max_length=y_emb.shape[0], space_scale=space_scale,
        time_scale=time_scale)


def _frames_from_temporal_table(table, hidden: int):
    """(F, time_scale) of a stored (1, F, D) table: frame 1 sits at 1 / time_scale, read from a slow channel."""
    table = table.reshape(-1, table.shape[-1]).double()
    if table.shape[1] != hidden or table.shape[0] < 2:
        raise CheckpointError(f"pos_embed_temporal {tuple(table.shape)} is not a 1-D sin-cos table of width {hidden}")
    half = hidden // 2                                        # sin | cos
    k = min(half - 1, math.ceil(half / 4))                    # omega_k = 10000^(-k/half) <= 0.1
    pos = math.atan2(table[1, k].item(), table[1, half + k].item()) / 10000.0 ** (-k / half)
    scale = 1.0 / pos if pos > 0 else float("nan")
    near = min(TIME_SCALES, key=lambda v: abs(v - scale))
    return table.shape[0], near if abs(near - scale) < 1e-3 * near else round(scale, 6)


def check_tables(sd, config: STDiTConfig) -> None:
    """The stored tables (if any) must be the ones minidit computes for `config` (else: wrong preset)."""
    F, H, W = config.grid
    D = config.hidden_size
    ours = {"pos_embed": get_2d_sincos_pos_embed(D, (H, W), None, config.space_scale)[None],
            "pos_embed_temporal": pos_embed_temporal(D, F, config.time_scale)[None]}
    for key, table in ours.items():
        if key not in sd:
            continue
        stored = sd[key].float()
        if stored.shape != table.shape or not torch.allclose(stored, table, atol=1e-3):
            raise CheckpointError(
                f"the checkpoint's {key} {tuple(stored.shape)} is not the table of this config (input_size="
                f"{config.input_size}, space_scale={config.space_scale}, time_scale={config.time_scale}: "
                f"{tuple(table.shape)}): wrong preset? (pass config=None to read the size off the file)")
