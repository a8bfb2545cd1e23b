"""Load T5 v1.1 / mT5 encoders into `minidit.text.t5.T5EncoderModel`, and their tokenizer.

Layouts (facts: docs/checkpoints.md#t5-v11-and-mt5) — all use transformers' key names:
  * transformers folders: `T5EncoderModel` / `MT5EncoderModel` (`model.safetensors`, or shards with
    `model.safetensors.index.json` / `pytorch_model.bin.index.json` as `DeepFloyd/t5-v1_1-xxl`), or
    a pipeline root whose `text_encoder*/` holds one (PixArt `text_encoder/`, SD3 `text_encoder_3/`,
    diffusers Hunyuan-DiT `text_encoder_2/`).
  * SD3's `text_encoders/t5xxl_fp16.safetensors` (no config; no `shared.weight`, only
    `encoder.embed_tokens.weight`), also inside a whole SD3 file under `text_encoders.t5xxl.transformer.`.
  * a full `T5ForConditionalGeneration` checkpoint (`google/t5-v1_1-xxl`): the encoder is taken,
    and the `decoder.*` and `lm_head.weight` tensors — which the encoder never uses — are dropped.

`shared.weight` and `encoder.embed_tokens.weight` are one tied table in transformers; files hold
either or both. minidit keeps `shared.weight` (after checking the two are equal).

Config from tensors (files without config.json): d_model and vocab from the embedding, layers
from the block count, heads and buckets from `relative_attention_bias` (buckets x heads), d_kv
from q (heads*d_kv x d_model), d_ff from `wi_0`. Not in the weights, taken as in every released
v1.1/mT5 model: eps 1e-6, max_distance 128.

dtype=torch.float16 follows minidit's fp16 policy (`minidit.text.t5.t5_weight_dtype`): the
feed-forward output weights `wo` stay fp32, so the encoder does not overflow.
"""
from __future__ import annotations

from pathlib import Path

import torch

from minidit.text.t5 import T5Config, T5EncoderModel, t5_weight_dtype
from minidit.text.tokenizers import T5Tokenizer
from .configs import read_config, translate_config
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, check_state_dict, load_into, read_state_dict, wrong_file_message
from .keymap import count_blocks
from .text_io import model_folder, read_text_encoder, tokenizer_folder, tokenizer_max_length

MODEL_TYPES = ("t5", "mt5")
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def load_t5(source, config: T5Config | None = None, *, overrides: dict | None = None, dtype=torch.float32,
            device="cpu", component: str | None = None) -> T5EncoderModel:
    """Load a T5 v1.1 / mT5 encoder (eval mode) from a transformers folder, a pipeline root
    (`component="text_encoder_3"` to choose), a single file or a state dict.
    `overrides`: `T5Config` fields set on the config read or detected (or on `config`)."""
    folder = model_folder(source, MODEL_TYPES, component, "T5 encoder")
    # the fp16 policy casts per key, as each tensor is read (no float32 copy of T5-XXL next to the cast one)
    policy = None if dtype is None else (lambda key: t5_weight_dtype(key, dtype))
    if folder is not None:
        config = config or translate_config(t5_config_from_transformers, read_config(folder))   # before the weights
        sd = read_state_dict(folder, dtype=policy)
        what = f"T5 encoder folder {folder}"
    else:
        sd = read_text_encoder(source, ("t5xxl", "t5"), component, "T5 encoder", policy)
        what = "T5 state dict" if isinstance(source, dict) else f"T5 checkpoint {source}"
    sd = t5_from_transformers(sd)
    config = apply_overrides(config or detect_t5_config(sd), overrides)
    model = build_on_meta(T5EncoderModel, config)
    check_state_dict(model, sd, what)             # before anything is copied
    # The fp16 policy casts per key; cast and move in one step (no converted copy of T5-XXL in CPU memory).
    sd = {k: v.to(device=device, dtype=t5_weight_dtype(k, dtype) if v.is_floating_point() else None)
          for k, v in sd.items()}
    return load_into(model, sd, dtype=None, device=device, what=what)


def t5_from_transformers(sd: dict) -> dict:
    """transformers T5 keys -> minidit's: one embedding table (`shared.weight`), encoder only."""
    sd = {k: v for k, v in sd.items() if not (k.startswith("decoder.") or k == "lm_head.weight")}
    embed = sd.pop("encoder.embed_tokens.weight", None)
    if embed is not None:
        shared = sd.setdefault("shared.weight", embed)
        if shared is not embed and not (shared.is_meta or embed.is_meta) and not torch.equal(shared, embed):
            raise CheckpointError("shared.weight and encoder.embed_tokens.weight differ; in T5 they are one tied "
                                  "table, so this checkpoint is not a T5 encoder minidit can represent")
    return sd


def detect_t5_config(sd: dict) -> T5Config:
    """A `T5Config` read off the tensors (rules in the module docstring)."""
    try:
        vocab_size, d_model = sd["shared.weight"].shape
        rel = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]   # (buckets, nh)
        inner = sd["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]               # nh * d_kv
    except KeyError as e:
        raise CheckpointError(f"this does not look like a T5 encoder: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    if "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" not in sd:
        raise CheckpointError("this T5 has no gated feed-forward (wi_0/wi_1): it is an original T5, not the "
                              "T5 v1.1 / mT5 encoder that diffusion models use")
    num_buckets, num_heads = rel.shape
    return T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=inner // num_heads,
                    d_ff=sd["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
                    num_layers=count_blocks(sd, "encoder.block."), num_heads=num_heads,
                    relative_attention_num_buckets=num_buckets)


def t5_config_from_transformers(cfg: dict) -> T5Config:
    """Translate a transformers T5Config / MT5Config config.json."""
    if cfg.get("feed_forward_proj") != "gated-gelu" or cfg.get("dense_act_fn", "gelu_new") not in TANH_GELU:
        raise CheckpointError(f"feed_forward_proj={cfg.get('feed_forward_proj')!r}, dense_act_fn="
                              f"{cfg.get('dense_act_fn')!r}: minidit builds the T5 v1.1 / mT5 encoder "
                              "(gated-gelu with the tanh GELU)")
    return T5Config(vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], d_kv=cfg["d_kv"], d_ff=cfg["d_ff"],
                    num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
                    relative_attention_num_buckets=cfg.get("relative_attention_num_buckets", 32),
                    relative_attention_max_distance=cfg.get("relative_attention_max_distance", 128),
                    layer_norm_epsilon=cfg.get("layer_norm_epsilon", 1e-6))


HOW_TO_GET_SPIECE = ("Download it from the model's repository, e.g. `huggingface-cli download google/t5-v1_1-xxl "
                     "spiece.model --local-dir <folder>` (PixArt: `PixArt-alpha/PixArt-XL-2-1024-MS "
                     "tokenizer/spiece.model`; SD3: `tokenizer_3/spiece.model`; mT5: `google/mt5-xl spiece.model`), "
                     "or copy it next to tokenizer.json.")


def load_t5_tokenizer(source, *, component: str | None = None, model_max_length: int | None = None) -> T5Tokenizer:
    """A `T5Tokenizer` from a `spiece.model` file, a folder holding one, or a pipeline root
    (its `tokenizer*/` folder of class T5Tokenizer; `component="tokenizer_3"` to choose)."""
    if str(source).endswith(".model"):
        return _spiece(Path(source), model_max_length)
    folder = tokenizer_folder(source, ("spiece.model",), ("T5Tokenizer", "T5TokenizerFast", "MT5Tokenizer",
                                                          "MT5TokenizerFast"), component, "T5 tokenizer",
                              HOW_TO_GET_SPIECE)
    if model_max_length is None:
        model_max_length = tokenizer_max_length(folder)
    return _spiece(folder / "spiece.model", model_max_length)


def _spiece(path: Path, model_max_length: int | None) -> T5Tokenizer:
    """T5Tokenizer(path), its refusals (a damaged or foreign file) as CheckpointErrors naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist. {HOW_TO_GET_SPIECE}")
    problem = wrong_file_message(path, "spiece")
    if problem:
        raise CheckpointError(problem)
    try:
        return T5Tokenizer(path, model_max_length)
    except (RuntimeError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable sentencepiece model ({reason}): download it again. "
                              f"{HOW_TO_GET_SPIECE}") from None
