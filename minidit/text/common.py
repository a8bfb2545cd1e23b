"""What the three text encoders (T5, CLIP, BERT) share: their output type and the padding mask.

Every encoder is called the same way and returns the same record:

    out = encoder(input_ids, attention_mask=None, output_hidden_states=False)
    out.last_hidden_state    (B, L, D)   the sequence the diffusion model cross-attends to
    out.hidden_states        tuple of (B, L, D), embeddings first, or None (see each encoder
                             for what the last entry is: T5 and BERT end with last_hidden_state,
                             CLIP ends with the final block's output *before* its final LayerNorm)
    out.pooler_output        (B, D) one vector per prompt, or None (T5 has none): CLIP's final-LN'd
                             EOS token, BERT's tanh(dense([CLS]))
    out.text_embeds          (B, P) CLIP's projected EOS vector (`text_projection`), else None

The names are transformers' (`BaseModelOutputWithPooling`, `CLIPTextModelOutput`) so readers can
switch between the two. Which field each diffusion model uses
(docs/checkpoints.md#which-encoder-output-each-diffusion-model-uses):
  PixArt-α/Σ      T5-XXL  last_hidden_state (120 / 300 tokens), with the attention mask
  SD3 / 3.5       CLIP-L  hidden_states[-2] + pooler_output (unprojected)
                  bigG    hidden_states[-2] + text_embeds   (projected)
                  T5-XXL  last_hidden_state, *without* an attention mask
  Hunyuan-DiT     BERT    last_hidden_state (77 tokens, with mask); mT5-XL last_hidden_state (256)

Shape legend: B batch, L tokens, D width, nh heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextEncoderOutput:
    last_hidden_state: torch.Tensor                       # (B, L, D)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # N+1 entries of (B, L, D)
    pooler_output: torch.Tensor | None = None             # (B, D)
    text_embeds: torch.Tensor | None = None               # (B, P)


def padding_bias(attention_mask, dtype):
    """(B, L) mask, 1 = real token, 0 = padding  ->  (B, 1, 1, L) additive bias for the scores.

    Padding keys get the most negative finite number rather than -inf, as transformers does: a
    row whose keys are all padding then averages them instead of producing NaN.
    """
    mask = attention_mask[:, None, None, :].to(dtype)                           # (B, 1, 1, L)
    return (1.0 - mask) * torch.finfo(dtype).min


def check_ids(input_ids, vocab_size: int, what: str):
    """Clear errors for the two usual mistakes: a 1-D tensor, or ids from another tokenizer."""
    if input_ids.dim() != 2:
        raise ValueError(f"{what} expects input_ids of shape (B, L), got {tuple(input_ids.shape)}; "
                         "add a batch dimension with input_ids[None]")
    if input_ids.is_meta or not input_ids.numel():      # meta: no values to check (shape-only runs)
        return
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size:
        raise ValueError(f"{what}: token ids must lie in [0, {vocab_size}), got ids from "
                         f"{int(input_ids.min())} to {int(input_ids.max())}. Was the prompt tokenized "
                         "with this model's own tokenizer?")
