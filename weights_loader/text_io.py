"""Finding a text encoder or its tokenizer inside the folders and files people download.

Shared by `weights_loader/t5.py`, `clip.py` and `bert.py`. A text encoder arrives as
  * a transformers model folder (`config.json` + `model.safetensors`, or shards with
    `model.safetensors.index.json` / `pytorch_model.bin.index.json`),
  * a diffusers pipeline root, where it is one of `text_encoder/`, `text_encoder_2/`,
    `text_encoder_3/` (which one depends on the pipeline: SD3 has two CLIPs and a T5, Hunyuan-DiT a
    BERT and an mT5) and its tokenizer one of `tokenizer/`, `tokenizer_2/`, `tokenizer_3/`,
  * a single file, possibly a whole SD3 checkpoint whose encoders sit under
    `text_encoders.{clip_l,clip_g,t5xxl}.transformer.`.
The functions below pick the right one by reading `config.json` / `tokenizer_config.json` (or the
key prefixes), and ask for `component=` when several fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from .configs import read_json_file
from .errors import CheckpointError, ConfigError
from .io import read_state_dict, weight_keys
from .keymap import select_prefix


def read_json(path) -> dict:
    """The JSON object in `path`, or {} if there is no such file (invalid JSON: a ConfigError naming it)."""
    path = Path(path)
    return read_json_file(path) if path.is_file() else {}


def _pick(candidates: list[Path], component: str | None, what: str, root) -> Path | None:
    if component is not None:
        for folder in candidates:
            if folder.name == component:
                return folder
        raise CheckpointError(f"{root} has no {what} in {component}/; the {what} folders there are "
                              f"{[c.name for c in candidates] or 'none'}")
    if len(candidates) > 1:
        raise CheckpointError(f"{root} holds several {what}s: {[c.name for c in candidates]}. "
                              f"Pass component='{candidates[0].name}' (or another) to choose one.")
    return candidates[0] if candidates else None


def model_folder(source, model_types: tuple[str, ...], component: str | None, what: str) -> Path | None:
    """The transformers model folder for `source`, or None if `source` is not a folder.

    `source` itself if its config.json has one of `model_types`; else, for a pipeline root, the
    `text_encoder*/` folder whose config.json does (`component` picks one by name)."""
    if isinstance(source, Mapping) or not Path(source).is_dir():
        return None
    root = Path(source)
    if (root / "config.json").is_file():
        model_type = read_json(root / "config.json").get("model_type")
        if model_type not in model_types:
            raise CheckpointError(f"{root}/config.json describes a {model_type!r} model, not a {what} "
                                  f"(expected model_type in {model_types})")
        return root
    candidates = [f for f in sorted(root.glob("text_encoder*"))
                  if read_json(f / "config.json").get("model_type") in model_types]
    found = _pick(candidates, component, what, root)
    if found is None:
        raise CheckpointError(f"found no {what} in {root}: no config.json there, and no text_encoder*/ "
                              f"folder whose config.json has model_type in {model_types}")
    return found


def tokenizer_folder(source, files: tuple[str, ...], classes: tuple[str, ...], component: str | None,
                     what: str, how_to_get: str) -> Path:
    """The folder holding the tokenizer `files` (e.g. ("vocab.json", "merges.txt")).

    `source` may be that folder, or a pipeline root whose `tokenizer*/` folders are searched: one
    fits if it has the files or its tokenizer_config.json names one of `classes`. A folder that
    fits by class but lacks the files (transformers 5 saves only tokenizer.json) is an error that
    says which file is missing and how to get it."""
    root = Path(source)
    if not root.is_dir():
        raise CheckpointError(f"{root} does not exist or is not a folder")
    folders = [root]
    if not any((root / f).is_file() for f in files) and not (root / "tokenizer_config.json").is_file():
        folders = [f for f in sorted(root.glob("tokenizer*")) if f.is_dir()
                   and (any((f / n).is_file() for n in files)
                        or read_json(f / "tokenizer_config.json").get("tokenizer_class") in classes)]
        folder = _pick(folders, component, what, root)
        if folder is None:
            raise CheckpointError(f"found no {what} in {root}: it has none of {list(files)} and no tokenizer*/ "
                                  f"folder with them. {how_to_get}")
        folders = [folder]
    folder = folders[0]
    tokenizer_class = read_json(folder / "tokenizer_config.json").get("tokenizer_class")
    if tokenizer_class and tokenizer_class not in classes:
        raise CheckpointError(f"{folder} holds a {tokenizer_class}, not a {what} ({', '.join(classes)})")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir())
        raise CheckpointError(f"{folder} has no {', '.join(missing)} (it holds {present}). minidit's {what} reads "
                              f"{' + '.join(files)}; transformers 5 `save_pretrained` writes only tokenizer.json. "
                              f"{how_to_get}")
    return folder


def read_text_encoder(source, names: tuple[str, ...], component: str | None, what: str, dtype=None) -> dict:
    """The weights of one text encoder in `source` (a file or a state dict). In a whole SD3 file the
    encoders sit under `text_encoders.{name}.transformer.`: that part is returned, prefix removed, and
    from a safetensors file it is all that is read (the header says which encoders are there; a
    `..._incl_clips_t5xxlfp16` file holds 16 GB, of which CLIP-L is 250 MB). Sources without such keys
    are returned whole. `dtype`: cast as read (`read_state_dict`)."""
    path = None if isinstance(source, Mapping) else Path(source)
    if path is not None and path.is_file() and path.suffix == ".safetensors":
        name = text_encoder_name(weight_keys(path), names, component, what)        # header only
        sd = read_state_dict(path, only_prefix=None if name is None else f"text_encoders.{name}.", dtype=dtype)
    else:
        sd = read_state_dict(source, dtype=dtype)
        name = text_encoder_name(sd, names, component, what)
    return sd if name is None else select_prefix(sd, f"text_encoders.{name}.transformer.")


def text_encoder_name(keys: Iterable[str], names: tuple[str, ...], component: str | None, what: str) -> str | None:
    """Which encoder of an SD3 single file to read, from its key names: the one of `names` present
    under `text_encoders.{name}.` (`component` picks one by name); None when no key is under
    `text_encoders.` (a file holding one encoder)."""
    present = sorted({k.split(".")[1] for k in keys if k.startswith("text_encoders.")})
    if not present:
        return None
    fitting = [n for n in present if n in names]
    if component is not None:
        if component not in present:
            raise CheckpointError(f"this file has no text_encoders.{component}.*; it has {present}")
        fitting = [component]
    if not fitting:
        raise CheckpointError(f"this file's text encoders are {present}; none of them is a {what} {names}")
    if len(fitting) > 1:
        raise CheckpointError(f"this file holds several {what}s {fitting}: pass component='{fitting[0]}' "
                              "(or another) to choose one")
    return fitting[0]


def tokenizer_max_length(folder) -> int | None:
    """`model_max_length` from tokenizer_config.json; None when absent or the "no limit" sentinel
    (transformers writes 1e30 for tokenizers without a length)."""
    path = Path(folder) / "tokenizer_config.json"
    n = read_json(path).get("model_max_length")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or n < 1):
        raise ConfigError(f"{path}: model_max_length must be a positive number, not {n!r}")
    return int(n) if n is not None and n < 1_000_000 else None
