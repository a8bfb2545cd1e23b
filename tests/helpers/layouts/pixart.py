"""PixArt: the original .pth layout (docs/checkpoints.md#pixart-original-checkpoint-pth) and the rename rules to
diffusers' PixArtTransformer2DModel (docs/checkpoints.md#pixart-diffusers-layout-and-rename-rules), written out by hand, independently of weights_loader."""
from minidit.pixart import PixArtConfig


def documented_original_keys(c: PixArtConfig) -> dict:
    """The original .pth layout as listed in docs/checkpoints.md#pixart-original-checkpoint-pth, with shapes."""
    D, p, C = c.hidden_size, c.patch_size, c.in_channels
    keys = {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,),
            "pos_embed": (1, c.base_size**2, D),
            "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
            "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
            "t_block.1.weight": (6 * D, D), "t_block.1.bias": (6 * D,),
            "y_embedder.y_proj.fc1.weight": (D, c.caption_channels), "y_embedder.y_proj.fc1.bias": (D,),
            "y_embedder.y_proj.fc2.weight": (D, D), "y_embedder.y_proj.fc2.bias": (D,),
            "y_embedder.y_embedding": (c.model_max_length, c.caption_channels),
            "final_layer.linear.weight": (p * p * 2 * C, D), "final_layer.linear.bias": (p * p * 2 * C,),
            "final_layer.scale_shift_table": (2, D)}
    if c.micro_condition:
        for e in ("csize_embedder", "ar_embedder"):
            keys.update({f"{e}.mlp.0.weight": (D // 3, 256), f"{e}.mlp.0.bias": (D // 3,),
                         f"{e}.mlp.2.weight": (D // 3, D // 3), f"{e}.mlp.2.bias": (D // 3,)})
    for i in range(c.depth):
        b = f"blocks.{i}."
        keys[b + "scale_shift_table"] = (6, D)
        for name, (out_f, in_f) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "cross_attn.q_linear": (D, D),
                                    "cross_attn.kv_linear": (2 * D, D), "cross_attn.proj": (D, D),
                                    "mlp.fc1": (4 * D, D), "mlp.fc2": (D, 4 * D)}.items():
            keys[b + name + ".weight"], keys[b + name + ".bias"] = (out_f, in_f), (out_f,)
    return keys


def original_to_diffusers(sd, depth):
    """docs/checkpoints.md#pixart-diffusers-layout-and-rename-rules: the rename rules, written out independently of weights_loader."""
    sd, out = dict(sd), {}
    rules = {"x_embedder.proj": "pos_embed.proj", "y_embedder.y_proj.fc1": "caption_projection.linear_1",
             "y_embedder.y_proj.fc2": "caption_projection.linear_2",
             "t_embedder.mlp.0": "adaln_single.emb.timestep_embedder.linear_1",
             "t_embedder.mlp.2": "adaln_single.emb.timestep_embedder.linear_2",
             "csize_embedder.mlp.0": "adaln_single.emb.resolution_embedder.linear_1",
             "csize_embedder.mlp.2": "adaln_single.emb.resolution_embedder.linear_2",
             "ar_embedder.mlp.0": "adaln_single.emb.aspect_ratio_embedder.linear_1",
             "ar_embedder.mlp.2": "adaln_single.emb.aspect_ratio_embedder.linear_2",
             "t_block.1": "adaln_single.linear", "final_layer.linear": "proj_out"}
    for i in range(depth):
        rules.update({f"blocks.{i}.attn.proj": f"transformer_blocks.{i}.attn1.to_out.0",
                      f"blocks.{i}.cross_attn.q_linear": f"transformer_blocks.{i}.attn2.to_q",
                      f"blocks.{i}.cross_attn.proj": f"transformer_blocks.{i}.attn2.to_out.0",
                      f"blocks.{i}.mlp.fc1": f"transformer_blocks.{i}.ff.net.0.proj",
                      f"blocks.{i}.mlp.fc2": f"transformer_blocks.{i}.ff.net.2"})
        out[f"transformer_blocks.{i}.scale_shift_table"] = sd.pop(f"blocks.{i}.scale_shift_table")
        for kind in ("weight", "bias"):
            q, k, v = sd.pop(f"blocks.{i}.attn.qkv.{kind}").chunk(3, dim=0)
            k2, v2 = sd.pop(f"blocks.{i}.cross_attn.kv_linear.{kind}").chunk(2, dim=0)
            for n, t in [("attn1.to_q", q), ("attn1.to_k", k), ("attn1.to_v", v), ("attn2.to_k", k2),
                         ("attn2.to_v", v2)]:
                out[f"transformer_blocks.{i}.{n}.{kind}"] = t
    for src, dst in rules.items():
        if f"{src}.weight" not in sd and src.startswith(("csize_embedder.", "ar_embedder.")):
            continue                                   # only α-1024 has the micro-condition embedders
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")
    out["scale_shift_table"] = sd.pop("final_layer.scale_shift_table")
    sd.pop("pos_embed"), sd.pop("y_embedder.y_embedding")
    assert not sd, sorted(sd)
    return out
