"""The memory and FLOP model of a text-to-image run, stage by stage (`python -m minidit plan`).

A pipeline run has three stages (`pipelines/pixart.py`): the text encoder, the denoiser (steps x one
CFG-doubled forward) and the VAE decode. On a GPU a stage's peak is

    peak = the weights resident on the card  +  the largest set of tensors alive at once in the stage

Weights are counted exactly: every module is built on the `meta` device (shapes, no memory) and its
parameters and buffers summed (`count_weights`), then priced in the chosen dtype. FLOPs are counted
the same way: the real forward runs on meta tensors under `torch.utils.flop_counter.FlopCounterMode`
(`count_flops`), which adds up every matmul and convolution of the actual code (2 FLOPs per
multiply-add). Only the activations need a model: the formulas below, one line per live tensor,
were read off the code (and checked tensor by tensor with `minidit.pipelines.memory.live_tensor_peak`).

Where the bytes go at 4096² for PixArt-Σ (65 536 image tokens N, width D = 1152, batch B = 2 for CFG, bf16):
  * weights: 0.61 B parameters x 2 B = 1.2 GB (the SDXL VAE beside it: 84 M x 4 B = 0.33 GB);
  * one B x N x D activation is 2 x 65 536 x 1152 x 2 B = 0.30 GB, and a block's peak is in its MLP:
    the residual stream held by the loop, the stream after attention, the modulated input, and the
    4D-wide fc1 output and its GELU: (3 + 2 x 4) x 0.30 = 3.3 GB;
  * attention: SDPA (flash / memory-efficient kernels) works in O(N) memory, its output is one more
    B x N x D tensor; the manual path materialises B x heads x N x N scores: 2 x 16 x 65 536² x 2 B
    = 275 GB per layer — nothing fits that, which is why SDPA (or windows) decides whether 4K runs;
  * so the denoiser stage needs 1.2 GB of weights + 3.5 GB of activations. The largest single item
    on the card is T5-XXL: 4.76 B parameters x 2 B (bf16) = 9.5 GB (19 GB in fp32), twice the whole
    denoising stage, for a stage that runs once per prompt. Kept resident, it sits beside every
    stage: at 4096² in bf16 the run then peaks at ~15 GiB (T5 + denoiser + VAE + the tiled decode),
    which a 24 GB card holds but a 12 GB one does not (the denoise stage alone would need 13.6 GiB);
    in fp32 even 24 GB is too small (26.8 GiB). Staged (loaded for the text stage and freed,
    `Staged` in `pipelines/common.py`) T5 never meets the denoiser's or the decoder's activations: the
    peak becomes max(T5 + weights, denoise, decode) = 10.4 GiB in bf16, 20.4 GiB in fp32;
  * the VAE decode untiled is the largest stage of all: 768 floats per output pixel (three 256-channel
    maps at full resolution at the first block of the last level) = 48 GiB in fp32 at 4096², ~69 GiB
    with cuDNN's workspace; tiled (512-px tiles) it is one tile's decode, 0.75 GiB, plus 16 B per
    pixel of blending buffers (0.25 GiB at 4096²).

Shape legend: B batch, N image tokens, L text tokens, D width, r MLP ratio, nh heads, b bytes per
element, P output pixels, c the MLP chunk (feed-forward chunking, `attention.per_token_chunks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from .hunyuan import MLP_CHUNK as HUNYUAN_MLP_CHUNK
from .mmdit import MLP_CHUNK as MMDIT_MLP_CHUNK
from .tiling import tile_starts

GiB = 2**30
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# CUDA's convolution kernels take a workspace that no tensor shows: on an NVIDIA H200 (README,
# "PixArt-Σ on a GPU") the 1024² untiled SDXL-VAE decode peaked 4.32 GiB over the resident weights,
# where the live tensors alone (`vae_decode_memory`) are 3.0 GiB. The one measured constant here.
CUDA_CONV_WORKSPACE = 1.44


@dataclass
class Estimate:
    """One stage: weights it needs resident, its activation peak (bytes) with the named terms it is
    made of, and its FLOPs."""
    name: str
    what: str
    dtype: str = "fp32"
    weights: int = 0
    activations: int = 0
    flops: float = 0.0
    terms: dict = field(default_factory=dict)
    note: str = ""


# --------------------------------------------------------------------------------------------
# Counting on the meta device: weights and FLOPs of the real code, no memory used
# --------------------------------------------------------------------------------------------

def on_meta(build):
    """`build()` (a module constructor) run on the meta device: shapes only."""
    with torch.device("meta"):
        return build().eval()


def count_weights(module) -> int:
    """Parameters + buffers (elements): what a loaded checkpoint occupies."""
    return sum(t.numel() for t in module.parameters()) + sum(t.numel() for t in module.buffers())


def count_flops(fn, *args, **kwargs) -> float:
    """FLOPs of fn(*args) (meta tensors), from the shapes of every matmul, bmm, addmm and conv."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# The denoisers: the largest set of live tensors in one block, per family
# --------------------------------------------------------------------------------------------

def attention_scores(B: int, heads: int, Nq: int, Nk: int, b: int, backend: str) -> int:
    """Bytes of the attention's N x N part. SDPA: none (its flash / memory-efficient kernels keep
    O(N) workspace). Manual (`attention.attention`'s formula written out): the scaled scores in the
    model's dtype, their float32 softmax and, below fp32, its cast back: B·nh·Nq·Nk·(b + 4 + b)."""
    if backend == "sdpa":
        return 0
    return B * heads * Nq * Nk * (b + 4 + (b if b < 4 else 0))


def pixart_activations(cfg, N: int, B: int, L: int, b: int, backend: str = "sdpa", kv_scale: int = 1) -> dict:
    """PixArt / DiT block (`pixart.PixArtBlock`, `dit.DiTBlock`): the terms of the activation peak."""
    D, r = cfg.hidden_size, cfg.mlp_ratio
    BND = B * N * D * b                                   # one (B, N, D) tensor
    mlp = (3 + 2 * r) * BND                               # x (loop), x after attention, modulated; fc1, GELU (r·D each)
    Nk = N // kv_scale**2                                 # KV compression: s x s fewer keys
    attn = 8 * BND + attention_scores(B, cfg.num_heads, N, Nk, b, backend)   # x, x_mod, qkv (3), out, merged, proj
    terms = {"block MLP (3 + 2r)·B·N·D": mlp, "self-attention 8·B·N·D + scores": attn}
    peak = max(mlp, attn)
    extra = {"position table N·D": N * D * b}
    if L:
        extra["caption tokens B·L·D"] = B * L * D * b
    return {"peak": peak + sum(extra.values()), **terms, **extra}


def mmdit_activations(cfg, N: int, B: int, L: int, b: int, backend: str = "sdpa", chunk: int = MMDIT_MLP_CHUNK) -> dict:
    """SD3 `JointBlock`: the joint attention's concatenated q, k, v over N + L tokens, or the chunked MLP."""
    D, r, q = cfg.hidden_size, cfg.mlp_ratio, 1 if cfg.qk_norm else 0
    X = 1 if cfg.x_block_self_attn_layers else 0          # MMDiT-X: a second image-only q, k, v
    BND, BLD = B * N * D * b, B * L * D * b
    attn = (BND * (1 + (3 + 2 * q) * (1 + X))             # x (loop) + fused qkv (3) [+ normalised q, k] per attention
            + BLD * (1 + 3 + 2 * q)                       # context (loop) + its qkv [+ norms]
            + 3 * B * (N + L) * D * b                     # torch.cat of q, k, v over [context, x]
            + attention_scores(B, cfg.num_heads, N + L, N + L, b, backend))
    mlp = (BND * (3 + (1 if N > chunk else 0))            # x (loop), x after attention, modulated, chunked output
           + 2 * r * B * min(N, chunk) * D * b            # fc1 + GELU of one chunk
           + 3 * BLD)                                     # the text stream beside it
    return {"peak": max(attn, mlp) + N * D * b, "joint attention (cat of q, k, v)": attn,
            f"block MLP (chunks of {chunk} tokens)": mlp, "position table N·D": N * D * b}


def hunyuan_activations(cfg, N: int, B: int, L: int, b: int, backend: str = "sdpa",
                        chunk: int = HUNYUAN_MLP_CHUNK) -> dict:
    """Hunyuan-DiT: the U-ViT long skips + one block's peak. The peak is in the first block that pops a
    skip (layer depth/2 + 1): all depth/2 - 1 skips are alive (the popped one is the block's argument),
    with the caller's x, the mixed x = skip_linear([x, skip]) and the self-attention's tensors."""
    D, r, hd = cfg.hidden_size, cfg.mlp_ratio, cfg.head_dim
    BND, BND32 = B * N * D * b, B * N * D * 4
    skips = (cfg.depth // 2 - 1) * BND                    # layers 0..depth/2-2, alive in the middle of the net
    held = 2 * BND                                        # the caller's x and the mixed x
    attn = (BND * (1 + 3 + 2 + 1)                         # x_in, fused qkv, q/k LayerNorms, rotated q
            + BND32 * (3 + (1 if b < 4 else 0))           # RoPE in float32: x·cos, the rotated pairs, ·sin (+ upcast)
            + attention_scores(B, cfg.num_heads, N, N, b, backend))
    mlp = BND * (1 + 1 + (1 if N > chunk else 0)) + 2 * r * B * min(N, chunk) * D * b   # x after attn, norm2, out
    rope = 2 * N * hd * 4                                 # cos, sin tables (N, hd) in float32
    text = B * L * cfg.text_states_dim * b                # the cross-attention's keys [BERT | mlp_t5(mT5)]
    return {"peak": skips + held + max(attn, mlp) + rope + text, "long skips (depth/2 - 1)·B·N·D": skips,
            "self-attention with RoPE": attn, "block MLP (chunked)": mlp}


# --------------------------------------------------------------------------------------------
# Text encoders: T5 (PixArt, SD3), mT5 (Hunyuan), CLIP (SD3), BERT (Hunyuan)
# --------------------------------------------------------------------------------------------

def t5_activations(cfg, L: int, B: int, b: int) -> dict:
    """T5 block (`text.t5.T5Block`): the gated feed-forward's three F-wide tensors (GELU(wi_0 x),
    wi_1 x, their product), four (B, L, D) ones (the embedding the stack keeps, the block input, the
    attention residual, the RMSNorm output), and the position bias + padding mask (B, nh, L, L).
    (Only a tiny model peaks earlier, in `relative_position_bucket`'s int64 L x L temporaries.)"""
    ff = B * L * (4 * cfg.d_model + 3 * cfg.d_ff) * b
    bias = B * cfg.num_heads * L * L * b
    buckets = 6 * L * L * 8 + L * cfg.d_model * b         # computing the buckets: six int64 L x L temporaries
    return {"peak": max(ff + bias, buckets), "feed-forward B·L·(4D + 3F)": ff, "position bias B·nh·L²": bias}


def encoder_activations(D: int, F: int, heads: int, L: int, B: int, b: int) -> dict:
    """A BERT / CLIP layer (77 tokens: small): four (B, L, D), two (B, L, F) and the mask (B, nh, L, L)."""
    return {"peak": B * L * (4 * D + 2 * F) * b + B * heads * L * L * b}


# --------------------------------------------------------------------------------------------
# The VAE decoder: full-resolution convolutions, untiled or tiled
# --------------------------------------------------------------------------------------------

def resnet_peak(c_in: int, c_out: int, pixels: int, copy: bool = False) -> int:
    """Elements alive at a ResnetBlock's peak (`vae.ResnetBlock`): the input with GroupNorm's output
    and its SiLU (3·C_in), the input + SiLU + conv1's output (2·C_in + C_out), or the input with conv1's
    output, the norm/SiLU of it and conv2's (C_in + 3·C_out). `copy`: the CPU's oneDNN convolution
    first copies its input into a blocked layout (+ C_in during conv1, + C_out during conv2)."""
    k = 1 if copy else 0
    return max(3 * c_in, (2 + k) * c_in + c_out, c_in + (3 + k) * c_out) * pixels


def decoder_peak_elements(vae_cfg, h: int, w: int, copy: bool = False) -> int:
    """The decoder's largest live set for an h x w latent: walked level by level, deepest first
    (`vae.Decoder.forward`): the mid block at the latent size (ResNets + single-head attention
    over h·w tokens: x, normalised tokens, q, k, v, output ~ 6·C·h·w), then each level's ResNets
    and its upsampler (the input, the nearest-x2 copy and the conv's output [+ oneDNN's copy of
    the conv's input]). For the SDXL VAE the peak is the first ResNet of the last level: its
    256-channel input, GroupNorm and SiLU at full resolution, 768 floats per output pixel (896 on
    the CPU, with the blocked copy)."""
    widths = [vae_cfg.ch * m for m in vae_cfg.ch_mult]
    c = widths[-1]
    f = 2 ** (len(widths) - 1)
    peaks = [resnet_peak(c, c, h * w, copy), 6 * c * h * w]
    for i in reversed(range(len(widths))):                # up[i] works at (h, w) * 2^(levels-1-i)
        pixels = h * w * (f // 2**i) ** 2
        for j in range(vae_cfg.num_res_blocks + 1):
            peaks.append(resnet_peak(c if j == 0 else widths[i], widths[i], pixels, copy))
        c = widths[i]
        if i > 0:                                         # the upsampler: input + x2 copy + conv output (+ copy)
            peaks.append((1 + 4 + 4 + (4 if copy else 0)) * c * pixels)
    peaks.append((c + vae_cfg.ch + vae_cfg.out_ch) * h * w * f * f)   # norm_out, SiLU, conv_out
    return max(peaks)


def vae_decode_memory(vae_cfg, h: int, w: int, b: int, tile: int | None = None, overlap: int = 0,
                      cpu: bool = False) -> dict:
    """Bytes of a decode of one (h, w) latent. Tiled (`tiling.tiled_apply`): one tile's decode, the
    float32 output and weight-sum buffers of the whole image (3·4 + 4 = 16 B per pixel), the weighted
    tile being added (2 x 3·4 B per tile pixel) and, below fp32, the final cast (3·b per pixel).
    `cpu`: with oneDNN's blocked copies of the convolutions' inputs (`resnet_peak`)."""
    f = vae_cfg.downsample_factor
    P = h * w * f * f
    if tile is None or (h <= tile and w <= tile):
        whole = decoder_peak_elements(vae_cfg, h, w, cpu) * b
        return {"peak": whole, "untiled decode": whole}
    th, tw = min(tile, h), min(tile, w)
    one_tile = decoder_peak_elements(vae_cfg, th, tw, cpu) * b
    blend = 16 * P + 2 * 12 * th * tw * f * f + (3 * b * P if b < 4 else 0)
    return {"peak": one_tile + blend, f"one {th * f}x{tw * f}-px tile": one_tile, "blending buffers 16 B/px": blend}


def tile_count(length: int, tile: int, overlap: int) -> int:
    """How many tiles (or windows) of `tile` with `overlap` cover `length` (`tiling.tile_starts`)."""
    return len(tile_starts(length, tile, overlap))


def gib(n: float) -> float:
    return n / GiB
