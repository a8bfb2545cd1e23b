"""What each model of the command line's table is made of, and its three stages' estimates.

`stack(entry)` turns a row of `python -m minidit models` (a `pipelines.common.ModelEntry`) into a
`Stack`: the denoiser's config, the text encoders (kind, config, tokens) and the VAE's config, all
taken from the presets the loaders use. `estimate_stages(stack, ...)` prices one run of it with
`minidit.plan`: weights counted on the meta device, FLOPs counted from the real forward on meta
tensors, activations from the formulas. Nothing here allocates a real weight.

Windowed denoising (the latent denoised in overlapping sliding windows, each a batch of its own) is
modelled as the cost of one window-sized forward x the number of windows, and the memory of one
window batch; windows are counted as the tiles of `tiling.tile_starts` with the given overlap.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from . import plan as P
from .dit import CHECKPOINTS as DIT_CHECKPOINTS, DiT
from .errors import InputError
from .hunyuan import HUNYUAN_V12, PRESETS as HUNYUAN_PRESETS, HunyuanDiT
from .latte import Latte
from .mmdit import PRESETS as MMDIT_PRESETS, SD3_MEDIUM, MMDiT
from .pixart import CAPTION_TOKENS, PIXART_SIGMA_1024_MS, PRESETS as PIXART_PRESETS, KVCompressConfig, PixArt
from .stdit import STDiT
from .stdit3 import STDiT3
from .text.bert import HUNYUAN_BERT, BertModel
from .text.clip import CLIP_L, OPENCLIP_BIGG, CLIPTextModel
from .text.t5 import MT5_XL, T5_V1_1_XXL, T5EncoderModel
from .vae import SD3_VAE, SD_VAE, SDXL_VAE, SDXL_VAE_FP16_FIX, AutoencoderKL


DENOISERS = {"pixart": "PixArt", "dit": "DiT", "sd3": "MM-DiT", "hunyuan": "Hunyuan-DiT"}


@dataclass(frozen=True)
class TextPart:
    label: str            # "T5-XXL"
    kind: str             # "t5" | "clip" | "bert"
    config: object
    tokens: int


@dataclass(frozen=True)
class Stack:
    name: str
    family: str
    denoiser: object       # the config
    text: tuple            # TextPart, ...
    vae: object            # VAEConfig
    caption_tokens: int    # the text tokens the denoiser attends to
    side: int              # the training resolution
    title: str


def stack(entry) -> Stack:
    """The components of a CLI model row (presets of `minidit.pixart`, `mmdit`, `hunyuan`, `dit`, `text`, `vae`)."""
    if entry.family == "pixart":
        L = CAPTION_TOKENS[entry.variant]
        text = (TextPart("T5-XXL", "t5", T5_V1_1_XXL, L),)
        return Stack(entry.name, "pixart", PIXART_PRESETS[entry.repo.split("/")[1]], text,
                     SD_VAE if entry.variant == "alpha" else SDXL_VAE, L, entry.side, entry.summary)
    if entry.family == "sd3":
        # the command line samples the official way: T5 padded to 77 tokens, [CLIP 77 | T5 77] = 154
        text = (TextPart("CLIP-L", "clip", CLIP_L, 77), TextPart("OpenCLIP bigG", "clip", OPENCLIP_BIGG, 77),
                TextPart("T5-XXL", "t5", T5_V1_1_XXL, 77))
        return Stack(entry.name, "sd3", MMDIT_PRESETS[entry.name], text, SD3_VAE, 154, entry.side, entry.summary)
    if entry.family == "hunyuan":
        text = (TextPart("BERT-CLIP", "bert", HUNYUAN_BERT, 77), TextPart("mT5-XL", "t5", MT5_XL, 256))
        return Stack(entry.name, "hunyuan", HUNYUAN_PRESETS[entry.name], text, SDXL_VAE_FP16_FIX, 333, entry.side,
                     entry.summary)
    if entry.family == "dit":
        return Stack(entry.name, "dit", DIT_CHECKPOINTS[f"DiT-XL-2-{entry.side}x{entry.side}"], (), SD_VAE, 0, entry.side,
                     entry.summary)
    raise ValueError(f"no memory model for the {entry.family!r} family")


# --------------------------------------------------------------------------------------------
# Building on meta (cached: a T5-XXL takes a second even without memory)
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def module_on_meta(kind: str, config):
    build = {"pixart": PixArt, "dit": DiT, "sd3": MMDiT, "hunyuan": HunyuanDiT, "stdit": STDiT, "stdit3": STDiT3,
             "latte": Latte, "t5": T5EncoderModel, "clip": CLIPTextModel, "bert": BertModel, "vae": AutoencoderKL}[kind]
    return P.on_meta(lambda: build(config))


@functools.lru_cache(maxsize=None)
def weights_of(kind: str, config) -> int:
    """Elements (parameters + buffers) of a module, counted on meta."""
    return P.count_weights(module_on_meta(kind, config))     # the whole VAE: the pipelines load its encoder too


@functools.lru_cache(maxsize=None)
def denoiser_flops(family: str, config, h: int, w: int, B: int, L: int, frames: int = 1) -> float:
    """FLOPs of one forward of batch B on an h x w latent (`frames` latent frames for the video families
    stdit, stdit3, latte), counted on meta tensors."""
    m = module_on_meta(family, config)
    e = lambda *shape: torch.empty(*shape, device="meta")        # noqa: E731
    C, t = config.in_channels, e(B)
    if family in ("stdit", "stdit3", "latte"):
        video, y = e(B, C, frames, h, w), e(B, L, config.caption_channels)
        pixels = dict(fps=24, height=8 * h, width=8 * w) if family == "stdit3" else {}
        return P.count_flops(m, video, t, y, None, **pixels)
    if family == "pixart":
        micro = dict(img_hw=e(B, 2), aspect_ratio=e(B, 1)) if config.micro_condition else {}
        return P.count_flops(m, e(B, C, h, w), t, e(B, L, config.caption_channels), None, **micro)
    if family == "dit":
        return P.count_flops(m, e(B, C, h, w), t, torch.zeros(B, dtype=torch.long, device="meta"))
    if family == "sd3":
        return P.count_flops(m, e(B, C, h, w), t, e(B, config.adm_in_channels), e(B, L, config.context_dim))
    if family == "hunyuan":
        cos = sin = e((h // config.patch_size) * (w // config.patch_size), config.head_dim)
        size = dict(image_meta_size=e(B, 6), style=torch.zeros(B, dtype=torch.long, device="meta")) if config.size_cond else {}
        return P.count_flops(m, e(B, C, h, w), t, e(B, config.text_len, config.text_states_dim), e(B, config.text_len),
                             e(B, config.text_len_t5, config.text_states_dim_t5), e(B, config.text_len_t5),
                             cos_cis_img=cos, sin_cis_img=sin, **size)
    raise ValueError(family)


@functools.lru_cache(maxsize=None)
def text_flops(kind: str, config, tokens: int) -> float:
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    return P.count_flops(module_on_meta(kind, config), ids)


@functools.lru_cache(maxsize=None)
def decode_flops(config, h: int, w: int) -> float:
    return P.count_flops(module_on_meta("vae", config).decode, torch.empty(1, config.z_channels, h, w, device="meta"))


# --------------------------------------------------------------------------------------------
# The three stages
# --------------------------------------------------------------------------------------------

def check_size(stack: Stack, height: int, width: int) -> tuple[int, int]:
    """(h, w) latent size, or InputError for a size the model cannot take."""
    cfg = stack.denoiser
    step = stack.vae.downsample_factor * cfg.patch_size
    for name, v in (("--height", height), ("--width", width)):
        if not isinstance(v, int) or v < step or v % step:
            raise InputError(f"{name} {v}: {stack.name} sizes are positive multiples of {step} (VAE factor "
                             f"{stack.vae.downsample_factor} x patch {cfg.patch_size}), e.g. {stack.side}")
    if stack.family == "dit" and (height, width) != (stack.side, stack.side):
        raise InputError(f"{stack.name} makes {stack.side}x{stack.side} images only (its position table is fixed)")
    if stack.family == "sd3":
        most = cfg.pos_embed_max_size * step
        if max(height, width) > most:
            raise InputError(f"{stack.name} makes images of at most {most}x{most} pixels (its stored position table)")
    f = stack.vae.downsample_factor
    return height // f, width // f


def text_dtype(dtype: str) -> str:
    """T5 in bf16 (never unguarded fp16: it overflows), fp32 when everything is fp32."""
    return "fp32" if dtype == "fp32" else "bf16"


def vae_dtype(stack: Stack, dtype: str) -> str:
    """fp32 for a VAE that overflows in fp16 (`force_upcast`: the SD and SDXL VAEs), else the model's dtype."""
    return "fp32" if stack.vae.force_upcast else dtype


def text_stage(stack: Stack, dtype: str, guided: bool) -> P.Estimate:
    """Every text encoder, run once per branch (prompt, and negative prompt when guided), batch 1.
    Staged, the pipelines load them one at a time (`Staged`, keep=False): terms["staged peak"] is the
    largest encoder's weights + activations."""
    td = text_dtype(dtype)
    b, calls = P.DTYPE_BYTES[td], 2 if guided else 1
    weights = activations = flops = staged = 0
    labels = []
    for part in stack.text:
        c = part.config
        w = weights_of(part.kind, c) * b
        if part.kind == "t5":
            act = P.t5_activations(c, part.tokens, 1, b)["peak"]
        else:
            act = P.encoder_activations(c.hidden_size, c.intermediate_size, c.num_attention_heads, part.tokens, 1, b)["peak"]
        weights, activations, staged = weights + w, max(activations, act), max(staged, w + act)
        flops += calls * text_flops(part.kind, c, part.tokens)
        labels.append(f"{part.label} {weights_of(part.kind, c) / 1e9:.2f} B")
    what = (" + ".join(labels) + f", {td}, {calls} x batch 1") if labels else "class labels: no text encoder"
    return P.Estimate("text", what, td, weights, activations, flops, {"staged peak": staged})


def denoiser_activations(stack: Stack, N: int, B: int, b: int, backend: str, kv_scale: int) -> dict:
    cfg, L = stack.denoiser, stack.caption_tokens
    if stack.family in ("pixart", "dit"):
        return P.pixart_activations(cfg, N, B, L, b, backend, kv_scale)
    if stack.family == "sd3":
        return P.mmdit_activations(cfg, N, B, L, b, backend)
    return P.hunyuan_activations(cfg, N, B, L, b, backend)


def denoise_stage(stack: Stack, h: int, w: int, dtype: str, steps: int, guided: bool, backend: str = "sdpa",
                  window: int | None = None, overlap: int = 0, kv_scale: int = 1) -> P.Estimate:
    """`steps` forwards of batch 2 (CFG) or 1; with `window` (latent pixels) each is that many window forwards."""
    cfg, b, B = stack.denoiser, P.DTYPE_BYTES[dtype], 2 if guided else 1
    wh, ww, n = h, w, 1
    if window is not None and (window < h or window < w):
        wh, ww = min(window, h), min(window, w)
        n = P.tile_count(h, wh, overlap) * P.tile_count(w, ww, overlap)
    N = (wh // cfg.patch_size) * (ww // cfg.patch_size)
    # KV compression on the second half only: the first half's full N x N attention still sets the peak
    terms = denoiser_activations(stack, N, B, b, backend, 1)
    if kv_scale > 1:                 # PixArt-Σ's KV compression (s x s fewer keys) on the second half of the blocks
        if stack.family != "pixart":
            raise InputError("--kv-compress is PixArt-Σ's KV token compression: PixArt models only")
        cfg = replace(cfg, kv_compress_config=KVCompressConfig("conv", kv_scale, tuple(range(cfg.depth // 2, cfg.depth))))
    forward = denoiser_flops(stack.family, cfg, wh, ww, B, stack.caption_tokens)
    what = f"{DENOISERS[stack.family]} {weights_of(stack.family, cfg) / 1e9:.2f} B, {dtype}, {N} tokens x batch {B}, {backend}"
    if n > 1:
        what += f", {n} windows of {wh * 8}x{ww * 8} px"
    return P.Estimate("denoise", what, dtype, weights_of(stack.family, cfg) * b, terms.pop("peak"), steps * n * forward,
                      terms)


def decode_stage(stack: Stack, h: int, w: int, dtype: str, tile: int | None = None, overlap: int = 0,
                 device: str = "cuda") -> P.Estimate:
    """One VAE decode; `tile`, `overlap` in latent pixels (`AutoencoderKL.decode(tile=...)`)."""
    vd = vae_dtype(stack, dtype)
    b = P.DTYPE_BYTES[vd]
    terms = P.vae_decode_memory(stack.vae, h, w, b, tile, overlap, cpu=device == "cpu")
    peak = terms.pop("peak")
    tiled = tile is not None and (h > tile or w > tile)
    if tiled:
        th, tw = min(tile, h), min(tile, w)
        flops = P.tile_count(h, th, overlap) * P.tile_count(w, tw, overlap) * decode_flops(stack.vae, th, tw)
        what = f"VAE {vd}, tiles of {tile * 8} px (overlap {overlap * 8})"
    else:
        flops, what = decode_flops(stack.vae, h, w), f"VAE {vd}, untiled"
    note = ""
    if device == "cuda":
        conv = peak - terms.get("blending buffers 16 B/px", 0)
        note = f"(the decoder's part x {P.CUDA_CONV_WORKSPACE} on CUDA: cuDNN's workspace, measured)"
        peak = int(conv * P.CUDA_CONV_WORKSPACE) + terms.get("blending buffers 16 B/px", 0)
    return P.Estimate("decode", what, vd, weights_of("vae", stack.vae) * b, peak, flops, terms, note)


# one full-size denoiser per family (benchmarks/plan_validation.py)
MODEL_CONFIGS = {"pixart": PIXART_SIGMA_1024_MS, "sd3": SD3_MEDIUM, "hunyuan": HUNYUAN_V12}
