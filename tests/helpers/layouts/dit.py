"""DiT: the documented key layout of an original checkpoint (docs/checkpoints.md#dit-original-checkpoint-pt) and the rename rules
to diffusers' DiTTransformer2DModel (docs/checkpoints.md#dit-diffusers-layout-and-rename-rules), written out by hand so tests can check minidit against
them and write random checkpoints in exactly that layout."""

from helpers.weights import random_state_dict


def official_dit_keys(D, depth, p, C=4, input_size=32, num_classes=1000, learn_sigma=True):
    """{key: shape} of an original `DiT-*.pt` state dict (incl. the stored `pos_embed`)."""
    T, out = (input_size // p) ** 2, (2 * C if learn_sigma else C)
    keys = {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,), "pos_embed": (1, T, D),
            "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
            "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
            "y_embedder.embedding_table.weight": (num_classes + 1, D),
            "final_layer.adaLN_modulation.1.weight": (2 * D, D), "final_layer.adaLN_modulation.1.bias": (2 * D,),
            "final_layer.linear.weight": (p * p * out, D), "final_layer.linear.bias": (p * p * out,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                     b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                     b + "mlp.fc1.weight": (4 * D, D), b + "mlp.fc1.bias": (4 * D,),
                     b + "mlp.fc2.weight": (D, 4 * D), b + "mlp.fc2.bias": (D,),
                     b + "adaLN_modulation.1.weight": (6 * D, D), b + "adaLN_modulation.1.bias": (6 * D,)})
    return keys


def random_original_dit(D, depth, p, input_size, seed=0, **kw):
    """Random weights in the original layout; `pos_embed` is the sin-cos table computed by diffusers'
    independent implementation (what the official code stores)."""
    from diffusers.models.embeddings import get_2d_sincos_pos_embed
    sd = random_state_dict(official_dit_keys(D, depth, p, input_size=input_size, **kw), seed, 0.05)
    side = input_size // p
    sd["pos_embed"] = get_2d_sincos_pos_embed(D, side, base_size=side, output_type="pt").float()[None]
    return sd


def original_to_diffusers(sd, depth=28):
    """An original state dict in diffusers' layout (docs/checkpoints.md#dit-diffusers-layout-and-rename-rules): q/k/v split, and the one
    timestep/label embedder copied into every block (diffusers stores it per block)."""
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    for i in range(depth):
        a, b = f"transformer_blocks.{i}.", f"blocks.{i}."
        emb = a + "norm1.emb."
        out[emb + "timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"]
        out[emb + "timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"]
        out[emb + "timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"]
        out[emb + "timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"]
        out[emb + "class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        for kind in ("weight", "bias"):
            q, k, v = sd[b + f"attn.qkv.{kind}"].chunk(3)
            out[a + f"attn1.to_q.{kind}"], out[a + f"attn1.to_k.{kind}"], out[a + f"attn1.to_v.{kind}"] = q, k, v
            out[a + f"attn1.to_out.0.{kind}"] = sd[b + f"attn.proj.{kind}"]
            out[a + f"ff.net.0.proj.{kind}"] = sd[b + f"mlp.fc1.{kind}"]
            out[a + f"ff.net.2.{kind}"] = sd[b + f"mlp.fc2.{kind}"]
            out[a + f"norm1.linear.{kind}"] = sd[b + f"adaLN_modulation.1.{kind}"]
    return out
