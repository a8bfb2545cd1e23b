"""Writing minidit weights in the diffusers layout: the key maps of `dit.py` and `pixart.py`, run backwards.

    sd, config = dit_to_diffusers(model.state_dict(), model.config)       # a DiTTransformer2DModel folder's
    sd, config = pixart_to_diffusers(model.state_dict(), model.config)    # a PixArtTransformer2DModel folder's
    write_diffusers_folder(folder, sd, config)       # config.json + diffusion_pytorch_model.safetensors

Each is a `KeyMap` from minidit's keys (the official checkpoint's) to diffusers' names, strict as the
loaders are: every minidit key is written once or dropped by name (PixArt's null caption
`y_embedder.y_embedding`, which diffusers folders do not store). The fused q|k|v and k|v Linears are
split again; DiT's shared timestep and label embedders are copied into every block, as diffusers stores
them. The loaders' own `dit_from_diffusers` / `pixart_from_diffusers` map the result back to exactly the
input (tests/test_train_export.py), and diffusers reads the folders (the same test, diffusers as oracle).
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError
from .io import save_safetensors
from .keymap import KeyMap


def dit_to_diffusers(sd: dict, config) -> tuple[dict, dict]:
    """(diffusers state dict, config.json dict) of a minidit / original DiT state dict."""
    keys = KeyMap(sd, "minidit DiT")
    for kind in ("weight", "bias"):
        keys.move(f"x_embedder.proj.{kind}", f"pos_embed.proj.{kind}")
        keys.move(f"final_layer.adaLN_modulation.1.{kind}", f"proj_out_1.{kind}")
        keys.move(f"final_layer.linear.{kind}", f"proj_out_2.{kind}")
    shared = [("t_embedder.mlp.0.weight", "timestep_embedder.linear_1.weight"),
              ("t_embedder.mlp.0.bias", "timestep_embedder.linear_1.bias"),
              ("t_embedder.mlp.2.weight", "timestep_embedder.linear_2.weight"),
              ("t_embedder.mlp.2.bias", "timestep_embedder.linear_2.bias"),
              ("y_embedder.embedding_table.weight", "class_embedder.embedding_table.weight")]
    for src, dst in shared:
        tensor = keys.take(src)
        for i in range(config.depth):                                  # one copy per block, as diffusers stores it
            keys.put(f"transformer_blocks.{i}.norm1.emb.{dst}", tensor)
    for i in range(config.depth):
        a, b = f"blocks.{i}.", f"transformer_blocks.{i}."
        for kind in ("weight", "bias"):
            keys.chunk(a + f"attn.qkv.{kind}", [b + f"attn1.to_{n}.{kind}" for n in "qkv"])
            keys.move(a + f"attn.proj.{kind}", b + f"attn1.to_out.0.{kind}")
            keys.move(a + f"mlp.fc1.{kind}", b + f"ff.net.0.proj.{kind}")
            keys.move(a + f"mlp.fc2.{kind}", b + f"ff.net.2.{kind}")
            keys.move(a + f"adaLN_modulation.1.{kind}", b + f"norm1.linear.{kind}")
    keys.drop("pos_embed")                                             # the fixed table: not stored by diffusers
    c = config
    cfg = {"_class_name": "DiTTransformer2DModel", "num_attention_heads": c.num_heads,
           "attention_head_dim": c.hidden_size // c.num_heads, "in_channels": c.in_channels,
           "out_channels": c.out_channels, "num_layers": c.depth, "sample_size": c.input_size,
           "patch_size": c.patch_size, "num_embeds_ada_norm": c.num_classes, "norm_type": "ada_norm_zero",
           "activation_fn": "gelu-approximate", "attention_bias": True, "norm_elementwise_affine": False,
           "norm_eps": 1e-6, "dropout": 0.0, "upcast_attention": False}
    return keys.finish(), cfg


def pixart_to_diffusers(sd: dict, config) -> tuple[dict, dict]:
    """(diffusers state dict, config.json dict) of a minidit / original PixArt state dict (no QK-norm or
    KV compression: diffusers' PixArtTransformer2DModel has neither)."""
    if config.qk_norm or config.kv_compress_config:
        raise CheckpointError("diffusers' PixArtTransformer2DModel has no QK-norm or KV compression: export this "
                              "model in the original layout (.pth) instead")
    keys = KeyMap(sd, "minidit PixArt")
    emb = "adaln_single.emb."
    top = [("x_embedder.proj", "pos_embed.proj"), ("y_embedder.y_proj.fc1", "caption_projection.linear_1"),
           ("y_embedder.y_proj.fc2", "caption_projection.linear_2"), ("t_block.1", "adaln_single.linear"),
           ("t_embedder.mlp.0", emb + "timestep_embedder.linear_1"),
           ("t_embedder.mlp.2", emb + "timestep_embedder.linear_2"), ("final_layer.linear", "proj_out")]
    if config.micro_condition:
        for i, n in [("0", "1"), ("2", "2")]:
            top += [(f"csize_embedder.mlp.{i}", emb + f"resolution_embedder.linear_{n}"),
                    (f"ar_embedder.mlp.{i}", emb + f"aspect_ratio_embedder.linear_{n}")]
    for src, dst in top:
        for kind in ("weight", "bias"):
            keys.move(f"{src}.{kind}", f"{dst}.{kind}")
    keys.move("final_layer.scale_shift_table", "scale_shift_table")
    for i in range(config.depth):
        a, b = f"blocks.{i}.", f"transformer_blocks.{i}."
        keys.move(a + "scale_shift_table", b + "scale_shift_table")
        for kind in ("weight", "bias"):
            keys.chunk(a + f"attn.qkv.{kind}", [b + f"attn1.to_{n}.{kind}" for n in "qkv"])
            keys.chunk(a + f"cross_attn.kv_linear.{kind}", [b + f"attn2.to_{n}.{kind}" for n in "kv"])
            for src, dst in [("attn.proj", "attn1.to_out.0"), ("cross_attn.q_linear", "attn2.to_q"),
                             ("cross_attn.proj", "attn2.to_out.0"), ("mlp.fc1", "ff.net.0.proj"),
                             ("mlp.fc2", "ff.net.2")]:
                keys.move(f"{a}{src}.{kind}", f"{b}{dst}.{kind}")
    keys.drop("y_embedder.y_embedding", "pos_embed")   # diffusers stores neither (null caption; the fixed table)
    c = config
    cfg = {"_class_name": "PixArtTransformer2DModel", "num_attention_heads": c.num_heads,
           "attention_head_dim": c.hidden_size // c.num_heads, "in_channels": c.in_channels,
           "out_channels": c.out_channels, "num_layers": c.depth, "sample_size": c.input_size,
           "patch_size": c.patch_size, "caption_channels": c.caption_channels, "cross_attention_dim": c.hidden_size,
           "interpolation_scale": c.pe_interpolation, "use_additional_conditions": c.micro_condition,
           "norm_type": "ada_norm_single", "activation_fn": "gelu-approximate", "attention_bias": True,
           "norm_elementwise_affine": False, "norm_eps": 1e-6, "dropout": 0.0, "upcast_attention": False,
           "num_embeds_ada_norm": 1000, "attention_type": "default"}
    return keys.finish(), cfg


def write_diffusers_folder(folder, sd: dict, config: dict) -> Path:
    """config.json + diffusion_pytorch_model.safetensors (contiguous copies: split q/k/v are views)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_safetensors({k: v.contiguous().clone() for k, v in sd.items()}, folder / "diffusion_pytorch_model.safetensors")
    return folder
