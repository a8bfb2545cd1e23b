"""Hunyuan-DiT's two text encoders: a bilingual BERT ("CLIP" in the official code) and mT5-XL.

    text = HunyuanTextEncoders.from_pretrained("HunyuanDiT-v1.2-Diffusers")   # or .from_original("ckpts/t2i")
    bert, mt5 = text.encode(["一只可爱的猫"], [NEGATIVE_PROMPT])              # two PromptEmbeds

What each encoder gives the transformer (official `hydit/diffusion/pipeline.py` `encode_prompt`, and
diffusers' `HunyuanDiTPipeline.encode_prompt`, which agree):
  * BERT-CLIP: WordPiece with CJK splitting (every Chinese character is a word of its own), [CLS] ... [SEP]
    padded with [PAD] to exactly 77 tokens (longer prompts cut), the LAST hidden state (B, 77, 1024)
    computed with the attention mask, and that mask (B, 77). The encoder's pooler is not used.
  * mT5-XL: sentencepiece pieces + </s>, padded with <pad> to exactly 256 tokens, the last hidden
    state (B, 256, 2048) (after the final RMSNorm; the official `layer_index=-1` is the same tensor)
    with the attention mask, and that mask (B, 256).
The negative prompt is encoded the same way, with its own masks. The transformer then replaces every
padded position by its learned `text_embedding_padding` (the masks are used there, not in the
cross-attention) and pools the mT5 states into its global vector.

Files: a diffusers pipeline root holds `text_encoder/` (BertModel), `tokenizer/` (vocab.txt),
`text_encoder_2/` (T5EncoderModel with the mT5 weights), `tokenizer_2/` (spiece.model); the original
repository's `t2i/` holds `clip_text_encoder/`, `tokenizer/` and `mt5/` (weights and spiece.model).

Precision (the official choice): BERT in float32, mT5 in float16 on CUDA (minidit's fp16 policy keeps
the feed-forward output weights in float32, `minidit.text.t5.guard_fp16`), float32 on CPU.

Shape legend: B prompts x images per prompt, L tokens (77 | 256), D width (1024 | 2048).
"""
from __future__ import annotations

from pathlib import Path

import torch

from minidit.errors import InputError
from minidit.text.t5 import guard_fp16
from weights_loader import MissingPartError, PipelineFolder, load_bert, load_bert_tokenizer, load_t5, load_t5_tokenizer
from .checks import check_count, check_finite, check_prompts, precision_hint
from .common import PromptEmbeds, Staged

BERT_TOKENS = 77           # text_len: the transformer takes exactly this many BERT states
MT5_TOKENS = 256           # text_len_t5
# hydit/constants.py NEGATIVE_PROMPT: "wrong eyes, bad face, disfigured, bad art, deformed, extra limbs,
# blurry colours, blurry, repetition, morbid, mutilated," — the official default negative prompt
NEGATIVE_PROMPT = "错误的眼睛，糟糕的人脸，毁容，糟糕的艺术，变形，多余的肢体，模糊的颜色，模糊，重复，病态，残缺，"
# the original repository's folders inside t2i/
ORIGINAL_FOLDERS = {"bert": "clip_text_encoder", "tokenizer": "tokenizer", "mt5": "mt5"}


# the argument of each encoder's dtype in the NaN/inf hints: BERT stays float32 (official), mT5 follows
# the pipeline's text_dtype
DTYPE_ARGUMENTS = {"BERT": "bert_dtype", "mT5": "text_dtype"}


class HunyuanTextEncoders:
    """BERT-CLIP + mT5 with their tokenizers; each encoder is staged (loaded when a prompt is
    encoded, freed afterwards unless `keep`)."""

    def __init__(self, bert_tokenizer, mt5_tokenizer, bert=None, mt5=None, *, bert_loader=None, mt5_loader=None,
                 keep: bool = True):
        self.bert_tokenizer, self.mt5_tokenizer = bert_tokenizer, mt5_tokenizer
        self.bert = Staged(bert, bert_loader, keep=keep, what="BERT text encoder")
        self.mt5 = Staged(mt5, mt5_loader, keep=keep, what="mT5 text encoder")

    @classmethod
    def from_pretrained(cls, folder, *, base=None, bert_dtype=torch.float32, mt5_dtype=None, device="cpu",
                        keep: bool = False) -> "HunyuanTextEncoders":
        """A diffusers HunyuanDiTPipeline root (`base`: another one for the parts it lacks)."""
        parts = PipelineFolder(folder, base, hint="A diffusers Hunyuan-DiT folder: `huggingface-cli download "
                               "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers --local-dir DIR`.")
        parts.require("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
        return cls._build(parts.component("text_encoder"), parts.component("tokenizer"),
                          parts.component("text_encoder_2"), parts.component("tokenizer_2"),
                          bert_dtype, mt5_dtype, device, keep)

    @classmethod
    def from_original(cls, t2i, *, bert_dtype=torch.float32, mt5_dtype=None, device="cpu",
                      keep: bool = False) -> "HunyuanTextEncoders":
        """The original repository's `t2i/` folder: clip_text_encoder/, tokenizer/, mt5/."""
        t2i = Path(t2i)
        folders = {k: t2i / v for k, v in ORIGINAL_FOLDERS.items()}
        missing = [f"{v.name}/" for v in folders.values() if not v.is_dir()]
        if missing:
            raise MissingPartError(f"no {', '.join(missing)} in {t2i}: the original layout is "
                                   "t2i/{clip_text_encoder,tokenizer,mt5,sdxl-vae-fp16-fix,model}/ "
                                   "(`huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2 --local-dir ckpts`)")
        return cls._build(folders["bert"], folders["tokenizer"], folders["mt5"], folders["mt5"],
                          bert_dtype, mt5_dtype, device, keep)

    @classmethod
    def _build(cls, bert_dir, tokenizer_dir, mt5_dir, spiece_dir, bert_dtype, mt5_dtype, device, keep):
        if mt5_dtype is None:           # the official fp16 on CUDA (guarded), float32 on the CPU
            mt5_dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
        return cls(load_bert_tokenizer(tokenizer_dir), load_t5_tokenizer(spiece_dir), keep=keep,
                   bert_loader=lambda: load_bert(bert_dir, dtype=bert_dtype, device=device),
                   mt5_loader=lambda: load_t5(mt5_dir, dtype=mt5_dtype, device=device))

    @staticmethod
    def _run(encoder, tokens, device, name: str, stage: str):
        """Token ids -> the last hidden state (B, L, D) and the mask (B, L); NaN/inf in the states raise
        a NonFiniteError naming the encoder (`stage`) and what to try."""
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        states = encoder(ids, attention_mask=mask).last_hidden_state
        check_finite(states, stage, precision_hint(encoder, name, DTYPE_ARGUMENTS[name]))
        return states, mask

    @torch.no_grad()
    def encode(self, prompts, negatives, *, num_images_per_prompt: int = 1,
               device="cpu") -> tuple[PromptEmbeds, PromptEmbeds]:
        """(BERT embeds, mT5 embeds) of the prompts (a string or a list of strings) and, when `negatives`
        is given (guided sampling), of the negative prompts (one per prompt, or one string for all):
        states, masks, repeated per image. Arguments are checked (`pipelines/checks.py`, InputError)
        before an encoder is loaded or run."""
        prompts = check_prompts(prompts)
        if negatives is not None:
            negatives = [negatives] * len(prompts) if isinstance(negatives, str) else \
                check_prompts(negatives, "negative_prompt")
            if len(negatives) != len(prompts):
                raise InputError(f"{len(negatives)} negative prompts for {len(prompts)} prompts: pass one string (used "
                                 "for every prompt) or one per prompt")
        check_count(num_images_per_prompt, "num_images_per_prompt")
        out = []
        for staged, tokenizer, L, name in ((self.bert, self.bert_tokenizer, BERT_TOKENS, "BERT"),
                                           (self.mt5, self.mt5_tokenizer, MT5_TOKENS, "mT5")):
            with staged.use() as encoder:
                if staged is self.mt5:
                    guard_fp16(encoder)
                stage = f"text encoding ({staged.what})"
                cond, cond_mask = self._run(encoder, tokenizer(prompts, max_length=L), device, name, stage)
                uncond = uncond_mask = None
                if negatives is not None:
                    uncond, uncond_mask = self._run(encoder, tokenizer(negatives, max_length=L), device, name,
                                                    f"{stage[:-1]}, negative prompt)")
            out.append(PromptEmbeds(cond, cond_mask, uncond=uncond, uncond_mask=uncond_mask)
                       .repeat(num_images_per_prompt))
        return out[0], out[1]
