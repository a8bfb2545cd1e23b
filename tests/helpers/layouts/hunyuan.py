"""Hunyuan-DiT: the original `pytorch_model_*.pt` layout (docs/checkpoints.md#hunyuan-dit-original-checkpoint) and the
rename rules to diffusers' HunyuanDiT2DModel (docs/checkpoints.md#hunyuan-dit-diffusers-layout), written out by
hand from the documented key list and the converter's rules, independently of weights_loader."""


def documented_original_keys(depth=40, D=1408, hd=88, mlp=6144, C=4, p=2, text=1024, t5=2048, text_len=77,
                             t5_len=256, size_cond=False) -> dict:
    """The original key list with shapes (learned sigma: 2C output channels)."""
    extra_in = 1024 + (6 * 256 + D if size_cond else 0)
    keys = {"text_embedding_padding": (text_len + t5_len, text),
            "mlp_t5.0.weight": (4 * t5, t5), "mlp_t5.0.bias": (4 * t5,),
            "mlp_t5.2.weight": (text, 4 * t5), "mlp_t5.2.bias": (text,),
            "pooler.positional_embedding": (t5_len + 1, t5),
            "pooler.c_proj.weight": (1024, t5), "pooler.c_proj.bias": (1024,),
            "x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,),
            "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
            "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
            "extra_embedder.0.weight": (4 * D, extra_in), "extra_embedder.0.bias": (4 * D,),
            "extra_embedder.2.weight": (D, 4 * D), "extra_embedder.2.bias": (D,),
            "final_layer.adaLN_modulation.1.weight": (2 * D, D), "final_layer.adaLN_modulation.1.bias": (2 * D,),
            "final_layer.linear.weight": (p * p * 2 * C, D), "final_layer.linear.bias": (p * p * 2 * C,)}
    for n in ("q_proj", "k_proj", "v_proj"):
        keys[f"pooler.{n}.weight"], keys[f"pooler.{n}.bias"] = (t5, t5), (t5,)
    if size_cond:
        keys["style_embedder.weight"] = (1, D)
    for i in range(depth):
        b = f"blocks.{i}."
        shapes = {"attn1.Wqkv": (3 * D, D), "attn1.out_proj": (D, D), "attn2.q_proj": (D, D),
                  "attn2.kv_proj": (2 * D, text), "attn2.out_proj": (D, D), "mlp.fc1": (mlp, D), "mlp.fc2": (D, mlp),
                  "default_modulation.1": (D, D)}
        if i > depth // 2:
            shapes["skip_linear"] = (D, 2 * D)
        for name, (o, n) in shapes.items():
            keys[b + name + ".weight"], keys[b + name + ".bias"] = (o, n), (o,)
        norms = {"norm1": D, "norm2": D, "norm3": D, "attn1.q_norm": hd, "attn1.k_norm": hd, "attn2.q_norm": hd,
                 "attn2.k_norm": hd}
        if i > depth // 2:
            norms["skip_norm"] = 2 * D
        for name, width in norms.items():
            keys[b + name + ".weight"], keys[b + name + ".bias"] = (width,), (width,)
    return keys


def swap_halves(t):
    a, b = t.chunk(2, dim=0)
    return __import__("torch").cat([b, a], dim=0)


def original_to_diffusers(sd, depth):
    """The converter's rules (official -> diffusers), written out: split Wqkv / kv_proj, norm2 <-> norm3,
    the final layer's (shift, scale) -> (scale, shift), style_embedder rows [0:1]."""
    sd, out = dict(sd), {}
    rules = {"mlp_t5.0": "text_embedder.linear_1", "mlp_t5.2": "text_embedder.linear_2",
             "x_embedder.proj": "pos_embed.proj", "t_embedder.mlp.0": "time_extra_emb.timestep_embedder.linear_1",
             "t_embedder.mlp.2": "time_extra_emb.timestep_embedder.linear_2",
             "extra_embedder.0": "time_extra_emb.extra_embedder.linear_1",
             "extra_embedder.2": "time_extra_emb.extra_embedder.linear_2", "final_layer.linear": "proj_out"}
    for n in ("q_proj", "k_proj", "v_proj", "c_proj"):
        rules[f"pooler.{n}"] = f"time_extra_emb.pooler.{n}"
    out["text_embedding_padding"] = sd.pop("text_embedding_padding")
    out["time_extra_emb.pooler.positional_embedding"] = sd.pop("pooler.positional_embedding")
    if "style_embedder.weight" in sd:
        out["time_extra_emb.style_embedder.weight"] = sd.pop("style_embedder.weight")[0:1]
    for kind in ("weight", "bias"):
        out[f"norm_out.linear.{kind}"] = swap_halves(sd.pop(f"final_layer.adaLN_modulation.1.{kind}"))
    for i in range(depth):
        b = f"blocks.{i}."
        block_rules = {"attn1.q_norm": "attn1.norm_q", "attn1.k_norm": "attn1.norm_k", "attn1.out_proj": "attn1.to_out.0",
                       "attn2.q_proj": "attn2.to_q", "attn2.q_norm": "attn2.norm_q", "attn2.k_norm": "attn2.norm_k",
                       "attn2.out_proj": "attn2.to_out.0", "norm1": "norm1.norm", "default_modulation.1": "norm1.linear",
                       "norm2": "norm3", "norm3": "norm2", "mlp.fc1": "ff.net.0.proj", "mlp.fc2": "ff.net.2"}
        if i > depth // 2:
            block_rules.update({"skip_norm": "skip_norm", "skip_linear": "skip_linear"})
        for src, dst in block_rules.items():
            rules[b + src] = b + dst
        for kind in ("weight", "bias"):
            q, k, v = sd.pop(f"{b}attn1.Wqkv.{kind}").chunk(3, dim=0)
            k2, v2 = sd.pop(f"{b}attn2.kv_proj.{kind}").chunk(2, dim=0)
            for n, t in [("attn1.to_q", q), ("attn1.to_k", k), ("attn1.to_v", v), ("attn2.to_k", k2), ("attn2.to_v", v2)]:
                out[f"{b}{n}.{kind}"] = t
    for src, dst in rules.items():
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")
    assert not sd, f"keys the rules do not cover: {sorted(sd)[:10]}"
    return out
