"""Load PixArt-α / PixArt-Σ checkpoints into `minidit.pixart.PixArt`.

Layouts (facts: docs/checkpoints.md#pixart-original-checkpoint-pth,
docs/checkpoints.md#pixart-diffusers-layout-and-rename-rules):
  * original `.pth` (`PixArt-XL-2-512x512.pth`, `PixArt-XL-2-1024-MS.pth`,
    `PixArt-Sigma-XL-2-{256x256,512-MS,1024-MS,2K-MS}.pth`): `{"state_dict": {...}}` whose keys are
    minidit's own, plus the fixed `pos_embed` buffer (computed at the training resolution).
  * diffusers `PixArtTransformer2DModel` folder (`transformer/` of `PixArt-alpha/PixArt-XL-2-1024-MS`,
    `PixArt-alpha/PixArt-Sigma-XL-2-1024-MS`, ...): split q/k/v and k/v, renamed layers, no
    `pos_embed` and NO `y_embedding` (the null caption is not stored).

Config detection from an original file: width/patch/channels from `x_embedder.proj.weight`, depth
from the blocks, heads = width / 72 (PixArt's head size), caption width and length from
`y_embedder.y_embedding` (120 tokens = α, 300 = Σ), micro-conditions from `csize_embedder.*`,
learned sigma from the final layer, QK-norm from `attn.q_norm`, conv KV compression from `attn.sr`.
The training resolution (`input_size`, `pe_interpolation`) is read off the stored `pos_embed`
table; if the file has none, pass `config=minidit.pixart.PRESETS[...]`. A given config is checked
against the stored table too, so a wrong preset fails instead of giving blurry images.

diffusers config traps, reproduced from `PixArtTransformer2DModel.__init__`: `use_additional_conditions`
missing/null means `sample_size == 128` (so a Σ-1024 config must say false), and
`interpolation_scale` missing/null means `max(sample_size // 64, 1)` (so Σ-256 must say 0.5).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from minidit.embed import get_2d_sincos_pos_embed
from minidit.pixart import CAPTION_TOKENS, KVCompressConfig, PixArt, PixArtConfig
from .configs import check_class_name, component_folder, read_config, read_json_file, translate_config
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks, strip_prefix
from .pipeline_folder import PipelineFolder

# Every PixArt model (XL/2: 1152 = 16 heads x 72) uses 72-d heads; the head count is read off the width.
HEAD_DIM = 72
# The model family of each diffusers pipeline class (model_index.json's `_class_name`), and so its
# caption length (the pipeline's `max_sequence_length` default), from minidit.pixart.CAPTION_TOKENS.
PIPELINE_VARIANTS = {"PixArtAlphaPipeline": "alpha", "PixArtSigmaPipeline": "sigma"}
CAPTION_LENGTH = {name: CAPTION_TOKENS[variant] for name, variant in PIPELINE_VARIANTS.items()}
# Candidate pe_interpolation values (training resolution / 512) to snap a detected value to.
PE_VALUES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# diffusers' model classes of a PixArt transformer/ folder (the first α folders say Transformer2DModel)
CLASS_NAMES = ("PixArtTransformer2DModel", "Transformer2DModel")


def load_pixart(source, config: PixArtConfig | None = None, *, overrides: dict | None = None,
                dtype=torch.float32, device="cpu") -> PixArt:
    """Load an original PixArt `.pth`, a diffusers PixArt folder (pipeline root or `transformer/`) or a
    state dict into `minidit.pixart.PixArt` (eval mode).

    `overrides`: `PixArtConfig` fields set on the config read off the folder or the file (or on
    `config`), e.g. `overrides={"model_max_length": 300}` for a Σ `transformer/` whose
    model_index.json is elsewhere.

    From a diffusers folder the null caption `y_embedder.y_embedding` is absent: it is filled with
    zeros and `model.y_embedder.has_null_caption` is set to False, so `null_caption()` raises
    instead of returning a fake. (diffusers' pipelines encode "" with T5 instead; that is also
    what Σ's `.pth` stores.)
    """
    folder = component_folder(source, "transformer")
    if folder is not None:
        config = config or read_pixart_config(folder)
        sd, diffusers_layout = read_state_dict(folder, dtype=reading_dtype(dtype)), True
        what = f"diffusers PixArt folder {folder}"
    else:
        sd = strip_prefix(read_state_dict(source, dtype=reading_dtype(dtype)), ("module.",))
        what = "PixArt checkpoint" if isinstance(source, dict) else f"PixArt checkpoint {source}"
        diffusers_layout = "transformer_blocks.0.attn1.to_q.weight" in sd
        if diffusers_layout and config is None:          # a diffusers state dict without its config.json
            raise CheckpointError("this is a diffusers PixArt state dict without its config.json: pass the "
                                  "folder that holds config.json, or config=minidit.pixart.PRESETS[...]")
        config = config or detect_pixart_config(sd)
    config = apply_overrides(config, overrides)
    null_caption = not diffusers_layout
    if diffusers_layout:
        sd = pixart_from_diffusers(sd, config.depth)
        sd["y_embedder.y_embedding"] = torch.zeros(config.model_max_length, config.caption_channels)
    else:
        _check_resolution(sd, config)
        sd.pop("pos_embed", None)              # the fixed table: recomputed by PixArt.pos_embed (checked above)
    model = load_into(build_on_meta(PixArt, config), sd, dtype=dtype, device=device, what=what)
    model.y_embedder.has_null_caption = null_caption
    return model



def read_pixart_config(source, overrides: dict | None = None) -> PixArtConfig:
    """The `PixArtConfig` of a diffusers PixArt folder (pipeline root or `transformer/`), read from its
    config.json alone (no weight is read: what a pipeline needs to plan before it loads the weights)."""
    folder = component_folder(source, "transformer")
    if folder is None:
        raise CheckpointError(f"{source} is not a diffusers PixArt folder (no transformer/config.json): the "
                              "config of an original .pth is read off its weights, by load_pixart")
    cfg = read_config(folder)
    check_class_name(cfg, CLASS_NAMES, "a PixArt transformer", "Pass the PixArt pipeline folder or its transformer/.")
    return apply_overrides(translate_config(pixart_config_from_diffusers, cfg, _caption_length(folder)), overrides)


def detect_pixart_config(sd) -> PixArtConfig:
    """A `PixArtConfig` read off an original-layout state dict (rules in the module docstring)."""
    try:
        w = sd["x_embedder.proj.weight"]                          # (D, C, p, p)
        y_emb = sd["y_embedder.y_embedding"]                      # (L, C_cap)
        fc1 = sd["blocks.0.mlp.fc1.weight"]                       # (mlp_ratio * D, D)
        final = sd["final_layer.linear.weight"]                   # (p*p*C_out, D)
    except KeyError as e:
        raise CheckpointError(f"this does not look like an original PixArt checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    hidden, in_channels, p = w.shape[0], w.shape[1], w.shape[-1]
    depth = count_blocks(sd, "blocks.")
    if hidden % HEAD_DIM:
        raise CheckpointError(f"width {hidden} is not a multiple of PixArt's head size {HEAD_DIM}, so the number of "
                              "heads cannot be read off the weights: pass config=PixArtConfig(...)")
    sr_layers = sorted(i for i in range(depth) if f"blocks.{i}.attn.sr.weight" in sd)
    kv = None
    if sr_layers:
        kv = KVCompressConfig("conv", sd[f"blocks.{sr_layers[0]}.attn.sr.weight"].shape[-1], tuple(sr_layers))
    input_size, pe = _resolution_from_pos_embed(sd, hidden, p)
    return PixArtConfig(
        input_size=input_size, patch_size=p, in_channels=in_channels, hidden_size=hidden, depth=depth,
        num_heads=hidden // HEAD_DIM, mlp_ratio=fc1.shape[0] / hidden,
        pred_sigma=final.shape[0] // (p * p) == 2 * in_channels, caption_channels=y_emb.shape[1],
        pe_interpolation=pe, model_max_length=y_emb.shape[0], micro_condition="csize_embedder.mlp.0.weight" in sd,
        qk_norm="blocks.0.attn.q_norm.weight" in sd, kv_compress_config=kv)


def _resolution_from_pos_embed(sd, hidden: int, p: int):
    """(input_size, pe_interpolation) of the stored table: T = (input_size/p)^2 tokens; token 1 sits at
    w = 1 / pe_interpolation (base_size equals the side), read back from a slow channel (omega <~ 0.1)."""
    if "pos_embed" not in sd:
        raise CheckpointError("the checkpoint has no pos_embed, so its training resolution is unknown: pass "
                              "config=minidit.pixart.PRESETS['PixArt-Sigma-XL-2-1024-MS'] (or the right preset)")
    table = sd["pos_embed"].reshape(-1, sd["pos_embed"].shape[-1]).double()
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or table.shape[1] != hidden or side < 2:
        raise CheckpointError(f"pos_embed {tuple(sd['pos_embed'].shape)} is not a square sin-cos table "
                              f"of width {hidden}")
    quarter = hidden // 4                                     # sin(w) | cos(w) | sin(h) | cos(h)
    k = min(quarter - 1, math.ceil(quarter / 4))              # omega_k = 10000^(-k/quarter) <= 0.1
    omega = 10000.0 ** (-k / quarter)
    pos = math.atan2(table[1, k].item(), table[1, quarter + k].item()) / omega
    pe = 1.0 / pos if pos > 0 else float("nan")
    near = min(PE_VALUES, key=lambda v: abs(v - pe))
    return side * p, near if abs(near - pe) < 1e-3 * near else round(pe, 6)


def _check_resolution(sd, config: PixArtConfig) -> PixArtConfig:
    """The stored pos_embed must be the table minidit computes for this config (else: wrong preset)."""
    if "pos_embed" not in sd:
        return config
    stored = sd["pos_embed"].float().reshape(1, -1, config.hidden_size)
    side = config.base_size
    ours = get_2d_sincos_pos_embed(config.hidden_size, side, config.base_size, config.pe_interpolation)[None]
    if stored.shape != ours.shape or not torch.allclose(stored, ours, atol=1e-3):
        found = "?"
        try:
            found = "input_size=%d, pe_interpolation=%g" % _resolution_from_pos_embed(sd, config.hidden_size,
                                                                                    config.patch_size)
        except CheckpointError:
            pass
        raise CheckpointError(
            f"the checkpoint's pos_embed {tuple(sd['pos_embed'].shape)} was computed for {found}, but the config "
            f"says input_size={config.input_size}, pe_interpolation={config.pe_interpolation}: wrong preset? "
            "(pass config=None to read the resolution off the file)")
    return config


def _caption_length(folder: Path) -> int:
    """120 / 300 from the pipeline class in model_index.json (the folder or its parent); else α's 120.
    (Only the pipeline's default prompt length and training's null caption depend on it; a bare
    transformer/ of a Σ model needs `overrides={"model_max_length": 300}`, or config=.)"""
    index = PipelineFolder(folder, folder.parent).find("model_index.json")
    if index is None:
        return PixArtConfig.model_max_length
    return CAPTION_LENGTH.get(read_json_file(index).get("_class_name"), CAPTION_TOKENS["alpha"])


def pixart_config_from_diffusers(cfg: dict, model_max_length: int = CAPTION_TOKENS["alpha"]) -> PixArtConfig:
    """Translate a diffusers `PixArtTransformer2DModel` config.json, with diffusers' own defaults."""
    for key, want in [("norm_type", "ada_norm_single"), ("activation_fn", "gelu-approximate"),
                      ("norm_elementwise_affine", False), ("attention_bias", True), ("attention_type", "default")]:
        if cfg.get(key, want) != want:
            raise CheckpointError(f"{key}={cfg[key]!r} in config.json: not a PixArt transformer (expected {want!r})")
    if cfg.get("caption_channels") is None:
        raise CheckpointError("config.json has no caption_channels: PixArt projects T5 states (4096 for T5-XXL)")
    heads, head_dim = cfg.get("num_attention_heads", 16), cfg.get("attention_head_dim", 72)
    if cfg.get("cross_attention_dim", 1152) != heads * head_dim:
        raise CheckpointError(f"cross_attention_dim {cfg['cross_attention_dim']} != heads x head_dim "
                              f"{heads * head_dim}")
    in_channels = cfg.get("in_channels", 4)
    out_channels = in_channels if cfg.get("out_channels") is None else cfg["out_channels"]   # null: diffusers' default
    if out_channels not in (in_channels, 2 * in_channels):
        raise CheckpointError(f"out_channels={out_channels} must equal in_channels ({in_channels}) or twice it")
    sample_size = cfg.get("sample_size", 128)
    micro = cfg.get("use_additional_conditions")
    micro = sample_size == 128 if micro is None else micro                  # trap 1
    pe = cfg.get("interpolation_scale")
    pe = max(sample_size // 64, 1) if pe is None else pe                    # trap 2
    return PixArtConfig(
        input_size=sample_size, patch_size=cfg.get("patch_size", 2), in_channels=in_channels,
        hidden_size=heads * head_dim, depth=cfg.get("num_layers", 28), num_heads=heads, mlp_ratio=4.0,
        pred_sigma=out_channels == 2 * in_channels, caption_channels=cfg["caption_channels"],
        pe_interpolation=float(pe), model_max_length=model_max_length, micro_condition=bool(micro))


def pixart_from_diffusers(sd, depth: int):
    """Rename a diffusers PixArt state dict to the official (= minidit) keys. Every key must be used; a
    dict is emptied as it is renamed (KeyMap consume=True), so old and new tensors are not all alive together."""
    keys = KeyMap(sd, "diffusers PixArt", consume=True)
    rename_pixart_top(keys)
    for i in range(depth):
        rename_pixart_block(keys, f"transformer_blocks.{i}.", f"blocks.{i}.")
    return keys.finish()


def rename_pixart_top(keys: KeyMap) -> None:
    """The embedders and the final layer: diffusers' `pos_embed`, `caption_projection`, `adaln_single`,
    `proj_out`, `scale_shift_table` -> PixArt's (also Latte's: `weights_loader/latte.py`)."""
    emb = "adaln_single.emb."
    top = [("pos_embed.proj", "x_embedder.proj"), ("caption_projection.linear_1", "y_embedder.y_proj.fc1"),
           ("caption_projection.linear_2", "y_embedder.y_proj.fc2"), ("adaln_single.linear", "t_block.1"),
           (emb + "timestep_embedder.linear_1", "t_embedder.mlp.0"),
           (emb + "timestep_embedder.linear_2", "t_embedder.mlp.2"), ("proj_out", "final_layer.linear")]
    if keys.has(emb + "resolution_embedder.linear_1.weight"):              # α-1024 micro-conditions
        for n, i in [("1", "0"), ("2", "2")]:
            top += [(emb + f"resolution_embedder.linear_{n}", f"csize_embedder.mlp.{i}"),
                    (emb + f"aspect_ratio_embedder.linear_{n}", f"ar_embedder.mlp.{i}")]
    for src, dst in top:
        for kind in ("weight", "bias"):
            keys.move(f"{src}.{kind}", f"{dst}.{kind}")
    keys.move("scale_shift_table", "final_layer.scale_shift_table")


def rename_pixart_block(keys: KeyMap, a: str, b: str, cross_attention: bool = True) -> None:
    """One diffusers `BasicTransformerBlock` (ada_norm_single) under prefix `a` -> a `PixArtBlock` under `b`:
    q/k/v fused into `attn.qkv`, k/v into `cross_attn.kv_linear` (absent with cross_attention=False)."""
    keys.move(a + "scale_shift_table", b + "scale_shift_table")
    renames = [("attn1.to_out.0", "attn.proj"), ("ff.net.0.proj", "mlp.fc1"), ("ff.net.2", "mlp.fc2")]
    if cross_attention:
        renames += [("attn2.to_q", "cross_attn.q_linear"), ("attn2.to_out.0", "cross_attn.proj")]
    for kind in ("weight", "bias"):
        keys.cat([a + f"attn1.to_{n}.{kind}" for n in "qkv"], b + f"attn.qkv.{kind}")
        if cross_attention:
            keys.cat([a + f"attn2.to_{n}.{kind}" for n in "kv"], b + f"cross_attn.kv_linear.{kind}")
        for src, dst in renames:
            keys.move(f"{a}{src}.{kind}", f"{b}{dst}.{kind}")
