"""Load Hunyuan-DiT v1.0 / v1.1 / v1.2 checkpoints into `minidit.hunyuan.HunyuanDiT`.

Layouts (facts: docs/checkpoints.md#hunyuan-dit-layouts):
  * original `pytorch_model_{ema,module,distill}.pt` (`ckpts/t2i/model/` of `Tencent-Hunyuan/HunyuanDiT`,
    `-v1.1`, `-v1.2`): bare state dicts with minidit's own key names; DeepSpeed
    `*_model_states.pt` files wrap them as `{"module": ..., "ema": ...}` (`load_key` picks one).
    The files are float16; they are cast to the `dtype` asked for.
  * the original repository folder: `t2i/` (or its parent) with `model/pytorch_model_<load_key>.pt`.
  * diffusers `HunyuanDiT2DModel` folders (`transformer/` of `Tencent-Hunyuan/HunyuanDiT-Diffusers`,
    `HunyuanDiT-v1.2-Diffusers`, `-v1.2-Diffusers-Distilled`): split q/k/v and k/v, renamed layers,
    norm2 and norm3 SWAPPED (diffusers' norm2 is the pre-cross-attention norm), and `norm_out`
    storing (scale, shift) where the official final layer stores (shift, scale).

Config detection from an original file: width, patch and channels from `x_embedder.proj.weight`,
the head width from `blocks.0.attn1.q_norm.weight` (88), depth from the blocks, the MLP width from
`blocks.0.mlp.fc1`, the text widths and lengths from `mlp_t5`, `pooler.positional_embedding` and
`text_embedding_padding`, and the version from `extra_embedder.0.weight`'s in-dim: 1024 (v1.2: the
pooled mT5 vector only) or 1024 + 6 x 256 + width = 3968 (v1.0/v1.1: also image size and style).
"""
from __future__ import annotations

from pathlib import Path

import torch

from minidit.hunyuan import SIZE_DIMS, SIZE_FREQS, HunyuanConfig, HunyuanDiT
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError
from .header import read_family_config
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks
from .mmdit import swap_scale_shift

LOAD_KEYS = ("ema", "module", "distill")   # the official `--load-key` choices (file pytorch_model_<key>.pt)
CLASS_NAMES = ("HunyuanDiT2DModel",)       # the diffusers model class of a transformer/config.json


def load_hunyuan(source, config: HunyuanConfig | None = None, *, load_key: str = "ema", overrides: dict | None = None,
                 dtype=torch.float32, device="cpu") -> HunyuanDiT:
    """Load an original Hunyuan-DiT `.pt` (bare or DeepSpeed-wrapped), the original `t2i/` folder, a
    diffusers folder (pipeline root or `transformer/`) or a state dict into `HunyuanDiT` (eval mode).

    load_key: which weights of the original layout: "ema" (the official default), "module" (the raw
    training weights) or "distill" (v1.2-Distilled's file). `overrides`: config fields set after the
    config is read off the folder or the file."""
    if not isinstance(load_key, str) or load_key not in LOAD_KEYS:
        raise ValueError(f"load_key must be one of {LOAD_KEYS} (the official --load-key), not {load_key!r}")
    folder = component_folder(source, "transformer")
    if folder is not None:
        config = _folder_config(folder, config)
        sd = hunyuan_from_diffusers(read_state_dict(folder, dtype=reading_dtype(dtype)), config)
        what = f"diffusers Hunyuan-DiT folder {folder}"
    else:
        path = original_weight_file(source, load_key) if not isinstance(source, dict) else None
        sd = read_state_dict(path or source, unwrap=load_key, dtype=reading_dtype(dtype))  # DeepSpeed: load_key part
        what = "Hunyuan-DiT state dict" if path is None else f"Hunyuan-DiT checkpoint {path}"
        if "blocks.0.attn1.to_q.weight" in sd:
            if config is None:
                raise CheckpointError("this is a diffusers Hunyuan-DiT state dict without its config.json: pass the "
                                      "folder that holds config.json, or config=minidit.hunyuan.PRESETS[...]")
            sd = hunyuan_from_diffusers(sd, config)
        if config is None:
            config = detect_hunyuan_config(sd, what)
    config = apply_overrides(config, overrides)
    return load_into(build_on_meta(HunyuanDiT, config), sd, dtype=dtype, device=device, what=what)


def read_hunyuan_config(source, *, load_key: str = "ema", overrides: dict | None = None) -> HunyuanConfig:
    """The `HunyuanConfig` `load_hunyuan(source, load_key=...)` would build, without reading a weight: a
    diffusers folder's config.json, or an original `.pt`'s keys and shapes (`header.read_shapes`: a
    torch.save zip archive is memory-mapped, only its index is read)."""
    if not isinstance(load_key, str) or load_key not in LOAD_KEYS:
        raise ValueError(f"load_key must be one of {LOAD_KEYS} (the official --load-key), not {load_key!r}")
    if component_folder(source, "transformer") is None:
        source = original_weight_file(source, load_key)
    return read_family_config(source, folder_config=_folder_config, what="Hunyuan-DiT", unwrap=load_key,
                              detect=lambda sd: detect_hunyuan_config(sd, f"Hunyuan-DiT checkpoint {source}"),
                              diffusers_key="blocks.0.attn1.to_q.weight", overrides=overrides)


def _folder_config(folder, config=None) -> HunyuanConfig:
    """`config`, or the one of `folder`'s config.json (whose model class is checked either way)."""
    cfg = read_config(folder)                  # invalid JSON, a missing field: a ConfigError naming the file
    check_class_name(cfg, CLASS_NAMES, "a Hunyuan-DiT transformer", "Pass the Hunyuan-DiT pipeline folder or its transformer/.")
    return config or translate_config(hunyuan_config_from_diffusers, cfg)


def original_weight_file(source, load_key: str) -> Path:
    """A file as it is; for the original repository folders (`ckpts/`, `ckpts/t2i/`, `t2i/model/`),
    the `pytorch_model_<load_key>.pt` inside."""
    path = Path(source)
    if not path.is_dir():
        return path
    name = f"pytorch_model_{load_key}.pt"
    for candidate in (path / name, path / "model" / name, path / "t2i" / "model" / name):
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in (path / "model").glob("*.pt")) if (path / "model").is_dir() else \
        sorted(p.name for p in path.glob("*.pt"))
    hint = f"; it has {found} (choose with load_key=)" if found else \
        ". Download it with: huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2 --local-dir ./ckpts"
    raise CheckpointError(f"no {name} in {path}, {path / 'model'} or {path / 't2i' / 'model'}{hint}")


def detect_hunyuan_config(sd, what: str = "this state dict") -> HunyuanConfig:
    """A `HunyuanConfig` read off an original-layout state dict (rules in the module docstring);
    `what` (the file) names it in the errors."""
    try:
        w = sd["x_embedder.proj.weight"]                          # (D, C, p, p)
        hd = sd["blocks.0.attn1.q_norm.weight"].shape[0]
        fc1 = sd["blocks.0.mlp.fc1.weight"].shape[0]
        t5_in = sd["mlp_t5.0.weight"].shape[1]
        text_dim = sd["mlp_t5.2.weight"].shape[0]
        t5_len = sd["pooler.positional_embedding"].shape[0] - 1
        total_len = sd["text_embedding_padding"].shape[0]
        pooled = sd["pooler.c_proj.weight"].shape[0]
        extra_in = sd["extra_embedder.0.weight"].shape[1]
        final = sd["final_layer.linear.weight"].shape[0]          # p*p*C_out
    except KeyError as e:
        raise CheckpointError(f"{what} does not look like a Hunyuan-DiT checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    D, C, p = w.shape[0], w.shape[1], w.shape[-1]
    # the releases' 4.3637 if it gives this width (int(), as the model computes it), else the plain ratio
    ratio = next(r for r in (HunyuanConfig.mlp_ratio, fc1 / D, (fc1 + 0.5) / D) if int(D * r) == fc1)
    size_cond = "style_embedder.weight" in sd
    config = HunyuanConfig(patch_size=p, in_channels=C, hidden_size=D, depth=count_blocks(sd, "blocks."),
                           num_heads=D // hd, mlp_ratio=ratio, learn_sigma=final == 2 * C * p * p,
                           text_states_dim=text_dim, text_states_dim_t5=t5_in, text_len=total_len - t5_len,
                           text_len_t5=t5_len, pooled_dim=pooled, size_cond=size_cond,
                           num_styles=sd["style_embedder.weight"].shape[0] if size_cond else 1)
    if extra_in != config.extra_in_dim:
        stored = "a style embedding is stored" if size_cond else "no style embedding is stored"
        parts = f"pooled {pooled} + size {SIZE_DIMS}x{SIZE_FREQS} + style {D}" if size_cond else f"pooled {pooled}"
        raise CheckpointError(f"extra_embedder.0.weight takes {extra_in} inputs, but {stored}, which means "
                              f"{config.extra_in_dim} ({parts}): {what} is a damaged or unknown checkpoint")
    return config


# config.json fields that must be positive integers when present (the others: translate_config's type check)
INTEGER_FIELDS = ("num_attention_heads", "attention_head_dim", "in_channels", "patch_size", "num_layers",
                  "hidden_size", "cross_attention_dim", "cross_attention_dim_t5", "pooled_projection_dim",
                  "text_len", "text_len_t5", "sample_size")


def hunyuan_config_from_diffusers(cfg: dict) -> HunyuanConfig:
    """Translate a diffusers `HunyuanDiT2DModel` config.json (absent fields: the class's defaults).
    Run it through `io.translate_config`, which names the file in every refusal."""
    for key in INTEGER_FIELDS:
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{key}={value!r}: must be a positive integer (the releases: "
                                  f"{RELEASE_FIELDS.get(key, 'see their config.json')})")
    heads, head_dim = cfg.get("num_attention_heads", 16), cfg.get("attention_head_dim", 88)
    D = heads * head_dim
    if cfg.get("hidden_size", 1152) != D:
        raise CheckpointError(f"hidden_size {cfg.get('hidden_size')} != heads x head_dim {D}: not a Hunyuan-DiT "
                              "minidit can represent (the released models have 1408 = 16 x 88)")
    if cfg.get("activation_fn", "gelu-approximate") != "gelu-approximate" or \
            cfg.get("norm_type", "layer_norm") != "layer_norm":
        raise CheckpointError(f"activation_fn={cfg.get('activation_fn')!r}, norm_type={cfg.get('norm_type')!r}: "
                              "the releases use 'gelu-approximate' and 'layer_norm'")
    if cfg.get("in_channels") is None or cfg.get("patch_size") is None:
        raise CheckpointError("config.json has no in_channels / patch_size (the releases: 4 and 2)")
    depth = cfg.get("num_layers", 28)
    if depth % 2 or depth < 4:
        raise CheckpointError(f"num_layers={depth}: Hunyuan-DiT's long skips need an even depth of at least 4 "
                              "(the releases: 40)")
    if head_dim % 4:
        raise CheckpointError(f"attention_head_dim={head_dim}: 2-D RoPE needs a multiple of 4 (the releases: 88)")
    return HunyuanConfig(patch_size=cfg["patch_size"], in_channels=cfg["in_channels"], hidden_size=D,
                         depth=depth, num_heads=heads, mlp_ratio=cfg.get("mlp_ratio", 4.0),
                         learn_sigma=cfg.get("learn_sigma", True), text_states_dim=cfg.get("cross_attention_dim", 1024),
                         text_states_dim_t5=cfg.get("cross_attention_dim_t5", 2048), text_len=cfg.get("text_len", 77),
                         text_len_t5=cfg.get("text_len_t5", 256), pooled_dim=cfg.get("pooled_projection_dim", 1024),
                         size_cond=cfg.get("use_style_cond_and_image_meta_size", True))


# what the released transformer/config.json files hold (for the error messages)
RELEASE_FIELDS = {"num_attention_heads": 16, "attention_head_dim": 88, "in_channels": 4, "patch_size": 2,
                  "num_layers": 40, "hidden_size": 1408, "cross_attention_dim": 1024, "cross_attention_dim_t5": 2048,
                  "pooled_projection_dim": 1024, "text_len": 77, "text_len_t5": 256, "sample_size": 128}


def hunyuan_from_diffusers(sd, config: HunyuanConfig) -> dict:
    """Rename a diffusers Hunyuan-DiT state dict to the official (= minidit) keys. Every key must be used; a
    dict is emptied as it is renamed (KeyMap consume=True), so old and new tensors are not all alive together."""
    keys = KeyMap(sd, "diffusers Hunyuan-DiT", consume=True)
    keys.move("text_embedding_padding", "text_embedding_padding")
    keys.move("time_extra_emb.pooler.positional_embedding", "pooler.positional_embedding")
    wb = ("weight", "bias")
    pairs = [("time_extra_emb.pooler." + n, "pooler." + n) for n in ("q_proj", "k_proj", "v_proj", "c_proj")] + [
        ("time_extra_emb.timestep_embedder.linear_1", "t_embedder.mlp.0"),
        ("time_extra_emb.timestep_embedder.linear_2", "t_embedder.mlp.2"),
        ("time_extra_emb.extra_embedder.linear_1", "extra_embedder.0"),
        ("time_extra_emb.extra_embedder.linear_2", "extra_embedder.2"),
        ("pos_embed.proj", "x_embedder.proj"), ("text_embedder.linear_1", "mlp_t5.0"),
        ("text_embedder.linear_2", "mlp_t5.2"), ("proj_out", "final_layer.linear")]
    for src, dst in pairs:
        for kind in wb:
            keys.move(f"{src}.{kind}", f"{dst}.{kind}")
    for kind in wb:
        keys.move(f"norm_out.linear.{kind}", f"final_layer.adaLN_modulation.1.{kind}", swap_scale_shift)
    if config.size_cond:
        keys.move("time_extra_emb.style_embedder.weight", "style_embedder.weight")
    for i in range(config.depth):
        a = f"blocks.{i}."
        for kind in wb:
            keys.cat([a + f"attn1.to_{n}.{kind}" for n in "qkv"], a + f"attn1.Wqkv.{kind}")
            keys.move(a + f"attn1.to_out.0.{kind}", a + f"attn1.out_proj.{kind}")
            keys.move(a + f"attn2.to_q.{kind}", a + f"attn2.q_proj.{kind}")
            keys.cat([a + f"attn2.to_{n}.{kind}" for n in "kv"], a + f"attn2.kv_proj.{kind}")
            keys.move(a + f"attn2.to_out.0.{kind}", a + f"attn2.out_proj.{kind}")
            for attn in ("attn1", "attn2"):
                keys.move(a + f"{attn}.norm_q.{kind}", a + f"{attn}.q_norm.{kind}")
                keys.move(a + f"{attn}.norm_k.{kind}", a + f"{attn}.k_norm.{kind}")
            keys.move(a + f"norm1.norm.{kind}", a + f"norm1.{kind}")
            keys.move(a + f"norm1.linear.{kind}", a + f"default_modulation.1.{kind}")
            keys.move(a + f"norm2.{kind}", a + f"norm3.{kind}")          # diffusers norm2 = before attn2
            keys.move(a + f"norm3.{kind}", a + f"norm2.{kind}")          # diffusers norm3 = before the MLP
            keys.move(a + f"ff.net.0.proj.{kind}", a + f"mlp.fc1.{kind}")
            keys.move(a + f"ff.net.2.{kind}", a + f"mlp.fc2.{kind}")
            if i > config.depth // 2:
                keys.move(a + f"skip_norm.{kind}", a + f"skip_norm.{kind}")
                keys.move(a + f"skip_linear.{kind}", a + f"skip_linear.{kind}")
    return keys.finish()
