"""Three ways to condition a DiT on text, side by side, at one parameter budget (issue 17's experiment).

Papers: DiT (Peebles & Xie, arXiv:2212.09748, §3.2: adaLN-Zero, the condition enters only through
the LayerNorms' shift/scale/gate), PixArt-α (Chen et al., arXiv:2310.00426, §2.3: adaLN-single for the
timestep + cross-attention to the caption tokens), SD3 (Esser et al., arXiv:2403.03206, §4: MM-DiT,
text and image tokens in one joint attention, the pooled text in the adaLN vector). Text encoder:
BERT (Devlin et al., arXiv:1810.04805). Nothing here is a new block: the designs are assembled from
`minidit.dit.DiTBlock`, `minidit.pixart.PixArtBlock` and `minidit.mmdit.JointBlock`, with the
library's patch embedding, timestep embedder and final layers, so what is measured is the
library's code. There is no official checkpoint of these toys; `ToyT2I` is trained from scratch
(`scripts/conditioning_experiment.py`).

    ids, mask --BertModel (tiny, trained jointly, the same in all designs)--> tokens (B, L, Dt), pooled (B, Dt)
    x (B, 3, 24, 24) --patch embed + 2-D sin-cos--> (B, T, D)
    "adaln"  c = t_embedder(t) + y_embedder(pooled)              N x DiTBlock(x, c)       FinalLayer(x, c)
    "cross"  t = t_embedder(t), t0 = t_block(t)                  N x PixArtBlock(x, y_embedder(tokens), t0, mask)
                                                                 T2IFinalLayer(x, t)
    "mmdit"  c = t_embedder(t) + y_embedder(pooled)              N x JointBlock(context_embedder(tokens), x, c)
                                                                 FinalLayer(x, c)
    out (B, 3, 24, 24): the velocity (rectified flow) or eps (DDPM) — the network does not know which

Choices, and why:
  pooled text = BERT's `pooler_output`, tanh(dense(h_[CLS])): one learned summary token that can
      attend to the whole caption and weigh its words (a masked mean gives every word, distractor
      clauses included, the same weight; SD3's pooled CLIP vector is also one token's state, not a mean).
  The pooled vector goes through SD3's `VectorEmbedder` (Linear-SiLU-Linear) in both "adaln" and
      "mmdit", so those two differ only by the token stream.
  "mmdit" attends over [caption tokens, image tokens] with no padding mask, as SD3 (the library's
      JointBlock has none): padded positions are tokens too, always the same ones for a given length.
  Unconditional input for classifier-free guidance = the empty caption "" ([CLS] [SEP]), encoded by
      the same BERT; training drops captions to "" (`drop_captions`), no learned null embedding.
  Initialisation: the library's for each block (DiT's adaLN-Zero: zero modulation and output; PixArt's:
      zero cross-attention output and final Linear); MM-DiT gets DiT's zeroing too (the official code
      ships no initialiser); BERT N(0, 0.02) as BERT's.

Glossary (paper symbol | code name | key in this module's state dict)
  c (adaLN vector)            | c                       | t_embedder.mlp.*, y_embedder.mlp.*
  γ, β, α (adaLN-Zero)        | shift/scale/gate        | blocks.i.adaLN_modulation.1
  S̄ = MLP(t) (adaLN-single)  | t0                      | t_block.1;  E^(i): blocks.i.scale_shift_table
  caption tokens (cross/joint)| y / context             | y_embedder.y_proj.* / context_embedder
  text encoder                | text_encoder            | text_encoder.* (BERT keys)

Shape legend: B batch, T = (24/p)^2 image tokens, L caption tokens (text_max_length), D image width,
Dt text width, p patch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .dit import DiTBlock, FinalLayer
from .embed import PatchEmbed, TimestepEmbedder, cached_2d_sincos_pos_embed, init_linears_and_patch_embed, unpatchify
from .errors import InputError
from .mmdit import JointBlock, VectorEmbedder
from .pixart import CaptionEmbedder, PixArtBlock, T2IFinalLayer, initialize_pixart_weights
from .text.bert import BertConfig, BertModel
from .text.tokenizers import WordPieceTokenizer

DESIGNS = ("adaln", "cross", "mmdit")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


@dataclass(frozen=True)
class ToyT2IConfig:
    design: str = "adaln"             # "adaln" | "cross" | "mmdit"
    input_size: int = 24              # H = W (pixels: no VAE)
    patch_size: int = 4               # p
    in_channels: int = 3              # RGB
    hidden_size: int = 68             # D
    depth: int = 3                    # N blocks (MM-DiT: joint layers)
    num_heads: int = 4
    mlp_ratio: float = 4.0
    text_vocab_size: int = 52         # len(toy_tokenizer(VOCABULARY).vocab): 4 specials + the world's 48 words
    text_hidden_size: int = 32        # Dt
    text_layers: int = 2
    text_heads: int = 4
    text_max_length: int = 40         # L: [CLS] + words + [SEP] (level 4: up to 35); longer ones are refused
    learn_sigma: bool = False         # the experiment trains eps (DDPM) or v (flow): C_out = C

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, not {self.design!r}")
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not divisible by patch_size {self.patch_size}")

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def bert(self) -> BertConfig:
        return BertConfig(vocab_size=self.text_vocab_size, hidden_size=self.text_hidden_size,
                          num_hidden_layers=self.text_layers, num_attention_heads=self.text_heads,
                          intermediate_size=4 * self.text_hidden_size,
                          max_position_embeddings=self.text_max_length, type_vocab_size=1)


class ToyTokenizer(WordPieceTokenizer):
    """The library's WordPiece tokenizer over a closed word list, made strict: a word outside the list
    or a caption longer than `model_max_length` tokens is an InputError (never [UNK], never cut)."""

    def __call__(self, texts, max_length: int | None = None, padding: str = "max_length"):
        limit = self.model_max_length if max_length is None else max_length
        for text in [texts] if isinstance(texts, str) else texts:
            if not isinstance(text, str):
                raise InputError(f"captions must be strings, got {text!r:.60}")
            unknown = [w for w in self.basic_tokenize(text) if self.wordpiece(w) == ["[UNK]"]]
            if unknown:
                raise InputError(f"caption {text!r}: unknown word(s) {unknown}; the toy world's vocabulary is "
                                 f"{sorted(w for w in self.vocab if w not in SPECIAL_TOKENS)}")
            n = len(self.encode(text)) + 2
            if n > limit:
                raise InputError(f"caption {text!r} has {n} tokens with [CLS] and [SEP], more than this model's "
                                 f"{limit}: shorten it (captions are refused, not cut)")
        return super().__call__(texts, max_length, padding)


def toy_tokenizer(vocabulary, max_length: int = ToyT2IConfig.text_max_length) -> ToyTokenizer:
    """A WordPiece tokenizer whose vocabulary is [PAD] [UNK] [CLS] [SEP] + the given words (each word
    one token: the toy world's `VOCABULARY`; punctuation too, as BERT splits it off). Ids are stable:
    the specials first, then the words in the order given."""
    words = [w.lower() for w in vocabulary]
    if len(set(words)) != len(words) or any(not w or " " in w for w in words):
        raise ValueError("the vocabulary must be distinct single words")
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    return ToyTokenizer(vocab, model_max_length=max_length)


class ToyT2I(nn.Module):
    """forward(x, t, input_ids, attention_mask) -> (B, C_out, 24, 24); see the module docstring."""

    def __init__(self, config: ToyT2IConfig = ToyT2IConfig()):
        super().__init__()
        self.config = c = config
        D, Dt, nh = c.hidden_size, c.text_hidden_size, c.num_heads
        self.text_encoder = BertModel(c.bert)
        self.x_embedder = PatchEmbed(c.patch_size, c.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        if c.design == "adaln":
            self.y_embedder = VectorEmbedder(Dt, D)
            self.blocks = nn.ModuleList([DiTBlock(D, nh, c.mlp_ratio) for _ in range(c.depth)])
            self.final_layer = FinalLayer(D, c.patch_size, c.out_channels)
        elif c.design == "cross":
            self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
            # PixArt's caption projection (y_proj); uncond_prob 0: the null caption is "" through BERT
            self.y_embedder = CaptionEmbedder(Dt, D, 0.0, c.text_max_length)
            self.blocks = nn.ModuleList([PixArtBlock(D, nh, c.mlp_ratio) for _ in range(c.depth)])
            self.final_layer = T2IFinalLayer(D, c.patch_size, c.out_channels)
        else:
            self.y_embedder = VectorEmbedder(Dt, D)
            self.context_embedder = nn.Linear(Dt, D)
            self.joint_blocks = nn.ModuleList([JointBlock(D, nh, c.mlp_ratio, pre_only=i == c.depth - 1)
                                               for i in range(c.depth)])
            self.final_layer = FinalLayer(D, c.patch_size, c.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """Each design as its library model starts (module docstring); then BERT as BERT starts."""
        if self.config.design == "cross":
            initialize_pixart_weights(self)
        else:
            init_linears_and_patch_embed(self)
            nn.init.zeros_(self.x_embedder.proj.bias)
            for linear in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
                nn.init.normal_(linear.weight, std=0.02)
            blocks = self.blocks if self.config.design == "adaln" else [
                b for j in self.joint_blocks for b in (j.context_block, j.x_block)]
            for module in [*blocks, self.final_layer]:
                nn.init.zeros_(module.adaLN_modulation[-1].weight)
                nn.init.zeros_(module.adaLN_modulation[-1].bias)
            nn.init.zeros_(self.final_layer.linear.weight)
            nn.init.zeros_(self.final_layer.linear.bias)
        for module in self.text_encoder.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def encode_text(self, input_ids, attention_mask):
        """(B, L) ids and mask (1 = real token) -> tokens (B, L, Dt) (BERT's last_hidden_state) and
        pooled (B, Dt) (BERT's pooler_output)."""
        out = self.text_encoder(input_ids, attention_mask)
        return out.last_hidden_state, out.pooler_output

    def forward(self, x, t, input_ids, attention_mask):
        """x (B, 3, H, W) noisy images, t (B,) timesteps (0..999, or 1000 sigma), caption ids and mask (B, L)."""
        c = self.config
        if x.shape[-2:] != (c.input_size, c.input_size):
            raise InputError(f"this model makes {c.input_size}x{c.input_size} images, got {tuple(x.shape[-2:])}")
        p = c.patch_size
        h = w = c.input_size // p
        tokens, pooled = self.encode_text(input_ids, attention_mask)                  # (B, L, Dt), (B, Dt)
        x = self.x_embedder(x) + cached_2d_sincos_pos_embed(c.hidden_size, h, w, device=x.device,
                                                            dtype=x.dtype)[None]     # (B, T, D)
        temb = self.t_embedder(t)                                                     # (B, D)
        if c.design == "adaln":
            cond = temb + self.y_embedder(pooled)                                     # (B, D)
            for block in self.blocks:
                x = block(x, cond)                                                    # (B, T, D)
            x = self.final_layer(x, cond)                                             # (B, T, p*p*C_out)
        elif c.design == "cross":
            t0 = self.t_block(temb)                                                   # (B, 6D)
            y = self.y_embedder(tokens)                                               # (B, L, D)
            mask = attention_mask.bool()
            for block in self.blocks:
                x = block(x, y, t0, mask, (h, w))                                     # (B, T, D)
            x = self.final_layer(x, temb)                                             # (B, T, p*p*C_out)
        else:
            cond = temb + self.y_embedder(pooled)                                     # (B, D)
            context = self.context_embedder(tokens)                                   # (B, L, D)
            for block in self.joint_blocks:
                context, x = block(context, x, cond)                                  # (B, L, D), (B, T, D)
            x = self.final_layer(x, cond)                                             # (B, T, p*p*C_out)
        return unpatchify(x, p, h, w)                                                 # (B, C_out, H, W)


def drop_captions(input_ids, attention_mask, empty_ids, empty_mask, p_uncond: float, generator=None):
    """Caption dropout for classifier-free guidance: each row is replaced, with probability p_uncond,
    by the empty caption's (1, L) ids and mask. -> (ids, mask, drop (B,) bool)."""
    drop = torch.rand(input_ids.shape[0], generator=generator) < p_uncond
    ids = torch.where(drop[:, None], empty_ids, input_ids)
    mask = torch.where(drop[:, None], empty_mask, attention_mask)
    return ids, mask, drop


def parameter_groups(model: ToyT2I) -> dict[str, int]:
    """Where the parameters sit: text encoder / blocks / conditioning (embedders of t, pooled text and
    caption tokens, PixArt's shared t_block) / the rest (patch embedding, final layer)."""
    groups = {"text_encoder": 0, "blocks": 0, "conditioning": 0, "other": 0}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        key = ("text_encoder" if top == "text_encoder" else "blocks" if top in ("blocks", "joint_blocks")
               else "conditioning" if top in ("t_embedder", "y_embedder", "context_embedder", "t_block")
               else "other")
        groups[key] += p.numel()
    groups["total"] = sum(groups.values())
    return groups


# --------------------------------------------------------------------------------------------
# Presets: one parameter budget (within ±3 %), the same text encoder, patch and width
# --------------------------------------------------------------------------------------------
ADALN = ToyT2IConfig(design="adaln", hidden_size=68, depth=3)
# PixArt's block is 2D^2 lighter than DiT's (no per-block adaLN Linear) but shares one 6D^2 t_block:
# at depth 3 the two cancel, so the same width. MM-DiT carries a second set of weights for the text
# stream: narrower. (Totals: 327 392 / 319 368 / 323 456, within 2.5 %.)
CROSS = replace(ADALN, design="cross")
MMDIT = replace(ADALN, design="mmdit", hidden_size=52)
PRESETS = {"adaln": ADALN, "cross": CROSS, "mmdit": MMDIT}
# The built-in text-to-image model (`pipelines/toy_t2i.py`): the cross-attention design, wider and deeper
# than the experiment's budget (1.4 M parameters), trained longer (`conditioning_experiment.py --built-in`).
BUILT_IN = replace(CROSS, hidden_size=128, depth=4, text_hidden_size=64)
