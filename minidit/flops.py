"""FLOPs of every model minidit builds, term by term, and the floor a card's peak sets on a run.

A measured time means little alone; against the card's arithmetic it says how much is left to gain:

    floor (s)  = FLOPs of the work / the card's dense bf16 peak (FLOP/s)
    fraction   = floor / measured time          (1.0 = every tensor core busy all the time)

Units: a MAC is one multiply-accumulate; hardware FLOPs = 2 x MACs. DiT's paper (arXiv:2212.09748,
Table 1, "Gflops") and PixArt-α's report count MACs. Only matrix products and convolutions are counted
(what tensor cores run); norms, activations, softmax, RoPE and the sin-cos tables are left out: memory
bound and small in count. That is also what `torch.utils.flop_counter.FlopCounterMode` counts, the
independent check of every formula here (`tests/test_flops.py`: the real modules, full size, on the
meta device, equal to the count).

Glossary (symbol | code name): N image tokens | tokens (F frames x S tokens_per_frame for videos);
M or L text tokens | caption_tokens, text_tokens; D | hidden_size; H the MLP width | mlp_hidden();
p | patch_size; c_in, c_out | in_channels, out_channels; depth | depth (Latte: num_layers).

Every `*_macs` function returns the MACs of ONE forward of ONE sample as a `Cost` of six terms:
    embed      patch embedding N p² c_in D, the timestep MLP 256 D + D², the other conditions, and
               the projection of the text states to the width (PixArt: M (C_cap D + D²))
    modulation adaLN linears on the global vector, N-free (DiT: 6 D² a block; PixArt: one 6 D²)
    linear     per-token projections and MLPs in the blocks, ∝ N: q k v o 4 D² N + MLP 2 D H N (H = 4 D:
               the familiar 12 D² N); cross-attention's query and output 2 D² N
    attention  self-attention QKᵀ and the weighted sum of V: 2 N² D  (the only N² term; for videos
               factorised into 2 F S² D within frames + 2 S F² D across them; MM-DiT: 2 (N+L)² D)
    cross      cross-attention to the text: keys and values of the M text tokens 2 D_text D M, and
               scores + weighted sum 2 N M D
    output     the final linear N D p² c_out
Per family, what differs (each function says it again):
    DiT        depth (12 D² N + 2 N² D + 6 D²)                                  (arXiv:2212.09748)
    PixArt     depth (14 D² N + 2 N² D + 2 D² M + 2 N M D) + embeddings         (arXiv:2310.00426, 2403.04692)
               KV compression s: keys/values of N/s² tokens (+ a depthwise s x s conv, 2 N D)
    MM-DiT     both streams get the block's linears: 12 D² (N + L); joint attention 2 (N+L)² D; the last
               text block stops after its q k v; SD3.5-medium's 13 MMDiT-X layers add an image-only
               attention 4 D² N + 2 N² D                                        (arXiv:2403.03206)
    Hunyuan    MLP 4.36 D; shift-only modulation D² a block; long skips 2 D² N in the 19 upper blocks;
               cross-attention to 333 tokens of width 1024; mT5's MLP and the attention pool  (arXiv:2405.08748)
    STDiT      spatial + temporal attention in each of 28 blocks (two q k v o sets)   (Open-Sora 1.0)
    STDiT3     28 spatial and 28 temporal PixArt blocks, each with its cross-attention (Open-Sora 1.2)
    Latte      28 spatial PixArt blocks and 28 temporal ones without cross-attention; the caption's
               keys and values are computed once per FRAME (the caption is repeated per frame) (arXiv:2401.03048)
Text encoders (`text_macs`: T5, CLIP, BERT) and the VAE decoder (`vae_decode_macs`) are counted the same
way; `image_cost` puts a run together: steps x (2 with CFG) x forward + the text encoders (prompt and,
with CFG, the negative prompt) + the decode of each frame.

At PixArt-Σ's width (D = 1152, 28 blocks, M = 300) a 1024² image (N = 4096) is 3.32 TMAC a forward;
20 steps with CFG 265 TFLOP; at 4096² (N = 65 536) the N² term is 89 % of the forward.

Peaks (`CARDS`): NVIDIA's data sheets give the bf16 tensor-core rate dense and "with sparsity"
(2:4 structured sparsity, twice the dense figure, which no dense matmul reaches). The floors use
the dense figure. GeForce cards run bf16 only with fp32 accumulation: the RTX 4090's 165.2 TFLOP/s
(330.3 is its fp16 rate with fp16 accumulation). A measured 8192³ bf16 matmul on an H200 reaches ~790
of its 989, so fractions above ~0.8 are not to be expected.
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

from .dit import DiTConfig, PRESETS as DIT_PRESETS
from .errors import InputError
from .hunyuan import SIZE_DIMS, SIZE_FREQS, HunyuanConfig, PRESETS as HUNYUAN_PRESETS
from .latte import CAPTION_TOKENS as LATTE_CAPTION_TOKENS, LatteConfig, PRESETS as LATTE_PRESETS
from .mmdit import MMDiTConfig, PRESETS as MMDIT_PRESETS
from .pixart import PixArtConfig, PRESETS as PIXART_PRESETS
from .stdit import STDiTConfig, PRESETS as STDIT_PRESETS
from .stdit3 import STDiT3Config, PRESETS as STDIT3_PRESETS
from .text.bert import BertConfig
from .text.clip import CLIPTextConfig
from .text.t5 import T5Config
from .vae import VAEConfig

FREQ = 256                 # every sinusoidal embedding (timestep, sizes, fps) is 256-d before its MLP
SD3_TEXT_TOKENS = 154      # MM-DiT's context as the official sampler builds it: CLIP 77 | T5 77
HUNYUAN_TEXT_TOKENS = 77 + 256
FAMILIES = {"DiT": DIT_PRESETS, "PixArt": PIXART_PRESETS, "MM-DiT": MMDIT_PRESETS, "Hunyuan-DiT": HUNYUAN_PRESETS,
            "STDiT": STDIT_PRESETS, "STDiT3": STDIT3_PRESETS, "Latte": LATTE_PRESETS}
VIDEO = (STDiTConfig, STDiT3Config, LatteConfig)


@dataclass(frozen=True)
class Cost:
    """MACs of one forward of one sample, by term (see the module docstring)."""
    embed: int = 0
    modulation: int = 0
    linear: int = 0
    attention: int = 0
    cross: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return sum(astuple(self))

    @property
    def flops(self) -> int:
        return 2 * self.total

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def presets():
    """(family, preset name, config) for every preset of every family."""
    return [(family, name, cfg) for family, table in FAMILIES.items() for name, cfg in table.items()]


def timestep_macs(D: int) -> int:
    """sin-cos 256 -> D -> D (`embed.TimestepEmbedder`)."""
    return FREQ * D + D * D


def mlp_hidden(D: int, ratio: float) -> int:
    return int(D * ratio)


# --------------------------------------------------------------------------------------------
# Image denoisers
# --------------------------------------------------------------------------------------------

def dit_macs(c: DiTConfig, tokens: int) -> Cost:
    """DiT: adaLN-Zero (a D -> 6D linear per block, D -> 2D in the final layer); the class label is a lookup."""
    N, D, p, H = tokens, c.hidden_size, c.patch_size, mlp_hidden(c.hidden_size, c.mlp_ratio)
    return Cost(embed=N * p * p * c.in_channels * D + timestep_macs(D),
                modulation=c.depth * 6 * D * D + 2 * D * D,
                linear=c.depth * (4 * D * D * N + 2 * D * H * N),
                attention=c.depth * 2 * N * N * D,
                output=N * D * p * p * c.out_channels)


def pixart_macs(c: PixArtConfig, tokens: int, caption_tokens: int | None = None, grid: tuple[int, int] | None = None) -> Cost:
    """PixArt-α/Σ: adaLN-single (one D -> 6D), cross-attention to M T5 tokens (M = model_max_length:
    120 α, 300 Σ). With KV compression s (`kv_compress_config`, conv sampling) a compressed block's
    keys and values are the N / s² tokens of a depthwise s x s conv (N D MACs for each of k and v)."""
    N, D, p, M = tokens, c.hidden_size, c.patch_size, caption_tokens or c.model_max_length
    H = mlp_hidden(D, c.mlp_ratio)
    micro = 3 * timestep_macs(D // 3) if c.micro_condition else 0        # sizes (h, w) and the aspect ratio
    attention = 0
    for i in range(c.depth):
        s = c.sr_ratio(i)
        attention += 2 * N * (N // (s * s)) * D + (2 * N * D if s > 1 and c.kv_compress_config.sampling == "conv" else 0)
    return Cost(embed=N * p * p * c.in_channels * D + timestep_macs(D) + micro + M * (c.caption_channels * D + D * D),
                modulation=6 * D * D,
                linear=c.depth * (4 * D * D * N + 2 * D * H * N + 2 * D * D * N),
                attention=attention,
                cross=c.depth * (2 * D * D * M + 2 * N * M * D),
                output=N * D * p * p * c.out_channels)


def mmdit_macs(c: MMDiTConfig, tokens: int, text_tokens: int = SD3_TEXT_TOKENS) -> Cost:
    """MM-DiT (SD3, SD3.5): two streams, each with DiT's block weights, one joint attention over
    N + L tokens. The last layer's text stream is `pre_only` (adaLN D -> 2D, q k v, nothing after);
    MMDiT-X layers (SD3.5-medium) add an image-only attention (q k v o, its own N² scores, adaLN 9D)."""
    N, L, D, p = tokens, text_tokens, c.hidden_size, c.patch_size
    H = mlp_hidden(D, c.mlp_ratio)
    block = 4 * D * D + 2 * D * H                                        # per token of a full stream
    x_attn2 = len(c.x_block_self_attn_layers)
    modulation = (c.depth - 1) * 12 * D * D + (6 + 2) * D * D + x_attn2 * 3 * D * D + 2 * D * D
    linear = c.depth * block * N + (c.depth - 1) * block * L + 3 * D * D * L + x_attn2 * 4 * D * D * N
    return Cost(embed=N * p * p * c.in_channels * D + timestep_macs(D) + c.adm_in_channels * D + D * D
                + L * c.context_dim * D,
                modulation=modulation, linear=linear,
                attention=c.depth * 2 * (N + L) ** 2 * D + x_attn2 * 2 * N * N * D,
                output=N * D * p * p * c.out_channels)


def hunyuan_macs(c: HunyuanConfig, tokens: int) -> Cost:
    """Hunyuan-DiT: text = [CLIP 77 ‖ mlp_t5(mT5 256)] of width 1024; the attention pool over mT5's
    tokens and the extra MLP (D -> 4D -> D) make the global vector; a D -> D shift per block; long
    skips (a 2D -> D linear) in the blocks i > depth/2; the final layer's adaLN D -> 2D."""
    N, D, p, H = tokens, c.hidden_size, c.patch_size, mlp_hidden(c.hidden_size, c.mlp_ratio)
    T5, Lt, L = c.text_states_dim_t5, c.text_len_t5, c.text_len + c.text_len_t5
    mlp_t5 = Lt * (T5 * 4 * T5 + 4 * T5 * c.text_states_dim)
    pool = T5 * T5 + 2 * (Lt + 1) * T5 * T5 + 2 * (Lt + 1) * T5 + T5 * c.pooled_dim   # q (1 token), k v, attend, c_proj
    extra_in = c.pooled_dim + (SIZE_DIMS * SIZE_FREQS + D if c.size_cond else 0)
    skips = c.depth - 1 - c.depth // 2
    return Cost(embed=N * p * p * c.in_channels * D + timestep_macs(D) + mlp_t5 + pool + extra_in * 4 * D + 4 * D * D,
                modulation=c.depth * D * D + 2 * D * D,
                linear=c.depth * (4 * D * D * N + 2 * D * D * N + 2 * D * H * N) + skips * 2 * D * D * N,
                attention=c.depth * 2 * N * N * D,
                cross=c.depth * (2 * c.text_states_dim * D * L + 2 * N * L * D),
                output=N * D * p * p * c.out_channels)


# --------------------------------------------------------------------------------------------
# Video denoisers: F token frames of S tokens each, N = F S
# --------------------------------------------------------------------------------------------

def _tubelet(c) -> int:
    return math.prod(c.patch_size)


def stdit_macs(c: STDiTConfig, frames: int, tokens_per_frame: int, caption_tokens: int | None = None) -> Cost:
    """STDiT (Open-Sora 1.0): PixArt-α blocks with a second self-attention (q k v o) across the F frames."""
    F, S, D, M = frames, tokens_per_frame, c.hidden_size, caption_tokens or c.model_max_length
    N, H = F * S, mlp_hidden(D, c.mlp_ratio)
    return Cost(embed=N * _tubelet(c) * c.in_channels * D + timestep_macs(D) + M * (c.caption_channels * D + D * D),
                modulation=6 * D * D,
                linear=c.depth * (8 * D * D * N + 2 * D * D * N + 2 * D * H * N),
                attention=c.depth * (2 * F * S * S * D + 2 * S * F * F * D),
                cross=c.depth * (2 * D * D * M + 2 * N * M * D),
                output=N * D * _tubelet(c) * c.out_channels)


def stdit3_macs(c: STDiT3Config, frames: int, tokens_per_frame: int, caption_tokens: int | None = None) -> Cost:
    """STDiT3 (Open-Sora 1.2): depth spatial + depth temporal PixArt blocks, each with cross-attention;
    the fps condition is a second 256-d sinusoid MLP."""
    F, S, D, M = frames, tokens_per_frame, c.hidden_size, caption_tokens or c.model_max_length
    N, H = F * S, mlp_hidden(D, c.mlp_ratio)
    return Cost(embed=N * _tubelet(c) * c.in_channels * D + 2 * timestep_macs(D) + M * (c.caption_channels * D + D * D),
                modulation=6 * D * D,
                linear=2 * c.depth * (6 * D * D * N + 2 * D * H * N),
                attention=c.depth * (2 * F * S * S * D + 2 * S * F * F * D),
                cross=2 * c.depth * (2 * D * D * M + 2 * N * M * D),
                output=N * D * _tubelet(c) * c.out_channels)


def latte_macs(c: LatteConfig, frames: int, tokens_per_frame: int, caption_tokens: int | None = None) -> Cost:
    """Latte-1: spatial PixArt blocks (cross-attention; the caption is repeated per frame, so its keys
    and values cost F times) and temporal ones without (they run at F = 1 too, over one frame)."""
    F, S, D, p = frames, tokens_per_frame, c.hidden_size, c.patch_size
    M, N, H = caption_tokens or LATTE_CAPTION_TOKENS, frames * tokens_per_frame, mlp_hidden(c.hidden_size, 4.0)
    out = c.out_channels or c.in_channels
    return Cost(embed=N * p * p * c.in_channels * D + timestep_macs(D) + M * (c.caption_channels * D + D * D),
                modulation=6 * D * D,
                linear=c.num_layers * (6 * D * D * N + 2 * D * H * N) + c.num_layers * (4 * D * D * N + 2 * D * H * N),
                attention=c.num_layers * (2 * F * S * S * D + 2 * S * F * F * D),
                cross=c.num_layers * (2 * D * D * M * F + 2 * N * M * D),
                output=N * D * p * p * out)


# --------------------------------------------------------------------------------------------
# One forward at a size in pixels
# --------------------------------------------------------------------------------------------

def token_grid(config, height: int, width: int, frames: int = 1, vae_factor: int = 8) -> tuple[int, int]:
    """(token frames F, tokens per frame S) of an image/video of height x width pixels and `frames`
    LATENT frames (Open-Sora 1.0 and Latte: one per video frame; Open-Sora 1.2's VAE: 5 per 17)."""
    p = config.patch_size
    pt, ph, pw = p if isinstance(p, tuple) else (1, p, p)
    step_h, step_w = vae_factor * ph, vae_factor * pw
    if height % step_h or width % step_w or height <= 0 or width <= 0:
        raise InputError(f"{height}x{width} pixels: the size must be a positive multiple of {step_h}x{step_w} "
                         f"(VAE factor {vae_factor} x patch)")
    if not isinstance(config, VIDEO) and frames != 1:
        raise InputError(f"{type(config).__name__} is an image model: frames must be 1, got {frames}")
    if frames < 1 or frames % pt:
        raise InputError(f"frames {frames}: a positive multiple of the tubelet's time patch {pt}")
    return frames // pt, (height // step_h) * (width // step_w)


def forward_macs(config, height: int, width: int, frames: int = 1, *, text_tokens: int | None = None,
                 vae_factor: int = 8) -> Cost:
    """The `Cost` of one forward of one sample of any minidit denoiser config at height x width pixels
    (and `frames` latent frames for a video model). text_tokens: the caption length where it may vary
    (default: the model's own, PixArt α 120 / Σ 300, SD3 154, Open-Sora 120 / 300, Latte 120)."""
    if not isinstance(config, (DiTConfig, PixArtConfig, MMDiTConfig, HunyuanConfig) + VIDEO):
        raise InputError(f"no FLOP formula for a {type(config).__name__}; known: DiT, PixArt, MM-DiT, Hunyuan-DiT, "
                         "STDiT, STDiT3, Latte configs")
    F, S = token_grid(config, height, width, frames, vae_factor)
    if isinstance(config, DiTConfig):
        return dit_macs(config, S)
    if isinstance(config, PixArtConfig):
        return pixart_macs(config, S, text_tokens)
    if isinstance(config, MMDiTConfig):
        return mmdit_macs(config, S, text_tokens or SD3_TEXT_TOKENS)
    if isinstance(config, HunyuanConfig):
        return hunyuan_macs(config, S)
    if isinstance(config, STDiTConfig):
        return stdit_macs(config, F, S, text_tokens)
    if isinstance(config, STDiT3Config):
        return stdit3_macs(config, F, S, text_tokens)
    return latte_macs(config, F, S, text_tokens)


# --------------------------------------------------------------------------------------------
# Text encoders and the VAE decoder
# --------------------------------------------------------------------------------------------

def text_macs(config, tokens: int) -> int:
    """One text encoder on `tokens` tokens (one prompt): T5 (gated-GELU MLP: 3 D F a token; heads x d_kv
    need not be D), CLIP (+ the projection of the pooled token), BERT (+ the pooler on [CLS])."""
    L = tokens
    if isinstance(config, T5Config):
        D, inner = config.d_model, config.num_heads * config.d_kv
        return config.num_layers * (4 * L * D * inner + 2 * L * L * inner + 3 * L * D * config.d_ff)
    if isinstance(config, (CLIPTextConfig, BertConfig)):
        D, I = config.hidden_size, config.intermediate_size
        layers = config.num_hidden_layers * (4 * L * D * D + 2 * L * L * D + 2 * L * D * I)
        if isinstance(config, CLIPTextConfig):
            return layers + (D * config.projection_dim if config.projection_dim else 0)
        return layers + (D * D if config.add_pooling_layer else 0)
    raise InputError(f"no FLOP formula for a {type(config).__name__} text encoder (T5, CLIP, BERT)")


def vae_decode_macs(c: VAEConfig, h: int, w: int) -> int:
    """The KL-VAE decoder on an h x w latent: 3 x 3 convs of ResNet blocks (2 a block, + a 1 x 1 shortcut
    where the width changes), num_res_blocks + 1 blocks a level, an upsampling conv after every level but
    the last, and the mid-block's single-head attention over the h w latent positions (its only N² term)."""
    widths = [c.ch * m for m in c.ch_mult]
    n = h * w

    def resnet(ci, co, positions):
        return positions * (9 * ci * co + 9 * co * co + (ci * co if ci != co else 0))

    C = widths[-1]
    macs = (n * c.z_channels ** 2 if c.use_post_quant_conv else 0) + n * 9 * c.z_channels * C
    macs += 2 * resnet(C, C, n) + 4 * n * C * C + 2 * n * n * C                   # mid: 2 blocks + attention
    w_in = C
    for i in reversed(range(len(widths))):
        positions = n * 4 ** (len(widths) - 1 - i)
        for j in range(c.num_res_blocks + 1):
            macs += resnet(w_in if j == 0 else widths[i], widths[i], positions)
        w_in = widths[i]
        if i > 0:
            macs += 9 * w_in * w_in * positions * 4                               # upsample x2, then a 3 x 3 conv
    return macs + 9 * w_in * c.out_ch * n * 4 ** (len(widths) - 1)


# --------------------------------------------------------------------------------------------
# A whole run, and the cards
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunCost:
    """Hardware FLOPs of one image or video: text encoders, denoising, decode."""
    text: int
    denoise: int
    decode: int

    @property
    def total(self) -> int:
        return self.text + self.denoise + self.decode


def image_cost(config, height: int, width: int, frames: int = 1, *, steps: int, cfg: bool = True,
               text: tuple = (), vae: VAEConfig | None = None, text_tokens: int | None = None) -> RunCost:
    """steps x (2 with CFG: the conditional and unconditional halves) x one forward, plus each text
    encoder of `text` ((config, tokens) pairs) on the prompt and, with CFG, the negative prompt, plus the
    image VAE's decode of every frame (Open-Sora 1.2's temporal VAE is not modelled)."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    batch = 2 if cfg else 1
    denoise = 2 * steps * batch * forward_macs(config, height, width, frames, text_tokens=text_tokens).total
    text_flops = 2 * batch * sum(text_macs(t, n) for t, n in text)
    decode = 0 if vae is None else 2 * frames * vae_decode_macs(vae, height // vae.downsample_factor,
                                                              width // vae.downsample_factor)
    return RunCost(text_flops, denoise, decode)


def denoise_flops(forward_macs_per_sample: int, *, steps: int, batch: int = 2, windows: int = 1) -> int:
    """Hardware FLOPs of a denoising run: `steps` network calls of `batch` samples (2 with CFG) on
    `windows` windows (1: the whole latent) of a forward of `forward_macs_per_sample` MACs each."""
    return 2 * steps * batch * windows * forward_macs_per_sample


@dataclass(frozen=True)
class Card:
    """A card's bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, and its board power."""
    match: str          # a substring of `torch.cuda.get_device_name()`
    name: str
    dense: float        # bf16, dense (no 2:4 sparsity); GeForce: with fp32 accumulation
    sparse: float       # the data sheet's "with sparsity" figure (2 x dense)
    watts: int          # TDP / board power
    note: str = ""


# Most specific first ("H100 PCIe" before "H100"; "A100" is never matched by "A10").
CARDS = (
    Card("H100 PCIe", "H100 PCIe", 756.0, 1513.0, 350),
    Card("H100", "H100 SXM5", 989.0, 1979.0, 700, "data sheet: 1,979 with sparsity"),
    Card("H200", "H200 SXM", 989.0, 1979.0, 700),
    Card("A100", "A100 SXM4 / PCIe", 312.0, 624.0, 400, "PCIe: 250-300 W"),
    Card("RTX 4090", "GeForce RTX 4090", 165.2, 330.4, 450,
         "bf16 and fp16 with fp32 accumulation; fp16 with fp16 accumulation: 330.3 dense"),
)
PEAK_TFLOPS = tuple((c.match, c.dense) for c in CARDS)


def card(name: str) -> Card:
    """The first row of CARDS whose `match` is in `name` (case-insensitive); InputError if none."""
    for c in CARDS:
        if c.match.lower() in name.lower():
            return c
    raise InputError(f"unknown card {name!r}; known: {', '.join(c.match for c in CARDS)}")


def card_peak_tflops(device_name: str, override: float | None = None) -> float:
    """The dense bf16 peak (TFLOP/s) of the card called `device_name`, or `override` (--peak-tflops).
    InputError for a card not in CARDS without an override."""
    if override is not None:
        if not override > 0:
            raise InputError(f"--peak-tflops must be a positive number of TFLOP/s, got {override!r}")
        return float(override)
    try:
        return card(device_name).dense
    except InputError:
        known = ", ".join(f"{k} {v:g}" for k, v in PEAK_TFLOPS)
        raise InputError(f"unknown card {device_name!r}: pass --peak-tflops with its dense bf16 tensor-core peak "
                         f"(TFLOP/s, from NVIDIA's data sheet, without sparsity); known: {known}") from None


def floor_seconds(flops: float, peak_tflops: float) -> float:
    """The time the work takes at 100 % of the peak."""
    return flops / (peak_tflops * 1e12)


def floor_fraction(flops: float, seconds: float, peak_tflops: float) -> float:
    """(FLOPs / peak) / seconds: the share of the card's peak the run achieved."""
    if not seconds > 0:
        raise InputError(f"a measured time must be positive, got {seconds!r}")
    return floor_seconds(flops, peak_tflops) / seconds
