"""Load DiT checkpoints into `minidit.dit.DiT`.

Layouts (facts: docs/checkpoints.md#dit-original-checkpoint-pt,
docs/checkpoints.md#dit-diffusers-layout-and-rename-rules):
  * original  `DiT-XL-2-256x256.pt`, `DiT-XL-2-512x512.pt`: a plain state dict whose keys are
    minidit's own, plus the fixed `pos_embed` table; `train.py` checkpoints wrap it as
    {"model", "ema", "opt", "args"} (the EMA weights are used, as DiT's `find_model` does).
  * diffusers `DiTTransformer2DModel` folder (`transformer/` of `facebook/DiT-XL-2-256`): split
    q/k/v, renamed layers, and the timestep/label embedders copied into every block.

Config detection from an original file: width, patch and channels from `x_embedder.proj.weight`,
depth from the number of blocks, latent size from `pos_embed` (T = (input_size/p)^2), classes from
the label table (the last row is the null class), learned sigma from the final layer, and the head
count from the paper's table (depth, width) -> heads. Pass `config=` for anything else.
"""
from __future__ import annotations

import math

import torch

from minidit.dit import PRESETS, DiT, DiTConfig
from minidit.embed import get_2d_sincos_pos_embed
from .configs import check_class_name, component_folder, read_config, translate_config
from .errors import CheckpointError
from .header import read_family_config
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks, strip_prefix

# (depth, hidden_size) -> num_heads for the paper's model sizes (S, B, L, XL), from the presets.
HEADS_BY_SIZE = {(c.depth, c.hidden_size): c.num_heads for c in PRESETS.values()}
# diffusers' model classes of a DiT transformer/ folder (facebook/DiT-XL-2-* still say Transformer2DModel)
CLASS_NAMES = ("DiTTransformer2DModel", "Transformer2DModel")


def load_dit(source, config: DiTConfig | None = None, *, overrides: dict | None = None, dtype=torch.float32,
             device="cpu") -> DiT:
    """Load an original DiT `.pt`, a diffusers DiT folder (pipeline root or `transformer/`) or a
    state dict into `minidit.dit.DiT` (eval mode).

    `overrides`: `DiTConfig` fields set on the config read off the folder or the file (or on `config`).
    The timestep embedding follows the official code (`timestep_freq_shift=0`) also for diffusers
    folders, because the weights were trained that way; `overrides={"timestep_freq_shift": 1}`
    reproduces diffusers' DiTTransformer2DModel exactly.
    """
    folder = component_folder(source, "transformer")
    if folder is not None:
        config = _folder_config(folder, config)    # the config first: a wrong folder fails before any weight is read
        sd = dit_from_diffusers(read_state_dict(folder, dtype=reading_dtype(dtype)), config.depth)
        what = f"diffusers DiT folder {folder}"
    else:
        sd = strip_prefix(read_state_dict(source, dtype=reading_dtype(dtype)), ("module.", "model."))
        if "transformer_blocks.0.norm1.linear.weight" in sd:     # a diffusers state dict passed directly
            sd = dit_from_diffusers(sd, config.depth if config else count_blocks(sd, "transformer_blocks."))
            config = config or detect_dit_config(sd)
        else:
            config = config or detect_dit_config(sd)
        what = "DiT checkpoint" if isinstance(source, dict) else f"DiT checkpoint {source}"
    config = apply_overrides(config, overrides)
    sd = _check_and_drop_pos_embed(sd, config)
    model = build_on_meta(DiT, config)
    return load_into(model, sd, dtype=dtype, device=device, what=what)


def read_dit_config(source, overrides: dict | None = None) -> DiTConfig:
    """The `DiTConfig` `load_dit(source, overrides=...)` would build, without reading a weight: a diffusers
    folder's config.json, or an original `.pt`'s keys and shapes (`header.read_shapes`)."""
    return read_family_config(source, folder_config=_folder_config, detect=detect_dit_config, what="DiT",
                              diffusers_key="transformer_blocks.0.norm1.linear.weight", overrides=overrides,
                              prepare=lambda sd: strip_prefix(sd, ("module.", "model.")))


def _folder_config(folder, config=None) -> DiTConfig:
    """`config`, or the one of `folder`'s config.json (whose model class is checked either way)."""
    cfg = read_config(folder)
    check_class_name(cfg, CLASS_NAMES, "a DiT transformer", "Pass the DiT pipeline folder or its transformer/.")
    return config or translate_config(dit_config_from_diffusers, cfg)



def detect_dit_config(sd) -> DiTConfig:
    """A `DiTConfig` read off an original-layout state dict (rules in the module docstring)."""
    try:
        w = sd["x_embedder.proj.weight"]                          # (D, C, p, p)
        table = sd["y_embedder.embedding_table.weight"]           # (num_classes + 1, D)
        fc1 = sd["blocks.0.mlp.fc1.weight"]                       # (mlp_ratio * D, D)
        final = sd["final_layer.linear.weight"]                   # (p*p*C_out, D)
    except KeyError as e:
        raise CheckpointError(f"this does not look like a DiT checkpoint: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    hidden, in_channels, p = w.shape[0], w.shape[1], w.shape[-1]
    depth = count_blocks(sd, "blocks.")
    if (depth, hidden) not in HEADS_BY_SIZE:
        raise CheckpointError(f"depth {depth} / width {hidden} is not one of the paper's DiT sizes, so the "
                              "number of heads cannot be read off the weights: pass config=DiTConfig(...)")
    if "pos_embed" not in sd:
        raise CheckpointError("the checkpoint has no pos_embed, so its latent size is unknown: pass "
                              "config=DiTConfig(input_size=...) (e.g. minidit.dit.CHECKPOINTS['DiT-XL-2-256x256'])")
    side = math.isqrt(sd["pos_embed"].shape[1])
    out_channels = final.shape[0] // (p * p)
    return DiTConfig(input_size=side * p, patch_size=p, in_channels=in_channels, hidden_size=hidden,
                     depth=depth, num_heads=HEADS_BY_SIZE[(depth, hidden)], mlp_ratio=fc1.shape[0] / hidden,
                     class_dropout_prob=0.1, num_classes=table.shape[0] - 1,
                     learn_sigma=out_channels == 2 * in_channels)


def _check_and_drop_pos_embed(sd, config: DiTConfig):
    """`pos_embed` is the fixed sin-cos table, recomputed by `DiT.forward`: drop it from the
    checkpoint (the one allowed key), after checking it is the table minidit computes."""
    if "pos_embed" not in sd:
        return sd
    sd = dict(sd)
    stored = sd.pop("pos_embed").float()
    side = config.input_size // config.patch_size
    ours = get_2d_sincos_pos_embed(config.hidden_size, side)[None]
    if stored.shape != ours.shape or not torch.allclose(stored, ours, atol=1e-4):
        raise CheckpointError(
            f"the checkpoint's pos_embed {tuple(stored.shape)} is not the 2-D sin-cos table of a "
            f"{side}x{side} grid {tuple(ours.shape)}: wrong input_size in the config, or not a DiT checkpoint")
    return sd


def dit_config_from_diffusers(cfg: dict) -> DiTConfig:
    """Translate a diffusers `DiTTransformer2DModel` config.json into a `DiTConfig`."""
    if cfg.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        raise CheckpointError(f"norm_type={cfg['norm_type']!r}: this is not a DiT (adaLN-Zero) transformer")
    if cfg.get("activation_fn", "gelu-approximate") != "gelu-approximate":
        raise CheckpointError(f"activation_fn={cfg['activation_fn']!r} is not supported (DiT uses gelu-approximate)")
    in_channels = cfg.get("in_channels", 4)
    out_channels = in_channels if cfg.get("out_channels") is None else cfg["out_channels"]   # null: diffusers' default
    if out_channels not in (in_channels, 2 * in_channels):
        raise CheckpointError(f"out_channels={out_channels} must equal in_channels ({in_channels}) or twice it")
    return DiTConfig(
        input_size=cfg.get("sample_size", 32), patch_size=cfg.get("patch_size", 2), in_channels=in_channels,
        hidden_size=cfg["num_attention_heads"] * cfg["attention_head_dim"], depth=cfg["num_layers"],
        num_heads=cfg["num_attention_heads"], mlp_ratio=4.0, class_dropout_prob=0.1,
        num_classes=1000 if cfg.get("num_embeds_ada_norm") is None else cfg["num_embeds_ada_norm"],
        learn_sigma=out_channels == 2 * in_channels)


def dit_from_diffusers(sd, depth: int):
    """Rename a diffusers DiT state dict to the official (= minidit) keys. Every key must be used; a
    dict is emptied as it is renamed (KeyMap consume=True), so old and new tensors are not all alive together."""
    keys = KeyMap(sd, "diffusers DiT", consume=True)
    for kind in ("weight", "bias"):
        keys.move(f"pos_embed.proj.{kind}", f"x_embedder.proj.{kind}")
        keys.move(f"proj_out_1.{kind}", f"final_layer.adaLN_modulation.1.{kind}")
        keys.move(f"proj_out_2.{kind}", f"final_layer.linear.{kind}")
    # The shared embedders are stored once per block; diffusers' final layer uses block 0's copy.
    emb = "transformer_blocks.{}.norm1.emb."
    for src, dst in [("timestep_embedder.linear_1.weight", "t_embedder.mlp.0.weight"),
                     ("timestep_embedder.linear_1.bias", "t_embedder.mlp.0.bias"),
                     ("timestep_embedder.linear_2.weight", "t_embedder.mlp.2.weight"),
                     ("timestep_embedder.linear_2.bias", "t_embedder.mlp.2.bias"),
                     ("class_embedder.embedding_table.weight", "y_embedder.embedding_table.weight")]:
        first = keys.take(emb.format(0) + src)
        keys.put(dst, first)
        for i in range(1, depth):
            if not keys.has(emb.format(i) + src):
                continue
            copy = keys.take(emb.format(i) + src)
            if not copy.is_meta and not torch.equal(copy, first):
                raise CheckpointError(
                    f"block {i}'s copy of {src} differs from block 0's; minidit (like the official DiT) "
                    "has one shared embedder, so this fine-tuned diffusers checkpoint cannot be represented")
    for i in range(depth):
        a, b = f"transformer_blocks.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            keys.cat([a + f"attn1.to_{n}.{kind}" for n in "qkv"], b + f"attn.qkv.{kind}")
            keys.move(a + f"attn1.to_out.0.{kind}", b + f"attn.proj.{kind}")
            keys.move(a + f"ff.net.0.proj.{kind}", b + f"mlp.fc1.{kind}")
            keys.move(a + f"ff.net.2.{kind}", b + f"mlp.fc2.{kind}")
            keys.move(a + f"norm1.linear.{kind}", b + f"adaLN_modulation.1.{kind}")
    keys.drop("pos_embed.pos_embed")      # the fixed sin-cos table, if a converter stored it (recomputed)
    return keys.finish()
