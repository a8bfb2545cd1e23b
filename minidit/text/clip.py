"""The CLIP text transformer: SD3's CLIP-L/14 and OpenCLIP bigG/14 (also SDXL's two encoders).

Papers: CLIP (Radford et al., arXiv:2103.00020) §2.4 — a GPT-2-style transformer over the
lower-cased byte-pair encoding, causal attention, the [EOS] activation of the last layer (after
LayerNorm) linearly projected as the text feature; OpenCLIP scaling (Cherti et al.,
arXiv:2212.07143) for ViT-bigG/14. Official code: openai/CLIP `model.py`, mlfoundations/open_clip
`transformer.py TextTransformer`. Attribute names are Hugging Face transformers'
`CLIPTextModelWithProjection` keys without the `text_model.` prefix (the layout of
`openai/clip-vit-large-patch14`, SD3's `text_encoder/`, `text_encoder_2/`,
`text_encoders/clip_{l,g}.safetensors`); `weights_loader/clip.py` also reads OpenCLIP's own layout.

    ids (B, L) -> token_embedding + position_embedding[:L]            (B, L, D)
    N x pre-LN block:  x = x + Attn(LN1(x), causal)      token i sees tokens 0..i only
                       x = x + fc2(act(fc1(LN2(x))))     act = quick_gelu (CLIP-L) | gelu (bigG)
    last_hidden_state = final_layer_norm(x)
    pooler_output     = last_hidden_state[b, position of the first EOS token]
    text_embeds       = text_projection(pooler_output)                 (no bias)

SD3 uses hidden_states[-2] — the output of the second-to-last block, *without* the final
LayerNorm — as the sequence, CLIP-L's pooler_output (unprojected) and bigG's text_embeds as the
pooled vectors (docs/checkpoints.md#which-encoder-output-each-diffusion-model-uses).

Glossary (paper symbol | code name | checkpoint key)
  width          | hidden_size          | embeddings.token_embedding.weight.shape[1]
  context (77)   | max_position_embeddings | embeddings.position_embedding.weight.shape[0]
  W_t (text proj)| text_projection      | text_projection.weight (OpenCLIP: text_projection, transposed)
  [EOS] 49407    | eos_token_id         | —

Shape legend: B batch, L tokens (<= 77), D width, P projection width, nh heads, hd head dim.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention, merge_heads, split_heads
from .common import TextEncoderOutput, check_ids, padding_bias


@dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 768                      # D
    intermediate_size: int = 3072               # MLP width
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"              # OpenAI's CLIP-L; OpenCLIP (bigG, H) use "gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407                   # pooling position: the first EOS of each row
    # Not a transformers config field: the width of `text_projection`, or None for a model without one.
    projection_dim: int | None = 768

    def __post_init__(self):
        if self.hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"hidden_act={self.hidden_act!r}: CLIP text towers use 'quick_gelu' or 'gelu'")


def quick_gelu(x):
    """OpenAI CLIP's sigmoid approximation of GELU: x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


class CLIPTextEmbeddings(nn.Module):
    """Token embedding + learned absolute positions (key prefix `embeddings.`)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids):
        L = input_ids.shape[1]
        if L > self.position_embedding.num_embeddings:
            raise ValueError(f"CLIP has {self.position_embedding.num_embeddings} positions but got {L} tokens; "
                             "tokenize with max_length=77 (minidit's CLIPTokenizer truncates and warns)")
        positions = torch.arange(L, device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(positions)   # (B, L, D)


class CLIPAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (all with bias)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        D = config.hidden_size
        if D % config.num_attention_heads:
            raise ValueError(f"width {D} is not divisible by {config.num_attention_heads} heads")
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, D)
        self.v_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(D, D)

    def forward(self, x, mask):
        q = split_heads(self.q_proj(x), self.num_heads)                            # (B, nh, L, hd)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        return self.out_proj(merge_heads(attention(q, k, v, mask)))                # (B, L, D)


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.act = quick_gelu if config.hidden_act == "quick_gelu" else F.gelu
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    """A pre-LN transformer block (GPT-2 style)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    """The stack of blocks (key prefix `encoder.layers.`)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, mask, keep_all: bool = True):
        """[embeddings, block 0 output, ..., last block output]; with keep_all=False only the last
        entry (the others are not held in memory: for bigG that is 32 x B x L x 1280 floats)."""
        hidden = [x]                                         # embeddings, then every block's output
        for layer in self.layers:
            x = layer(x, mask)                                                     # (B, L, D)
            if keep_all:
                hidden.append(x)
            else:
                hidden[0] = x
        return hidden


def causal_bias(length: int, dtype, device=None):
    """(L, L) additive mask: 0 where key j <= query i, the most negative number where j > i."""
    future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill(future, torch.finfo(dtype).min)


class CLIPTextModel(nn.Module):
    """CLIP's text tower: token ids -> per-token states, the pooled EOS state and its projection.

    forward(input_ids, attention_mask=None, output_hidden_states=False) -> TextEncoderOutput with
    `pooler_output` (unprojected) and `text_embeds` (projected; None without `text_projection`).
    `attention_mask` is optional: with right padding the causal mask already hides the padding
    from every real token, and SD3 passes none.
    """

    def __init__(self, config: CLIPTextConfig = CLIPTextConfig()):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.projection_dim is not None:
            self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def forward(self, input_ids, attention_mask=None, output_hidden_states: bool = False):
        check_ids(input_ids, self.config.vocab_size, "CLIPTextModel")
        B, L = input_ids.shape
        x = self.embeddings(input_ids)                                             # (B, L, D)
        mask = causal_bias(L, x.dtype, x.device)[None, None]                       # (1, 1, L, L)
        if attention_mask is not None:   # min + min would overflow to -inf: clamp the sum
            mask = (mask + padding_bias(attention_mask, x.dtype)).clamp(min=torch.finfo(x.dtype).min)
        hidden = self.encoder(x, mask, keep_all=output_hidden_states)
        last = self.final_layer_norm(hidden[-1])                                   # (B, L, D)
        pooled = last[torch.arange(B, device=last.device), self.eos_positions(input_ids)]  # (B, D)
        return TextEncoderOutput(
            last_hidden_state=last,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            pooler_output=pooled,
            text_embeds=self.text_projection(pooled) if self.config.projection_dim is not None else None)

    def eos_positions(self, input_ids):
        """Index of the first EOS token in each row (B,). OpenAI's code takes argmax(input_ids),
        the same position for the real vocabulary, where EOS (49407) is the largest id."""
        is_eos = input_ids == self.config.eos_token_id                             # (B, L)
        missing = [] if is_eos.is_meta else (~is_eos.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"rows {missing} of input_ids contain no EOS token (id {self.config.eos_token_id}), "
                             "so CLIP's pooled output is undefined; tokenize with minidit.text.tokenizers."
                             "CLIPTokenizer, which always ends a prompt with EOS")
        return is_eos.int().argmax(dim=1)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

CLIP_TINY = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, projection_dim=16)     # tests, chapter
CLIP_L = CLIPTextConfig()                                                  # openai/clip-vit-large-patch14
OPENCLIP_BIGG = CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                               num_attention_heads=20, hidden_act="gelu", projection_dim=1280)
OPENCLIP_H = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                            num_attention_heads=16, hidden_act="gelu", projection_dim=1024)  # SD 2.x

PRESETS = {
    "clip-tiny": CLIP_TINY,
    "clip-vit-large-patch14": CLIP_L,
    "openclip-vit-bigG-14": OPENCLIP_BIGG,
    "openclip-vit-h-14": OPENCLIP_H,
}
