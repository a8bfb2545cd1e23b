"""Load BERT encoders into `minidit.text.bert.BertModel`, and the WordPiece tokenizer.

Layouts (facts: docs/checkpoints.md#bert, docs/checkpoints.md#tokenizers):
  * transformers `BertModel` folders (Hunyuan-DiT's `t2i/clip_text_encoder/`, sentence-transformers'
    all-MiniLM-L6-v2, the diffusers Hunyuan pipeline's `text_encoder/`), or a pipeline root.
  * dumps of `BertForMaskedLM` / `BertForPreTraining` / ... whose keys start with `bert.`: the
    prefix is removed and the task heads (`cls.*`) — which the encoder never uses — are dropped.
  * old transformers saves also hold the buffers `embeddings.position_ids` (0..511) and
    `embeddings.token_type_ids` (zeros); they are checked and dropped.
A checkpoint without `pooler.dense.*` loads into a model built with `add_pooling_layer=False`.

Config from tensors: everything but the head count comes from the shapes; heads from the
(layers, width) of released models: (24, 1024) 16 (Hunyuan's BERT), (12, 768) 12 (BERT-base),
(6, 384) 12 (MiniLM-L6), (12, 384) 12 (MiniLM-L12). Pass `config=` for anything else.
"""
from __future__ import annotations

import torch

from minidit.text.bert import BertConfig, BertModel
from minidit.text.tokenizers import WordPieceTokenizer
from .configs import read_config, translate_config
from .errors import CheckpointError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .keymap import count_blocks
from .stream import reading_dtype
from .text_io import model_folder, read_json, tokenizer_folder, tokenizer_max_length

MODEL_TYPES = ("bert",)
HEADS_BY_SIZE = {(24, 1024): 16, (12, 768): 12, (6, 384): 12, (12, 384): 12}


def load_bert(source, config: BertConfig | None = None, *, overrides: dict | None = None, dtype=torch.float32,
              device="cpu", component: str | None = None) -> BertModel:
    """Load a BERT encoder (eval mode) from a transformers folder, a pipeline root
    (`component="text_encoder"` to choose), a single file or a state dict.
    `overrides`: `BertConfig` fields set on the config read or detected (or on `config`)."""
    folder = model_folder(source, MODEL_TYPES, component, "BERT encoder")
    sd = bert_from_transformers(read_state_dict(folder if folder is not None else source, dtype=reading_dtype(dtype)))
    if config is None and folder is not None:
        config = translate_config(bert_config_from_transformers, read_config(folder), "pooler.dense.weight" in sd)
    config = apply_overrides(config or detect_bert_config(sd), overrides)
    what = f"BERT folder {folder}" if folder is not None else (
        "BERT state dict" if isinstance(source, dict) else f"BERT checkpoint {source}")
    model = build_on_meta(BertModel, config)
    return load_into(model, sd, dtype=dtype, device=device, what=what)


def bert_from_transformers(sd: dict) -> dict:
    """transformers keys -> minidit's: no `bert.` prefix, no task heads, no stored index buffers."""
    if any(k.startswith("bert.") for k in sd):
        sd = {k.removeprefix("bert."): v for k, v in sd.items() if not k.startswith("cls.")}
    ids = sd.pop("embeddings.position_ids", None)
    if ids is not None and not ids.is_meta and not torch.equal(ids.flatten(), torch.arange(ids.numel())):
        raise CheckpointError("embeddings.position_ids is not 0, 1, 2, ...: not a BERT minidit can represent")
    types = sd.pop("embeddings.token_type_ids", None)
    if types is not None and not types.is_meta and types.any():
        raise CheckpointError("embeddings.token_type_ids is not all zeros: not a BERT minidit can represent")
    return sd


def detect_bert_config(sd: dict) -> BertConfig:
    """A `BertConfig` read off the tensors (rules in the module docstring)."""
    try:
        vocab_size, width = sd["embeddings.word_embeddings.weight"].shape
        positions = sd["embeddings.position_embeddings.weight"].shape[0]
        types = sd["embeddings.token_type_embeddings.weight"].shape[0]
        ffn = sd["encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"this does not look like a BERT: no {e.args[0]!r} (first keys: {sorted(sd)[:6]})") from None
    layers = count_blocks(sd, "encoder.layer.")
    if (layers, width) not in HEADS_BY_SIZE:
        raise CheckpointError(f"{layers} layers of width {width} is not one of the released BERT sizes "
                              f"{sorted(HEADS_BY_SIZE)}, so the number of heads cannot be read off the weights: "
                              "pass config=BertConfig(...) (or load the folder with its config.json)")
    return BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=layers,
                      num_attention_heads=HEADS_BY_SIZE[(layers, width)], intermediate_size=ffn,
                      max_position_embeddings=positions, type_vocab_size=types,
                      add_pooling_layer="pooler.dense.weight" in sd)


def bert_config_from_transformers(cfg: dict, has_pooler: bool) -> BertConfig:
    """Translate a transformers BertConfig config.json (`add_pooling_layer` comes from the weights)."""
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type={cfg['position_embedding_type']!r}: minidit's BERT has "
                              "absolute positions only")
    return BertConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                      num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
                      intermediate_size=cfg["intermediate_size"], hidden_act=cfg.get("hidden_act", "gelu"),
                      max_position_embeddings=cfg.get("max_position_embeddings", 512),
                      type_vocab_size=cfg.get("type_vocab_size", 2), layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
                      add_pooling_layer=has_pooler)


HOW_TO_GET_VOCAB = ("Download it, e.g. `huggingface-cli download sentence-transformers/all-MiniLM-L6-v2 vocab.txt "
                    "--local-dir <folder>` (Hunyuan-DiT: `t2i/tokenizer/vocab.txt`; diffusers Hunyuan: "
                    "`tokenizer/vocab.txt`), or copy it next to tokenizer.json.")


def load_bert_tokenizer(source, *, component: str | None = None) -> WordPieceTokenizer:
    """A `WordPieceTokenizer` from a folder with vocab.txt (options from its tokenizer_config.json:
    do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length), or a pipeline root."""
    folder = tokenizer_folder(source, ("vocab.txt",), ("BertTokenizer", "BertTokenizerFast"), component,
                              "BERT tokenizer", HOW_TO_GET_VOCAB)
    # One token per line; the line number is the id. Only the line break is stripped: tokens may
    # be odd characters, and a blank line is still an id.
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token.rstrip("\r"): i for i, token in enumerate(lines)}
    settings = read_json(folder / "tokenizer_config.json")
    return WordPieceTokenizer(vocab, do_lower_case=settings.get("do_lower_case", True),
                              strip_accents=settings.get("strip_accents"),
                              tokenize_chinese_chars=settings.get("tokenize_chinese_chars", True),
                              model_max_length=tokenizer_max_length(folder) or 512)
