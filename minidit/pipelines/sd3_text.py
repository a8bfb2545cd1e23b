"""SD3 / SD3.5 text conditioning: CLIP-L + OpenCLIP bigG + T5-XXL -> the MM-DiT's context and pooled vector.

    text = SD3TextEncoders.from_pretrained("stable-diffusion-3.5-medium")   # a diffusers folder, staged
    e = text.encode(["a red cube", "a cat"], negative_prompt="", num_images_per_prompt=2)
    e.cond (4, 77 + L_t5, 4096)   e.cond_pooled (4, 2048)   e.uncond, e.uncond_pooled: the same for ""

The recipe (Stability-AI/sd3.5 `sd3_infer.py get_cond`; diffusers `StableDiffusion3Pipeline.encode_prompt`;
docs/checkpoints.md#sd3-text-conditioning):

    CLIP-L  77 ids, padded with EOS    -> hidden_states[-2] (B, 77, 768)    pooler_output (B, 768), NOT projected
    bigG    77 ids, padded with "!"=0  -> hidden_states[-2] (B, 77, 1280)   text_embeds   (B, 1280), projected
    T5-XXL  L_t5 ids, padded with 0    -> last_hidden_state (B, L_t5, 4096), with NO attention mask
    context = cat([pad(cat([l, g], channels), to 4096 channels with zeros), t5], tokens)   (B, 77 + L_t5, 4096)
    pooled  = cat([l_pooled, g_pooled], channels)                                          (B, 2048)

hidden_states[-2] is the second-to-last block's output, before the final LayerNorm; the pooled
vectors are the final-LayerNorm'd state at the first EOS. CLIP-L's pooled vector is unprojected
(the reference's `return_projected_pooled=False`; diffusers reads `text_embeds` from a CLIP-L whose
`text_projection` is the identity). SD3's `text_encoders/clip_l.safetensors` carries OpenAI's
projection, which is therefore never applied.

T5 length, `encode(..., t5_length=)`:
  "official" (default)  the reference: the prompt's first 226 characters (a longer prompt is cut, with a
        warning) -> tokens + EOS, padded with 0 to at least 77, no maximum. So L_t5 = 77 for every
        prompt of up to 76 T5 tokens (context 154). The reference encodes one prompt at a time, and its
        guidance batches that with T5("") (77 tokens), so a longer prompt makes its torch.cat fail;
        minidit pads every row of one call (prompts and negative prompts) to the longest row instead.
  "diffusers"  padded to `max_sequence_length` (256 by default, at most 512); a longer prompt is cut
        to it, with a warning (context 333 by default).
T5 dropped (`t5=None`, to fit small cards): its part is zeros, as diffusers does: (B, 256, 4096) with
  "diffusers" (max_sequence_length tokens), (B, 77, 4096) with "official". The reference always loads T5;
  77 is the length its T5 part has for any prompt of up to 76 T5 tokens.
CLIP: 77 tokens. A longer prompt is cut to [BOS] + its first 75 tokens + [EOS], with a warning, as
  diffusers does (T5 still reads the rest). The reference also keeps only its first 77-token chunk, but cuts before the word that
  crosses the boundary (a word of fewer than 8 tokens moves whole to a chunk it then discards).
Not reproduced from the reference: its `(word:1.2)` emphasis syntax (parsed, brackets removed, the
  weights never used); minidit encodes the text as written. Prompts without brackets tokenize alike.
Negative prompt: "" by default (both codes' unconditional input); one string for every prompt, or a
  list with one per prompt; not encoded with guided=False.

Lifetime: each encoder is a `common.Staged`: given as a loader and keep=False (the default of
`from_pretrained` / `from_files`), it is loaded for its turn and freed before the next one is loaded,
so at most one of the three (T5-XXL: 4.7 B parameters) is in memory.
Precision: each encoder runs in the dtype it was loaded in (`default_dtypes`: on CUDA the CLIPs in
float16 and T5 in bfloat16, or float32 without bf16 support; on CPU float32; the reference runs all
three in float32); a float16 T5 is guarded (`minidit.text.t5.guard_fp16`). `encode(dtype=)` is the
dtype of what it returns (the transformer's).

Shape legend: B prompts (x images per prompt), L_t5 T5 tokens, D context width (4096).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minidit.text.t5 import guard_fp16
from weights_loader import PipelineFolder, load_clip, load_clip_tokenizer, load_t5, load_t5_tokenizer
from .checks import check_finite, precision_hint
from .common import PromptEmbeds, Staged

CLIP_TOKENS = 77                 # both CLIPs
OFFICIAL_T5_MIN_TOKENS = 77      # T5XXLTokenizer(min_length=77), no maximum
OFFICIAL_T5_MAX_CHARS = 226      # SD3Tokenizer: t5xxl.tokenize_with_weights(text[:226])
DIFFUSERS_T5_TOKENS = 256        # StableDiffusion3Pipeline(max_sequence_length=256)
DIFFUSERS_T5_MAX_TOKENS = 512    # its check_inputs refuses more
CONTEXT_WIDTH = 4096             # T5-XXL's width = the MM-DiT's joint_attention_dim
T5_LENGTHS = ("official", "diffusers")
CLIP_L_PAD, CLIP_G_PAD = "<|endoftext|>", "!"
MISSING_PARTS = ("SD3's text stack is text_encoder/ + tokenizer/ (CLIP-L), text_encoder_2/ + tokenizer_2/ (bigG) "
                 "and text_encoder_3/ + tokenizer_3/ (T5-XXL) of a diffusers repository, e.g. `huggingface-cli "
                 "download stabilityai/stable-diffusion-3.5-medium --local-dir DIR`; to run without T5, pass drop_t5=True.")


def assemble_context(l_states, g_states, t5_states):
    """(B, 77, D_l), (B, 77, D_g), (B, L_t5, D) -> (B, 77 + L_t5, D): the two CLIPs side by side on the
    channels, zero-padded to T5's width, then T5's tokens after them on the sequence."""
    clip = torch.cat([l_states, g_states], dim=-1)                                 # (B, 77, D_l + D_g)
    width = t5_states.shape[-1]
    if clip.shape[-1] > width:
        raise ValueError(f"the CLIP states have {clip.shape[-1]} channels, more than the context width {width}")
    clip = F.pad(clip, (0, width - clip.shape[-1]))                                # (B, 77, D)
    return torch.cat([clip, t5_states], dim=-2)                                    # (B, 77 + L_t5, D)


def default_dtypes(device) -> tuple[torch.dtype, torch.dtype]:
    """(CLIPs, T5) dtypes: see "Precision" in the module docstring."""
    if torch.device(device).type == "cuda":
        return torch.float16, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.float32, torch.float32


def _staged(encoder, keep: bool, what: str) -> Staged | None:
    """A loaded module (kept), a zero-argument loader (staged), a Staged as it is, or None."""
    if encoder is None or isinstance(encoder, Staged):
        return encoder
    if isinstance(encoder, nn.Module):
        return Staged(encoder, keep=True, what=what)
    if callable(encoder):
        return Staged(None, encoder, keep=keep, what=what)
    raise TypeError(f"{what}: pass a loaded module, a function that loads it, or a Staged, not {type(encoder).__name__}")


def _texts(texts, what: str) -> list[str]:
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{what} must be a string or a list of strings")
    if not texts:
        raise ValueError(f"no {what} given (an empty prompt is the empty string \"\")")
    return list(texts)


def _device(module: nn.Module):
    return next(module.parameters()).device


class SD3TextEncoders:
    """SD3's three text encoders and their tokenizers; `encode(prompt, negative_prompt="")` -> PromptEmbeds.

    `clip_l`, `clip_g`, `t5`: minidit `CLIPTextModel` (CLIP-L; bigG, with its text_projection) and
    `T5EncoderModel`, each a loaded module, a function that loads it (staged: freed after its turn
    unless `keep`) or a `Staged`; `t5=None` drops T5. Tokenizers: minidit's `CLIPTokenizer` padding with
    EOS (CLIP-L) and with "!" (bigG), `T5Tokenizer` (not needed without T5). `context_width`: the
    MM-DiT's `joint_attention_dim`, T5's width (4096)."""

    def __init__(self, *, clip_l, clip_g, t5, tokenizer_l, tokenizer_g, tokenizer_t5=None, keep: bool = True,
                 context_width: int = CONTEXT_WIDTH):
        if tokenizer_l.pad_token_id != tokenizer_l.eos_token_id:
            raise ValueError(f"SD3 pads CLIP-L's tokens with EOS, but this tokenizer pads with id "
                             f"{tokenizer_l.pad_token_id}: load it with load_clip_tokenizer(..., pad_token={CLIP_L_PAD!r})")
        if tokenizer_g.pad_token_id != 0:
            raise ValueError(f"SD3 pads bigG's tokens with id 0 (\"!\"), but this tokenizer pads with id "
                             f"{tokenizer_g.pad_token_id}: load it with load_clip_tokenizer(..., pad_token={CLIP_G_PAD!r})")
        if t5 is not None and tokenizer_t5 is None:
            raise ValueError("T5 needs its tokenizer: pass tokenizer_t5 "
                             "(load_t5_tokenizer(root, component='tokenizer_3'))")
        self.clip_l = _staged(clip_l, keep, "CLIP-L text encoder")
        self.clip_g = _staged(clip_g, keep, "OpenCLIP bigG text encoder")
        self.t5 = _staged(t5, keep, "T5-XXL text encoder")
        self.tokenizer_l, self.tokenizer_g, self.tokenizer_t5 = tokenizer_l, tokenizer_g, tokenizer_t5
        self.context_width = context_width

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, folder, *, base=None, drop_t5: bool = False, clip_dtype=None, t5_dtype=None,
                        device="cpu", keep: bool = False, context_width: int = CONTEXT_WIDTH) -> "SD3TextEncoders":
        """A diffusers StableDiffusion3Pipeline root (or `base` for the parts `folder` lacks):
        text_encoder/ (CLIP-L), text_encoder_2/ (bigG), text_encoder_3/ (T5), tokenizer/, tokenizer_2/,
        tokenizer_3/ (whose vocab.json + merges.txt / spiece.model minidit reads). The encoders are
        staged (loaded when `encode` needs them, freed after unless `keep`); dtypes default to
        `default_dtypes(device)`."""
        parts = PipelineFolder(folder, base, hint=MISSING_PARTS)
        parts.require("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                      *(() if drop_t5 else ("text_encoder_3", "tokenizer_3")))
        d_clip, d_t5 = default_dtypes(device)
        clip_dtype, t5_dtype = clip_dtype or d_clip, t5_dtype or d_t5
        l_dir, g_dir = parts.component("text_encoder"), parts.component("text_encoder_2")
        t5_dir = None if drop_t5 else parts.component("text_encoder_3")
        return cls(clip_l=lambda: load_clip(l_dir, dtype=clip_dtype, device=device),
                   clip_g=lambda: load_clip(g_dir, dtype=clip_dtype, device=device),
                   t5=None if drop_t5 else lambda: load_t5(t5_dir, dtype=t5_dtype, device=device),
                   tokenizer_l=load_clip_tokenizer(parts.component("tokenizer"), pad_token=CLIP_L_PAD),
                   tokenizer_g=load_clip_tokenizer(parts.component("tokenizer_2"), pad_token=CLIP_G_PAD),
                   tokenizer_t5=None if drop_t5 else load_t5_tokenizer(parts.component("tokenizer_3")),
                   keep=keep, context_width=context_width)

    @classmethod
    def from_files(cls, clip_l, clip_g, t5=None, *, tokenizers, clip_dtype=None, t5_dtype=None, device="cpu",
                   keep: bool = False, clip_l_config=None, clip_g_config=None, t5_config=None,
                   context_width: int = CONTEXT_WIDTH) -> "SD3TextEncoders":
        """SD3's single files: `text_encoders/clip_l.safetensors`, `clip_g.safetensors`,
        `t5xxl_fp16.safetensors`, or one whole SD3 file holding them (`sd3_medium_incl_clips.safetensors`:
        pass it as clip_l and clip_g; `..._incl_clips_t5xxlfp16`: also as t5). `t5=None` drops T5. `tokenizers`: a folder with
        tokenizer/, tokenizer_2/, tokenizer_3/ (a diffusers SD3 repository's, e.g. `huggingface-cli
        download stabilityai/stable-diffusion-3.5-medium --include "tokenizer*/*" --local-dir DIR`).
        `*_config`: only for towers whose width is not a released one (the loaders read the rest off
        the tensors)."""
        for name, path in (("clip_l", clip_l), ("clip_g", clip_g), ("t5", t5)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name}: {path} is not a file. SD3's encoders are "
                                        "text_encoders/clip_l.safetensors, clip_g.safetensors and "
                                        "t5xxl_fp16.safetensors of its repository (e.g. "
                                        "`huggingface-cli download stabilityai/stable-diffusion-3.5-large --include "
                                        "\"text_encoders/*\" --local-dir DIR`)")
        d_clip, d_t5 = default_dtypes(device)
        clip_dtype, t5_dtype = clip_dtype or d_clip, t5_dtype or d_t5
        clip = dict(dtype=clip_dtype, device=device)
        return cls(clip_l=lambda: load_clip(clip_l, clip_l_config, **clip, component="clip_l"),
                   clip_g=lambda: load_clip(clip_g, clip_g_config, **clip, component="clip_g"),
                   t5=None if t5 is None else lambda: load_t5(t5, t5_config, dtype=t5_dtype, device=device,
                                                                component="t5xxl"),
                   tokenizer_l=load_clip_tokenizer(tokenizers, component="tokenizer", pad_token=CLIP_L_PAD),
                   tokenizer_g=load_clip_tokenizer(tokenizers, component="tokenizer_2", pad_token=CLIP_G_PAD),
                   tokenizer_t5=None if t5 is None else load_t5_tokenizer(tokenizers, component="tokenizer_3"),
                   keep=keep, context_width=context_width)

    # ---------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(self, prompt, negative_prompt="", *, guided: bool = True, num_images_per_prompt: int = 1,
               t5_length: str = "official", max_sequence_length: int | None = None, dtype=torch.float32,
               device=None) -> PromptEmbeds:
        """PromptEmbeds with cond (B x n, 77 + L_t5, D), cond_pooled (B x n, D_l + D_g), and with
        `guided` the same for `negative_prompt` (uncond, uncond_pooled); no masks (SD3 uses none).
        B = number of prompts, n = num_images_per_prompt (each prompt's rows repeated n times, as
        diffusers does). `t5_length` / `max_sequence_length`: see the module docstring. Returned in
        `dtype` on `device` (default: where CLIP-L ran)."""
        prompts = _texts(prompt, "prompt")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got {num_images_per_prompt}")
        texts, labels = prompts, [f"prompt {i}" for i in range(len(prompts))]
        if guided:
            negative = "" if negative_prompt is None else negative_prompt
            negatives = [negative] * len(prompts) if isinstance(negative, str) else _texts(negative, "negative_prompt")
            if len(negatives) != len(prompts):
                raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts: pass one string "
                                 "(used for every prompt) or one per prompt")
            texts, labels = texts + negatives, labels + [f"negative prompt {i}" for i in range(len(negatives))]
        t5_texts, L = self._t5_plan(texts, labels, t5_length, max_sequence_length)

        for text, label in zip(texts, labels):        # both CLIPs: one vocabulary, one warning
            n = len(self.tokenizer_l.encode(text)) + 2                                   # + BOS, EOS
            if n > CLIP_TOKENS:
                warnings.warn(f"CLIP reads {CLIP_TOKENS} tokens: {label} has {n}; the last {n - CLIP_TOKENS} were "
                              "dropped (as diffusers does; the T5 part still reads them)", stacklevel=3)

        l_states, l_pooled = self._clip(self.clip_l, self.tokenizer_l, texts, projected=False)
        device = l_states.device if device is None else device
        g_states, g_pooled = self._clip(self.clip_g, self.tokenizer_g, texts, projected=True)
        t5_states = self._t5(t5_texts, L)                                           # (2B, L_t5, D)
        convert = dict(device=device, dtype=dtype)
        context = assemble_context(l_states.to(**convert), g_states.to(**convert), t5_states.to(**convert))
        pooled = torch.cat([l_pooled.to(**convert), g_pooled.to(**convert)], dim=-1)   # (2B, D_l + D_g)
        B = len(prompts)
        uncond = dict(uncond=context[B:], uncond_pooled=pooled[B:]) if guided else {}
        return PromptEmbeds(context[:B], cond_pooled=pooled[:B], **uncond).repeat(num_images_per_prompt)

    def _t5_plan(self, texts, labels, t5_length, max_sequence_length) -> tuple[list[str], int]:
        """The texts T5 reads and its token count L_t5 (the module docstring's "T5 length")."""
        if t5_length not in T5_LENGTHS:
            raise ValueError(f"t5_length must be one of {T5_LENGTHS}, not {t5_length!r}")
        if t5_length == "diffusers":
            L = DIFFUSERS_T5_TOKENS if max_sequence_length is None else max_sequence_length
            if not 1 <= L <= DIFFUSERS_T5_MAX_TOKENS:
                raise ValueError(f"max_sequence_length must lie in [1, {DIFFUSERS_T5_MAX_TOKENS}] (diffusers' limit), "
                                 f"got {L}")
            if self.t5 is not None:
                for text, label in zip(texts, labels):
                    n = len(self.tokenizer_t5.encode(text)) + 1
                    if n > L:
                        warnings.warn(f"T5 reads {L} tokens (max_sequence_length): {label} has {n}; the last {n - L} "
                                      "were dropped (as diffusers does)", stacklevel=4)
            return texts, L
        if max_sequence_length is not None:
            raise ValueError("max_sequence_length is diffusers' T5 length: pass t5_length='diffusers' with it (the "
                             "official length is at least 77 tokens, as many as the prompt's first 226 characters need)")
        if self.t5 is None:
            return texts, OFFICIAL_T5_MIN_TOKENS
        for text, label in zip(texts, labels):
            if len(text) > OFFICIAL_T5_MAX_CHARS:
                warnings.warn(f"T5 (t5_length='official') reads the first {OFFICIAL_T5_MAX_CHARS} characters of a "
                              f"prompt, as SD3's reference does: {label} has {len(text)}, the rest is dropped "
                              "(t5_length='diffusers' reads up to max_sequence_length tokens)", stacklevel=4)
        cut = [t[:OFFICIAL_T5_MAX_CHARS] for t in texts]
        longest = max(len(self.tokenizer_t5.encode(t)) + 1 for t in cut)                      # + EOS
        return cut, max(OFFICIAL_T5_MIN_TOKENS, longest)

    def _clip(self, staged: Staged, tokenizer, texts, projected: bool):
        """hidden_states[-2] (2B, 77, D_c) and the pooled EOS state (2B, D_c), projected or not."""
        with warnings.catch_warnings():               # a cut was reported by encode, in SD3's terms
            warnings.simplefilter("ignore")
            ids = tokenizer(texts, max_length=CLIP_TOKENS)["input_ids"]                 # (2B, 77)
        with staged.use() as model:
            out = model(ids.to(_device(model)), output_hidden_states=True)
            if projected and out.text_embeds is None:
                raise ValueError("SD3's bigG pooled vector is its projected EOS state, but this CLIP has no "
                                 "text_projection: load bigG with its text_projection.weight")
            states, pooled = out.hidden_states[-2], out.text_embeds if projected else out.pooler_output
            hint = precision_hint(model, "this CLIP", "text_dtype")
            return (check_finite(states, f"text encoding ({staged.what})", hint),
                    check_finite(pooled, f"text encoding ({staged.what}, pooled)", hint))

    def _t5(self, texts, L: int):
        """T5's last_hidden_state (2B, L, D) without an attention mask, or zeros without T5."""
        if self.t5 is None:
            return torch.zeros(len(texts), L, self.context_width)
        with warnings.catch_warnings():               # a cut (diffusers' length) was reported by _t5_plan
            warnings.simplefilter("ignore")
            ids = self.tokenizer_t5(texts, max_length=L)["input_ids"]                   # (2B, L)
        with self.t5.use() as t5:
            guard_fp16(t5)
            states = t5(ids.to(_device(t5))).last_hidden_state                          # no mask: SD3 attends pads
            check_finite(states, "text encoding (T5-XXL)", precision_hint(t5, "T5", "text_dtype"))
        if states.shape[-1] != self.context_width:
            raise ValueError(f"T5's width is {states.shape[-1]}, the context width {self.context_width}: pass "
                             "context_width= (the MM-DiT's joint_attention_dim)")
        return states
