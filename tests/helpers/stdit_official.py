"""Open-Sora 1.0's STDiT forward (hpcaitech/Open-Sora v1.0 `opensora/models/stdit/stdit.py`,
`opensora/models/layers/blocks.py`), written out from the official code as the oracle of
tests/test_stdit.py: it reads a state dict in the official layout and uses nothing from minidit.
No Open-Sora package can be imported (it needs colossalai, xformers, flash-attn and CUDA), so the
equations are restated here with the official shapes and einops patterns; xformers'
BlockDiagonalMask cross-attention over the flattened real caption tokens is written per sample.
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from helpers.layouts.opensora import official_pos_embed, official_pos_embed_temporal


def _linear(sd, name, x):
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])


def _mha(sd, name, x, heads):
    """blocks.Attention (the non-flash path): qkv -> (3, B, nh, N, hd), softmax(q*scale @ k^T) @ v, proj."""
    B, N, C = x.shape
    q, k, v = _linear(sd, name + ".qkv", x).view(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
    attn = ((q * (C // heads) ** -0.5) @ k.transpose(-2, -1)).float().softmax(dim=-1).to(q.dtype)
    return _linear(sd, name + ".proj", (attn @ v).transpose(1, 2).reshape(B, N, C))


def _cross(sd, name, x, y, y_lens, heads):
    """MultiHeadCrossAttention: every sample's N queries attend to its own y_lens[b] caption tokens."""
    B, N, C = x.shape
    q = _linear(sd, name + ".q_linear", x)
    outs, start = [], 0
    for b in range(B):
        cond = y[start:start + y_lens[b]]
        start += y_lens[b]
        k, v = _linear(sd, name + ".kv_linear", cond).view(-1, 2, heads, C // heads).unbind(1)   # (L_b, nh, hd)
        qb = q[b].view(N, heads, C // heads)
        scores = torch.einsum("nhd,lhd->hnl", qb, k) / math.sqrt(C // heads)
        outs.append(torch.einsum("hnl,lhd->nhd", scores.softmax(-1), v).reshape(N, C))
    return _linear(sd, name + ".proj", torch.stack(outs))


def _t2i_modulate(x, shift, scale):
    return x * (1 + scale) + shift


def _layernorm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def _timestep_embedding(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)


def official_stdit_forward(sd, x, timestep, y, mask, *, depth, heads, patch, space_scale=1.0, time_scale=1.0):
    """STDiT.forward(x (B, C, T, H, W), timestep (B,), y (B, 1, L, C_cap), mask (B, L)) -> (B, C_out, T, H, W)."""
    D = sd["x_embedder.proj.weight"].shape[0]
    x = F.conv3d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=patch)   # PatchEmbed3D
    _, _, Nt, Nh, Nw = x.shape
    T, S = Nt, Nh * Nw
    x = x.flatten(2).transpose(1, 2)                                                         # BCTHW -> BNC
    x = rearrange(x, "B (T S) C -> B T S C", T=T, S=S)
    x = x + official_pos_embed(D, Nh, Nw, space_scale)
    x = rearrange(x, "B T S C -> B (T S) C")
    t = _linear(sd, "t_embedder.mlp.2", F.silu(_linear(sd, "t_embedder.mlp.0", _timestep_embedding(timestep))))
    t_mlp = _linear(sd, "t_block.1", F.silu(t))
    y = _linear(sd, "y_embedder.y_proj.fc2",
                F.gelu(_linear(sd, "y_embedder.y_proj.fc1", y), approximate="tanh"))                # (B, 1, L, D)
    y = y.squeeze(1).masked_select(mask.unsqueeze(-1) != 0).view(-1, D)                      # real tokens
    y_lens = mask.sum(dim=1).tolist()
    tpe_table = official_pos_embed_temporal(D, T, time_scale)
    B = x.shape[0]
    for i in range(depth):
        b = f"blocks.{i}."
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            sd[b + "scale_shift_table"][None] + t_mlp.reshape(B, 6, -1)).chunk(6, dim=1)
        x_m = _t2i_modulate(_layernorm(x), shift_msa, scale_msa)
        x_s = rearrange(x_m, "B (T S) C -> (B T) S C", T=T, S=S)
        x_s = rearrange(_mha(sd, b + "attn", x_s, heads), "(B T) S C -> B (T S) C", T=T, S=S)
        x = x + gate_msa * x_s
        x_t = rearrange(x, "B (T S) C -> (B S) T C", T=T, S=S)
        if i == 0:
            x_t = x_t + tpe_table
        x_t = rearrange(_mha(sd, b + "attn_temp", x_t, heads), "(B S) T C -> B (T S) C", T=T, S=S)
        x = x + gate_msa * x_t
        x = x + _cross(sd, b + "cross_attn", x, y, y_lens, heads)
        x_m = _t2i_modulate(_layernorm(x), shift_mlp, scale_mlp)
        x = x + gate_mlp * _linear(sd, b + "mlp.fc2", F.gelu(_linear(sd, b + "mlp.fc1", x_m), approximate="tanh"))
    shift, scale = (sd["final_layer.scale_shift_table"][None] + t[:, None]).chunk(2, dim=1)
    x = _linear(sd, "final_layer.linear", _t2i_modulate(_layernorm(x), shift, scale))
    pt, ph, pw = patch
    return rearrange(x, "B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p) (N_h H_p) (N_w W_p)",
                     N_t=Nt, N_h=Nh, N_w=Nw, T_p=pt, H_p=ph, W_p=pw)
