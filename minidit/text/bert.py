"""BERT: Hunyuan-DiT's bilingual "CLIP" text tower (a chinese-roberta-wwm-ext-large-shaped BERT)
and sentence-transformers' all-MiniLM-L6-v2.

Paper: BERT (Devlin et al., arXiv:1810.04805) §3 — a bidirectional post-LN transformer encoder
over WordPiece tokens with [CLS] ... [SEP]; the Transformer block of Vaswani et al.
(arXiv:1706.03762). Attribute names are Hugging Face transformers' `BertModel` keys (Hunyuan-DiT's
`t2i/clip_text_encoder/`, the diffusers Hunyuan `text_encoder/`, MiniLM's `model.safetensors`);
`weights_loader/bert.py` also strips the `bert.` prefix of `BertFor...` dumps.

    x = LayerNorm(word_embeddings[ids] + position_embeddings[0..L-1] + token_type_embeddings[types])
    N x post-LN block:  x = LayerNorm(x + dense(Attn(x, padding mask)))          (attention.output)
                        x = LayerNorm(x + dense(gelu(dense(x))))         (intermediate, output)
    last_hidden_state = x;  pooler_output = tanh(pooler.dense(x[:, 0]))          ([CLS] token)

Post-LN (normalise *after* the residual add) is the original Transformer's order; CLIP and T5
normalise before each sub-layer (pre-LN). Hunyuan-DiT uses last_hidden_state (77 tokens, with
the attention mask); the pooler is not used there.

Glossary (paper symbol | code name | checkpoint key)
  H (hidden)     | hidden_size            | embeddings.word_embeddings.weight.shape[1]
  L (layers)     | num_hidden_layers      | encoder.layer.{i}
  A (heads)      | num_attention_heads    | — (not in the weights: config.json or a preset)
  4H (FFN)       | intermediate_size      | encoder.layer.0.intermediate.dense.weight.shape[0]

Shape legend: B batch, L tokens, D = hidden_size, nh heads, hd head dim.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention, merge_heads, split_heads
from .common import TextEncoderOutput, check_ids, padding_bias


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"                    # exact (erf) GELU
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    # Not a BertConfig field but BertModel's constructor argument: whether `pooler.dense` exists.
    add_pooling_layer: bool = True

    def __post_init__(self):
        if self.hidden_act != "gelu":
            raise ValueError(f"hidden_act={self.hidden_act!r}: minidit's BERT uses the exact 'gelu'")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} heads")


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        L = input_ids.shape[1]
        if L > self.position_embeddings.num_embeddings:
            raise ValueError(f"BERT has {self.position_embeddings.num_embeddings} positions but got {L} tokens; "
                             "tokenize with a smaller max_length")
        positions = torch.arange(L, device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))                           # (B, L, D)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    """q, k, v projections and scaled dot-product attention (key names `query`, `key`, `value`)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)

    def forward(self, x, mask):
        q = split_heads(self.query(x), self.num_heads)                              # (B, nh, L, hd)
        k = split_heads(self.key(x), self.num_heads)
        v = split_heads(self.value(x), self.num_heads)
        return merge_heads(attention(q, k, v, mask))                                # (B, L, D)


class BertAddNorm(nn.Module):
    """dense, then the post-LN residual: LayerNorm(residual + dense(h)). Keys `dense`, `LayerNorm`."""

    def __init__(self, in_features: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h, residual):
        return self.LayerNorm(residual + self.dense(h))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertAddNorm(config.hidden_size, config)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x):
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    """One post-LN block: attention + add & norm, feed-forward + add & norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertAddNorm(config.intermediate_size, config)

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): BERT's sentence vector (trained on next-sentence prediction)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))                                      # (B, D)


class BertModel(nn.Module):
    """BERT encoder: forward(input_ids, attention_mask=None, output_hidden_states=False,
    token_type_ids=None) -> TextEncoderOutput (hidden_states: embeddings, then every layer)."""

    def __init__(self, config: BertConfig = BertConfig()):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        if config.add_pooling_layer:
            self.pooler = BertPooler(config)

    def forward(self, input_ids, attention_mask=None, output_hidden_states: bool = False, token_type_ids=None):
        check_ids(input_ids, self.config.vocab_size, "BertModel")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)        # one segment: all type 0
        x = self.embeddings(input_ids, token_type_ids)                              # (B, L, D)
        mask = None if attention_mask is None else padding_bias(attention_mask, x.dtype)  # (B, 1, 1, L)
        hidden = [x]                         # kept only when asked for: each is (B, L, D)
        for layer in self.encoder.layer:
            x = layer(x, mask)                                                      # (B, L, D)
            if output_hidden_states:
                hidden.append(x)
        return TextEncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            pooler_output=self.pooler(x) if self.config.add_pooling_layer else None)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

BERT_TINY = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=128)         # tests
MINILM_L6 = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536)            # sentence-transformers/all-MiniLM-L6-v2
BERT_BASE_UNCASED = BertConfig()
HUNYUAN_BERT = BertConfig(vocab_size=47020, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          intermediate_size=4096)          # chinese-roberta-wwm-ext-large shape, Hunyuan vocab

PRESETS = {
    "bert-tiny": BERT_TINY,
    "all-MiniLM-L6-v2": MINILM_L6,
    "bert-base-uncased": BERT_BASE_UNCASED,
    "hunyuan-dit-bert": HUNYUAN_BERT,
}
