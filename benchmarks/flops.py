"""The FLOP floor of a GPU run: how much arithmetic PixArt's denoising does, and how fast the card could do it.

A measured time means little alone; against the card's arithmetic it says how much is left to gain:

    floor (s)  = FLOPs of the work / the card's dense bf16 peak (FLOP/s)
    fraction   = floor / measured time          (1.0 = every tensor core busy all the time)

FLOPs are hardware floating-point operations: one multiply-accumulate (MAC) = 2 FLOPs. (DiT's paper
and PixArt's report count "Gflops" that are MACs.) The count is that of the matrix products, which
is what tensor cores run; norms, activations and the softmax are left out (they are memory-bound and
small in count).

PixArt's MACs per sample and forward (N image tokens, M caption tokens, d width, L blocks, patch p,
caption width C, latent channels c_in in / c_out out), term by term:
    patch embedding        N p² c_in d           (a p x p convolution = one linear per token)
    timestep MLP + t_block 256 d + d² + 6 d²      (sin-cos 256 -> d -> d, then d -> 6 d adaLN table)
    caption MLP            M (C d + d²)           (T5 width C -> d -> d)
    per block              14 d² N                (q k v o: 4 d² N; the MLP d -> 4d -> d: 8 d² N;
                                                   the cross-attention query and output: 2 d² N)
                         + 2 N² d                 (self-attention: Q Kᵀ and the weighted sum of V)
                         + 2 d² M                 (cross-attention keys and values of the caption)
                         + 2 N M d                (cross-attention: scores and the weighted sum)
    final linear           N d p² c_out
The four block terms are the usual short formula, MAC ≈ L (14 d² N + 2 N² d + 2 d² M + 2 N M d). With
d = 1152, L = 28, M = 300: 1024² (N = 4096) is 3.31 TMAC a sample-forward; 20 steps with CFG (batch 2)
are 265 TFLOP; 2048² 2.09 PFLOP; 4096² 25.0 PFLOP (the N² attention term is 89 % of it). Sliding
windows run `windows` forwards of a window's N instead (tests/test_benchmark_hires.py checks the count
against torch's FlopCounterMode).

Peaks (`PEAK_TFLOPS`): NVIDIA's dense (no 2:4 sparsity) bf16 tensor-core figures from the data sheets.
A measured 8192³ bf16 matmul on an H200 reaches ~790 of its 989, so fractions above ~0.8 are not to
be expected.
"""
from __future__ import annotations

from minidit.errors import InputError

# Dense bf16 TFLOP/s by a substring of `torch.cuda.get_device_name()`, most specific first
# ("H100 PCIe" before "H100", "A100" never matched by "A10").
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),            # SXM; "NVIDIA H100 80GB HBM3"
    ("H200", 989.0),
    ("A100", 312.0),            # SXM and PCIe, 40 and 80 GB
    ("RTX 4090", 165.0),        # GeForce, dense with fp32 accumulation: 165 (330 with fp16 accumulation)
)


def card_peak_tflops(device_name: str, override: float | None = None) -> float:
    """The dense bf16 peak (TFLOP/s) of the card called `device_name`, or `override` (--peak-tflops).
    InputError for a card not in PEAK_TFLOPS without an override."""
    if override is not None:
        if not override > 0:
            raise InputError(f"--peak-tflops must be a positive number of TFLOP/s, got {override!r}")
        return float(override)
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    known = ", ".join(f"{k} {v:g}" for k, v in PEAK_TFLOPS)
    raise InputError(f"unknown card {device_name!r}: pass --peak-tflops with its dense bf16 tensor-core peak "
                     f"(TFLOP/s, from NVIDIA's data sheet, without sparsity); known: {known}")


def pixart_forward_macs(tokens: int, *, depth: int = 28, hidden: int = 1152, caption_tokens: int = 300,
                        caption_channels: int = 4096, patch: int = 2, in_channels: int = 4,
                        out_channels: int = 8) -> int:
    """Multiply-accumulates of one PixArt forward of ONE sample with `tokens` image tokens (see above)."""
    N, d, M = tokens, hidden, caption_tokens
    embeddings = N * patch * patch * in_channels * d + 256 * d + d * d + 6 * d * d + M * (caption_channels * d + d * d)
    blocks = depth * (14 * d * d * N + 2 * N * N * d + 2 * d * d * M + 2 * N * M * d)
    return embeddings + blocks + N * d * patch * patch * out_channels


def denoise_flops(tokens_per_forward: int, *, steps: int, batch: int = 2, windows: int = 1, **shape) -> int:
    """Hardware FLOPs of a denoising run: `steps` network calls of `batch` samples (2 with CFG) on
    `windows` windows of `tokens_per_forward` tokens each (windows = 1: the whole latent)."""
    return 2 * steps * batch * windows * pixart_forward_macs(tokens_per_forward, **shape)


def floor_fraction(flops: float, seconds: float, peak_tflops: float) -> float:
    """(FLOPs / peak) / seconds: the share of the card's peak the run achieved."""
    if not seconds > 0:
        raise InputError(f"a measured time must be positive, got {seconds!r}")
    return flops / (peak_tflops * 1e12) / seconds
