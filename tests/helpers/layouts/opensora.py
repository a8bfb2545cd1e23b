"""Open-Sora 1.0 STDiT: the `.pth` layout, written out by hand from the official module structure
(hpcaitech/Open-Sora v1.0 `opensora/models/stdit/stdit.py STDiT / STDiTBlock`, `layers/blocks.py`),
independently of minidit and weights_loader, with the two fixed tables the file stores computed by the
official formulas (numpy's MAE code, restated in torch float64)."""
import torch


def official_1d_sincos(embed_dim: int, pos) -> torch.Tensor:
    """get_1d_sincos_pos_embed_from_grid: omega = 1 / 10000^(arange(D/2) / (D/2)); [sin | cos]."""
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0))
    out = torch.as_tensor(pos, dtype=torch.float64).reshape(-1)[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def official_pos_embed(embed_dim: int, h: int, w: int, scale: float) -> torch.Tensor:
    """STDiT.get_spatial_pos_embed: grid = meshgrid(arange(w)/scale, arange(h)/scale) ("w goes first"),
    the first D/2 channels encode grid[0] (the column), the last D/2 grid[1] (the row): (1, h*w, D)."""
    gw = torch.arange(w, dtype=torch.float32).double() / scale
    gh = torch.arange(h, dtype=torch.float32).double() / scale
    grid_w, grid_h = torch.meshgrid(gw, gh, indexing="xy")           # numpy's meshgrid: (h, w) arrays
    emb = torch.cat([official_1d_sincos(embed_dim // 2, grid_w), official_1d_sincos(embed_dim // 2, grid_h)], dim=1)
    return emb.float()[None]


def official_pos_embed_temporal(embed_dim: int, frames: int, scale: float) -> torch.Tensor:
    """STDiT.get_temporal_pos_embed: np.arange(0, F) / time_scale -> (1, F, D)."""
    return official_1d_sincos(embed_dim, torch.arange(frames, dtype=torch.float64) / scale).float()[None]


def documented_stdit_keys(D: int, depth: int, in_channels: int, patch, frames: int, h: int, w: int,
                          tokens: int, caption_channels: int, pred_sigma: bool = True, mlp_ratio: int = 4) -> dict:
    """{key: shape} of an Open-Sora 1.0 .pth: frames/h/w the training token grid, tokens the T5 length."""
    pt, ph, pw = patch
    out = (2 if pred_sigma else 1) * in_channels * pt * ph * pw
    keys = {"pos_embed": (1, h * w, D), "pos_embed_temporal": (1, frames, D),
            "x_embedder.proj.weight": (D, in_channels, pt, ph, pw), "x_embedder.proj.bias": (D,),
            "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
            "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
            "t_block.1.weight": (6 * D, D), "t_block.1.bias": (6 * D,),
            "y_embedder.y_embedding": (tokens, caption_channels),
            "y_embedder.y_proj.fc1.weight": (D, caption_channels), "y_embedder.y_proj.fc1.bias": (D,),
            "y_embedder.y_proj.fc2.weight": (D, D), "y_embedder.y_proj.fc2.bias": (D,),
            "final_layer.scale_shift_table": (2, D),
            "final_layer.linear.weight": (out, D), "final_layer.linear.bias": (out,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys[b + "scale_shift_table"] = (6, D)
        for name, (o, n) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "cross_attn.q_linear": (D, D),
                             "cross_attn.kv_linear": (2 * D, D), "cross_attn.proj": (D, D),
                             "mlp.fc1": (mlp_ratio * D, D), "mlp.fc2": (D, mlp_ratio * D),
                             "attn_temp.qkv": (3 * D, D), "attn_temp.proj": (D, D)}.items():
            keys[b + name + ".weight"], keys[b + name + ".bias"] = (o, n), (o,)
    return keys
