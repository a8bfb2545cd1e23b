"""Load CLIP text towers into `minidit.text.clip.CLIPTextModel`, and the CLIP BPE tokenizer.

Layouts (facts: docs/checkpoints.md#clip-text-towers):
  * transformers folders: `CLIPTextModel` (transformers 5 keys have no `text_model.` prefix, 4.x
    keys do), `CLIPTextModelWithProjection` (`text_model.*` + `text_projection.weight`), or a full
    `CLIPModel` (its `vision_model.*`, `visual_projection.weight` and `logit_scale` are dropped);
    or a pipeline root: SD3 has two, `text_encoder/` (CLIP-L) and `text_encoder_2/` (bigG) —
    choose with `component=`.
  * SD3's `text_encoders/clip_l.safetensors` / `clip_g.safetensors` (transformers layout, no
    config), also inside a whole SD3 file under `text_encoders.clip_{l,g}.transformer.`.
  * OpenCLIP's own layout (open_clip checkpoints, SDXL's `conditioner.embedders.1.model.*`,
    SD 2.x's `cond_stage_model.model.*` once that prefix is the only one): `token_embedding`,
    `positional_embedding`, `transformer.resblocks.{i}.{ln_1, attn.in_proj_*, attn.out_proj, ln_2,
    mlp.c_fc, mlp.c_proj}`, `ln_final`, `text_projection` ((D, P): transposed into the Linear's
    (P, D)); the fused in_proj is split q, k, v (docs/checkpoints.md#fused-attention-weights);
    `visual.*`, `logit_scale` and a stored `attn_mask` are dropped.

Config from tensors: width, vocab, positions, layers, MLP width and projection from the shapes;
heads and activation from the width (768: OpenAI CLIP-L, 12 heads, quick_gelu; 1024: OpenCLIP H,
16, gelu; 1280: OpenCLIP bigG, 20, gelu) — pass `config=` for anything else.
"""
from __future__ import annotations

import gzip

import torch

from minidit.text.clip import CLIPTextConfig, CLIPTextModel
from minidit.text.tokenizers import CLIP_SPECIALS, CLIPTokenizer, bytes_to_unicode
from .configs import read_config, read_json_file, translate_config
from .errors import CheckpointError, ConfigError
from .io import apply_overrides, build_on_meta, load_into, read_state_dict
from .stream import reading_dtype
from .keymap import KeyMap, count_blocks, strip_prefix, transpose
from .text_io import model_folder, read_json, read_text_encoder, tokenizer_folder, tokenizer_max_length

MODEL_TYPES = ("clip_text_model", "clip")
# width -> (heads, activation) of the released text towers (module docstring).
HEADS_AND_ACT_BY_WIDTH = {768: (12, "quick_gelu"), 1024: (16, "gelu"), 1280: (20, "gelu")}
OPENCLIP_PREFIXES = ("conditioner.embedders.1.model.", "cond_stage_model.model.", "model.")


def load_clip(source, config: CLIPTextConfig | None = None, *, overrides: dict | None = None,
              dtype=torch.float32, device="cpu", component: str | None = None) -> CLIPTextModel:
    """Load a CLIP text tower (eval mode) from a transformers folder, a pipeline root
    (`component="text_encoder_2"` for SD3's bigG), a single file (`component="clip_g"` inside a
    whole SD3 file), an OpenCLIP checkpoint or a state dict.
    `overrides`: `CLIPTextConfig` fields set on the config read or detected (or on `config`)."""
    folder = model_folder(source, MODEL_TYPES, component, "CLIP text encoder")
    if folder is not None:
        sd = clip_from_transformers(read_state_dict(folder, dtype=reading_dtype(dtype)))
        config = config or translate_config(clip_config_from_transformers, read_config(folder),
                                            "text_projection.weight" in sd)
        what = f"CLIP folder {folder}"
    else:
        sd = read_text_encoder(source, ("clip_l", "clip_g"), component, "CLIP text encoder", reading_dtype(dtype))
        sd = strip_prefix(sd, OPENCLIP_PREFIXES)
        is_openclip = "transformer.resblocks.0.attn.in_proj_weight" in sd
        sd = clip_from_openclip(sd) if is_openclip else clip_from_transformers(sd)
        config = config or detect_clip_config(sd)
        what = "CLIP state dict" if isinstance(source, dict) else f"CLIP checkpoint {source}"
    config = apply_overrides(config, overrides)
    model = build_on_meta(CLIPTextModel, config)
    return load_into(model, sd, dtype=dtype, device=device, what=what)


def clip_from_transformers(sd: dict) -> dict:
    """transformers keys -> minidit's: drop the `text_model.` prefix and a full CLIPModel's vision
    half; drop the old `position_ids` buffer (after checking it is 0..L-1)."""
    vision = ("vision_model.", "visual_projection.", "logit_scale")
    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.startswith(vision)}
    ids = sd.pop("embeddings.position_ids", None)
    if ids is not None and not ids.is_meta and not torch.equal(ids.flatten(), torch.arange(ids.numel())):
        raise CheckpointError("embeddings.position_ids is not 0, 1, 2, ...: not a CLIP text model minidit can represent")
    return sd


def clip_from_openclip(sd: dict) -> dict:
    """OpenCLIP's `TextTransformer` keys -> minidit's (transformers') names. Every key must be used."""
    keys = KeyMap(sd, "OpenCLIP text", consume=True)
    # A full OpenCLIP model: the image tower and the contrastive temperature are not the text tower;
    # `attn_mask` is the causal mask some versions store as a buffer (recomputed by minidit).
    keys.drop("visual.", "logit_scale", "attn_mask")
    keys.move("token_embedding.weight", "embeddings.token_embedding.weight")
    keys.move("positional_embedding", "embeddings.position_embedding.weight")
    for i in range(count_blocks(sd, "transformer.resblocks.")):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            # the fused in_proj [3D, D] -> q, k, v
            keys.chunk(a + f"attn.in_proj_{kind}", [b + f"self_attn.{n}_proj.{kind}" for n in "qkv"])
            keys.move(a + f"attn.out_proj.{kind}", b + f"self_attn.out_proj.{kind}")
            keys.move(a + f"ln_1.{kind}", b + f"layer_norm1.{kind}")
            keys.move(a + f"ln_2.{kind}", b + f"layer_norm2.{kind}")
            keys.move(a + f"mlp.c_fc.{kind}", b + f"mlp.fc1.{kind}")
            keys.move(a + f"mlp.c_proj.{kind}", b + f"mlp.fc2.{kind}")
    keys.move("ln_final.weight", "final_layer_norm.weight")
    keys.move("ln_final.bias", "final_layer_norm.bias")
    if keys.has("text_projection"):      # a (D, P) matrix used as x @ W; a Linear stores (P, D)
        keys.move("text_projection", "text_projection.weight", transpose)
    return keys.finish()


def detect_clip_config(sd: dict) -> CLIPTextConfig:
    """A `CLIPTextConfig` read off minidit-named tensors (rules in the module docstring)."""
    try:
        vocab_size, width = sd["embeddings.token_embedding.weight"].shape
        positions = sd["embeddings.position_embedding.weight"].shape[0]
        mlp = sd["encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"this does not look like a CLIP text model: no {e.args[0]!r} "
                              f"(first keys: {sorted(sd)[:6]})") from None
    if width not in HEADS_AND_ACT_BY_WIDTH:
        raise CheckpointError(f"width {width} is not one of the released CLIP text towers "
                              f"{sorted(HEADS_AND_ACT_BY_WIDTH)}, so heads and activation cannot be read off "
                              "the weights: pass config=CLIPTextConfig(...)")
    heads, act = HEADS_AND_ACT_BY_WIDTH[width]
    proj = sd.get("text_projection.weight")
    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=mlp,
                          num_hidden_layers=count_blocks(sd, "encoder.layers."), num_attention_heads=heads,
                          max_position_embeddings=positions, hidden_act=act, eos_token_id=vocab_size - 1,
                          projection_dim=None if proj is None else proj.shape[0])


def clip_config_from_transformers(cfg: dict, has_projection: bool) -> CLIPTextConfig:
    """Translate a transformers CLIPTextConfig (or CLIPConfig's text_config) config.json."""
    projection_dim = cfg.get("projection_dim", 512)
    if cfg.get("model_type") == "clip":
        cfg = cfg["text_config"]
    vocab_size = cfg.get("vocab_size", 49408)
    eos = cfg.get("eos_token_id", 49407)
    if eos == 2:    # openai/clip-vit-* configs say 2; transformers then pools at argmax(ids) = the real EOS
        eos = vocab_size - 1
    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=cfg.get("hidden_size", 512),
                          intermediate_size=cfg.get("intermediate_size", 2048),
                          num_hidden_layers=cfg.get("num_hidden_layers", 12),
                          num_attention_heads=cfg.get("num_attention_heads", 8),
                          max_position_embeddings=cfg.get("max_position_embeddings", 77),
                          hidden_act=cfg.get("hidden_act", "quick_gelu"),
                          layer_norm_eps=cfg.get("layer_norm_eps", 1e-5), eos_token_id=eos,
                          projection_dim=projection_dim if has_projection else None)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

HOW_TO_GET_BPE = ("Download them, e.g. `huggingface-cli download openai/clip-vit-large-patch14 vocab.json merges.txt "
                  "--local-dir <folder>` (SD3: `tokenizer/` and `tokenizer_2/` of the pipeline repo), or pass "
                  "open_clip's `bpe_simple_vocab_16e6.txt.gz` (the same vocabulary).")


def openai_bpe_vocab(gz_path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab + merges from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped with openai/CLIP and
    open_clip): the ids are the 256 byte characters, the same with `</w>`, one token per merge
    (the first 49152 - 256 - 2 = 48894 merges), then <|startoftext|> 49406, <|endoftext|> 49407."""
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]       # line 0 is a header
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + list(CLIP_SPECIALS)
    return {t: i for i, t in enumerate(tokens)}, merges


def load_clip_tokenizer(source, *, component: str | None = None, pad_token: str | None = None) -> CLIPTokenizer:
    """A `CLIPTokenizer` from a folder with vocab.json + merges.txt, a pipeline root's tokenizer*/
    (`component="tokenizer_2"` for SD3's bigG), or OpenAI's `.txt.gz` BPE file.

    `pad_token`: default from the folder's tokenizer_config.json, else "<|endoftext|>" (CLIP-L);
    SD3's bigG tokenizer pads with "!"."""
    if str(source).endswith(".gz"):
        vocab, merges = openai_bpe_vocab(source)
        return CLIPTokenizer(vocab, merges, pad_token or CLIP_SPECIALS[1])
    folder = tokenizer_folder(source, ("vocab.json", "merges.txt"), ("CLIPTokenizer", "CLIPTokenizerFast"),
                              component, "CLIP tokenizer", HOW_TO_GET_BPE)
    vocab = read_json_file(folder / "vocab.json")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise ConfigError(f"{folder / 'vocab.json'} is not a CLIP vocabulary {{token: id}}: its values must be integer ids")
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    settings = read_json(folder / "tokenizer_config.json")
    pad = settings.get("pad_token") or CLIP_SPECIALS[1]
    pad = pad.get("content") if isinstance(pad, dict) else pad
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise ConfigError(f"{folder / 'merges.txt'} is not a BPE merges file: line {bad[0]!r} is not a pair of symbols")
    length = tokenizer_max_length(folder)
    try:
        return CLIPTokenizer(vocab, merges, pad_token or pad, 77 if length is None else length)
    except ValueError as e:
        raise ConfigError(f"{folder / 'vocab.json'}: {e}") from None
