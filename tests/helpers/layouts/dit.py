"""The documented key layout of an original DiT checkpoint (checkpoints.md §1.2), written out by hand
so tests can check minidit against it and write random checkpoints in exactly that layout."""
import torch


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
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in official_dit_keys(D, depth, p, input_size=input_size, **kw).items()}
    side = input_size // p
    sd["pos_embed"] = get_2d_sincos_pos_embed(D, side, base_size=side, output_type="pt").float()[None]
    return sd
