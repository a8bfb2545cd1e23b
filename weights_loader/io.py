"""Reading checkpoint files and loading them strictly into minidit modules.

Nothing here defines a network. Every family loader (`weights_loader/dit.py`, ...) uses the same
four steps:

1. `read_state_dict(source)`   a file, a folder or a dict  ->  {key: tensor}
   (safetensors, `.pt`/`.pth`/`.bin` pickles read with `weights_only=True` only, sharded
   `*.index.json` folders; wrappers such as `{"state_dict": ...}` or `{"ema": ...}` are unwrapped)
2. `strip_prefix(...)`          e.g. `model.diffusion_model.`, `first_stage_model.`  (keymap.py)
3. a family-specific key map    official or diffusers names  ->  minidit names (= official names),
                                written with `KeyMap` (every source key used once, or dropped by name; keymap.py)
4. `load_into(model, sd)`       strict: missing / unexpected / mis-shaped keys, integer, bool or complex
                                tensors where floats belong, and NaN/inf values (in the file, or from the
                                cast to `dtype`) raise `CheckpointError` listing them; nothing is half-loaded.

Before a pickle is unpickled (and when a safetensors file fails to read) its first bytes are looked at
(`what_file_is`), so an empty file, a Git LFS pointer, a web page (a gated download), a text file, a
safetensors file named `.pt` (or the reverse) and a damaged file are each named as such; only a real
pickle that holds more than tensors is reported as unsafe. Config files are read with
`configs.read_json_file` (invalid JSON, a missing field: a `ConfigError` naming the file and the field)
and translated with `configs.translate_config`. Shard indices may only name files in their own folder.

Models are built on the `meta` device (no memory, no random init) and the checkpoint tensors are
assigned in place; given the loader's `dtype`, `read_state_dict` casts each tensor as it is read
(`stream.py`: safetensors key by key, shards file by file, pickles memory-mapped), and the key maps
consume their source dict as they build the renamed one, so loading peaks at about the model's size
in that dtype, not twice or three times it (`benchmarks/load_memory.py` measures it).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from .configs import read_json_file
from .errors import CheckpointError, ConfigError
from .keymap import preview
from .stream import DtypePolicy, cast_entries, read_safetensors

StateDict = dict[str, torch.Tensor]

# File names written by `save_pretrained` (diffusers and transformers), in order of preference.
WEIGHT_FILE_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Precision variants (`huggingface-cli download ... --include "*.fp16.*"`): diffusers puts the variant
# before the last suffix, `diffusion_pytorch_model.fp16.safetensors`, `model.safetensors.index.fp16.json`.
VARIANTS = ("fp16", "bf16")
# Wrappers that training scripts put around the weights (DiT train.py, PixArt, DeepSpeed).
WRAPPER_KEYS = ("ema", "state_dict", "module", "model")


# --------------------------------------------------------------------------------------------
# 1. Reading files
# --------------------------------------------------------------------------------------------

def read_state_dict(source, *, unwrap: bool | str = True, only_prefix: str | None = None,
                    dtype: DtypePolicy = None) -> StateDict:
    """Read `source` into a flat `{key: tensor}` dict.

    `source` may be a dict of tensors, a weight file (`.safetensors`, `.pt`, `.pth`, `.bin`,
    `.ckpt`), a sharded `*.index.json`, or a folder holding one of `WEIGHT_FILE_NAMES`.
    `only_prefix`: if the file has keys under this prefix, read only those (from a safetensors file
    without reading the rest: an SD3.5 file holds 16 GB, of which its VAE is 160 MB).
    `unwrap`: True takes the weights out of a `{"ema": ...}` / `{"state_dict": ...}` / ... wrapper
    (`unwrap_state_dict`); a key name (e.g. "module") takes exactly that part of a wrapped file.
    `dtype`: cast every floating tensor to it as it is read (`stream.py`), or a function key -> dtype
    (None: that tensor as stored); None (the default) keeps every tensor as stored.
    """
    cast_later, mapped = dtype is not None, False      # safetensors readers cast while reading
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        path = weight_file(source)
        if path.name.endswith(".index.json"):
            sd, cast_later = _read_sharded(path, dtype), False
        elif path.suffix == ".safetensors":
            sd, cast_later = _read_safetensors(path, only_prefix, dtype), False
        elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
            sd, mapped = _read_pickle(path, mmap=dtype is not None)
            if not isinstance(sd, Mapping):
                raise CheckpointError(f"{path} holds a {type(sd).__name__}, not a state dict ({{name: tensor}}); "
                                      "save model.state_dict(), not the model, a tensor or a list")
        else:
            raise CheckpointError(
                f"{path}: unknown weight file type {path.suffix!r}; expected .safetensors, .pt, .pth, "
                ".bin, .ckpt or a sharded *.index.json")
    if isinstance(unwrap, str):
        sd = take_wrapped(sd, unwrap, source)
    elif unwrap:
        sd = unwrap_state_dict(sd)
    if only_prefix is not None and any(k.startswith(only_prefix) for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith(only_prefix)}
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"these entries are not tensors, so this is not a plain weight file: {bad[:10]}")
    if cast_later:          # a dict, or a pickle whose tensors are still on disk (memory-mapped)
        sd = cast_entries(sd, dtype, mapped=mapped)
    return sd


def weight_file(source) -> Path:
    """The file to read for `source`: the path itself, or for a folder `find_weight_file`'s choice."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist. Check the path (download it first if needed).")
    return find_weight_file(path) if path.is_dir() else path


def find_weight_file(folder: Path) -> Path:
    """The weight file `save_pretrained` wrote into `folder`: the full-precision one, else an fp16 /
    bf16 variant (loaded and cast to the `dtype` the loader is given, like any other file)."""
    candidates = [*WEIGHT_FILE_NAMES, *(_with_variant(name, v) for v in VARIANTS for name in WEIGHT_FILE_NAMES)]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p.name for p in folder.iterdir())
    raise CheckpointError(
        f"no weight file in {folder}. Expected one of {', '.join(WEIGHT_FILE_NAMES)} (or their .fp16 / .bf16 "
        f"variants); the folder holds {found[:20]}. If this is a pipeline folder, pass its component sub-folder "
        "(e.g. transformer/).")


def _with_variant(name: str, variant: str) -> str:
    stem, suffix = name.rsplit(".", 1)
    return f"{stem}.{variant}.{suffix}"


def weight_keys(source) -> list[str]:
    """The key names of a weight file (a safetensors file's header only), a folder's or a dict's."""
    if isinstance(source, Mapping):
        return list(source)
    path = Path(source)
    if path.is_file() and path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except (SafetensorError, OSError, ValueError) as e:
            problem = wrong_file_message(path, "safetensors")
            raise CheckpointError(problem or f"{path} is not a readable safetensors file ({_first_line(e)}). "
                                  "The download may be incomplete: delete it and download it again.") from e
    return list(read_state_dict(source))


def _read_safetensors(path: Path, only_prefix: str | None = None, dtype: DtypePolicy = None) -> StateDict:
    try:
        if dtype is not None:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
            if only_prefix is not None and any(k.startswith(only_prefix) for k in keys):
                keys = [k for k in keys if k.startswith(only_prefix)]
            return read_safetensors(path, keys, dtype)
        if only_prefix is not None:
            with safe_open(str(path), framework="pt") as f:
                keys = [k for k in f.keys() if k.startswith(only_prefix)]
                if keys:
                    return {k: f.get_tensor(k) for k in keys}
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        problem = wrong_file_message(path, "safetensors")
        raise CheckpointError(problem or f"{path} is not a readable safetensors file ({_first_line(e)}). "
                              "The download may be incomplete: delete it and download it again.") from e


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type when the message is empty."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def what_file_is(path: Path) -> str:
    """What the first bytes of `path` say it is: "empty", "lfs", "html", "text", "safetensors",
    "torch-zip", "torch-legacy", "pickle" or "unknown"."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if head.startswith(b"version https://git-lfs"):
        return "lfs"
    if len(head) >= 10 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(b"\x80\x02\x8a\x0a"):              # torch.save's legacy format: a pickled magic number first
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as e:            # text, unless the bad byte is more than a cut-off last character
            if e.start < len(head) - 3:
                return "unknown"
            text = head[:e.start].decode("utf-8")
        lower = text.lstrip().lower()
        return "html" if lower.startswith(("<!doctype html", "<html")) or "<html" in lower[:200] else "text"
    return "unknown"


AGAIN = "The download may be incomplete or damaged: delete it and download it again."


def wrong_file_message(path: Path, expected: str) -> str | None:
    """Why `path` is not a file of the `expected` kind ("pickle" or "safetensors"), or None if it may be."""
    kind = what_file_is(path)
    if kind == "empty":
        return f"{path} is empty (0 bytes): the download did not finish. Delete it and download it again."
    if kind == "lfs":
        return (f"{path} is a Git LFS pointer (a small text file), not the weights: run `git lfs pull` in the "
                "clone, or download with `huggingface-cli download ...`")
    if kind == "html":
        return (f"{path} is a web page, not weights: downloads of a gated repository without access give one. Accept "
                "the model's licence on the hub, run `huggingface-cli login`, and download with "
                "`huggingface-cli download ...`")
    if kind == "text":
        with open(path, "rb") as f:
            start = f.read(60).decode("utf-8", errors="replace").splitlines()[0] if path.stat().st_size else ""
        return f"{path} is a text file (it starts with {start!r}), not a weight file. {AGAIN}"
    if expected == "pickle" and kind == "safetensors":
        return (f"{path} is a safetensors file under a PyTorch name: rename it to "
                f"{path.with_suffix('.safetensors').name} (minidit reads a file by its extension)")
    if expected == "safetensors" and kind in ("torch-zip", "torch-legacy"):
        return (f"{path} is a PyTorch checkpoint under a safetensors name: rename it to "
                f"{path.with_suffix('.pt').name} (minidit reads a file by its extension)")
    if expected == "pickle" and kind not in ("torch-zip", "torch-legacy", "pickle"):
        return (f"{path} is not a PyTorch checkpoint: it is neither a zip archive (torch.save) nor a pickle. {AGAIN}")
    return None


def _read_pickle(path: Path, mmap: bool = False) -> tuple[StateDict, bool]:
    """(the unpickled object, whether its tensors are memory-mapped). `mmap`: map the file, so that
    tensors are read from disk only when touched; torch can do so for the zip format of `torch.save`
    (since torch 1.6), not for a legacy file, which is then read whole."""
    problem = wrong_file_message(path, "pickle")
    if problem:
        raise CheckpointError(problem)
    mmap = mmap and what_file_is(path) == "torch-zip"
    try:
        # DiT's train.py stores its argparse.Namespace next to the weights; allow that one class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap), mmap
    except pickle.UnpicklingError as e:
        message = str(e)
        if "Unsupported global" not in message and "GLOBAL" not in message:    # a damaged pickle, not a malicious one
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(e)}). {AGAIN}") from e
        raise CheckpointError(
            f"refused to load {path}: it is a pickle that contains more than tensors and plain containers, "
            f"and unpickling it could run arbitrary code. minidit only reads pickles with "
            f"torch.load(weights_only=True). If you trust the file, convert it to safetensors yourself. "
            f"(torch said: {_first_line(e)})") from e
    except Exception as e:                # torch raises RuntimeError, EOFError, KeyError, ... for a damaged file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_first_line(e)}). {AGAIN}") from e


def _read_sharded(index_path: Path, dtype: DtypePolicy = None) -> StateDict:
    """The shards of `index_path`, one file at a time, each cast as it is read when `dtype` is given."""
    weight_map = read_json_file(index_path).get("weight_map")
    bad = (type(weight_map).__name__ if not isinstance(weight_map, dict) else
           next((f"{k!r}: {v!r}" for k, v in weight_map.items() if not isinstance(v, str)), None))
    if bad is not None:
        raise ConfigError(f"{index_path} is not a valid shard index: its 'weight_map' must be an object "
                          f"{{tensor name: shard file}}, not {bad}")
    sd: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        # lexically, not with resolve(): a download may hold its shards as symlinks into a cache elsewhere
        norm = os.path.normpath(shard)
        if os.path.isabs(shard) or norm == os.pardir or norm.startswith(os.pardir + os.sep):
            raise ConfigError(f"{index_path} lists shard {shard!r}, a path outside {index_path.parent}: refused "
                              "(a shard index names files in its own folder)")
        if not shard_path.is_file():
            raise CheckpointError(f"{index_path} lists shard {shard}, which is missing from {index_path.parent}. "
                                  "Download all shards (`huggingface-cli download` fetches every file of the repository).")
        if shard.endswith(".safetensors"):
            part = _read_safetensors(shard_path, dtype=dtype)
        else:
            part, mapped = _read_pickle(shard_path, mmap=dtype is not None)
            if dtype is not None:
                part = cast_entries(part, dtype, mapped=mapped)
        sd.update(part)
        del part
    missing = sorted(set(weight_map) - set(sd))
    if missing:
        raise CheckpointError(f"{len(missing)} keys listed in {index_path.name} are in no shard: {missing[:10]}")
    return sd


def unwrap_state_dict(sd: dict) -> dict:
    """Unwrap `{"ema": sd}` (preferred, as DiT's `find_model`), `{"state_dict": sd}`, `{"module": sd}`."""
    while True:
        if any(isinstance(v, torch.Tensor) for v in sd.values()):
            return sd
        for key in WRAPPER_KEYS:
            if isinstance(sd.get(key), Mapping):
                sd = dict(sd[key])
                break
        else:
            return sd


def take_wrapped(sd: dict, key: str, source=None) -> dict:
    """A bare state dict as it is; a wrapped one (`{"module": ..., "ema": ...}`, as DeepSpeed saves):
    the part named `key`, or an error naming the parts there are (never another part silently)."""
    if any(isinstance(v, torch.Tensor) for v in sd.values()):
        return sd
    parts = sorted(k for k, v in sd.items() if isinstance(v, Mapping))
    if key not in parts:
        where = "the state dict" if source is None or isinstance(source, Mapping) else str(source)
        raise CheckpointError(f"{where} wraps {parts}, not {key!r}: pick one of them (the loader's load_key=)")
    return dict(sd[key])


# --------------------------------------------------------------------------------------------
# 2. Strict loading
# --------------------------------------------------------------------------------------------

def check_state_dict(model: nn.Module, sd: StateDict, what: str = "checkpoint") -> None:
    """Raise `CheckpointError` listing missing, unexpected and mis-shaped keys (all of them at once)."""
    expected = model.state_dict()
    missing = set(expected) - set(sd)
    unexpected = set(sd) - set(expected)
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    kinds = [f"{k}: {str(sd[k].dtype).replace('torch.', '')} where the model has "
             f"{str(expected[k].dtype).replace('torch.', '')}" for k in sorted(set(sd) & set(expected))
             if _kind(sd[k]) != _kind(expected[k])]
    if missing or unexpected or shapes or kinds:
        lines = [f"the {what} does not fit {type(model).__name__}"
                 f" (config: {getattr(model, 'config', '?')}):"]
        if missing:
            lines.append(f"  {len(missing)} missing keys: {preview(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys: {preview(unexpected)}")
        if shapes:
            lines.append(f"  {len(shapes)} keys with a different shape: " + "; ".join(shapes[:8])
                         + (" ..." if len(shapes) > 8 else ""))
        if kinds:
            lines.append(f"  {len(kinds)} keys of the wrong kind (integer, bool or complex where floats belong, or "
                         "the reverse): " + "; ".join(kinds[:8]) + (" ..." if len(kinds) > 8 else ""))
        lines.append("  Is this the right checkpoint for this model/preset? If the config was guessed "
                     "from the file, pass config= explicitly.")
        raise CheckpointError("\n".join(lines))


def _kind(t: torch.Tensor) -> str:
    return "complex" if t.is_complex() else "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "int"


def check_finite_weights(sd: StateDict, original: StateDict, what: str, dtype) -> None:
    """Raise `CheckpointError` naming the floating tensors of `sd` that hold NaN or inf: either the
    file's own (a damaged file, a diverged run) or created by the cast to `dtype` (an overflow)."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not v.is_meta and not torch.isfinite(v).all()]
    if not bad:
        return
    from_cast = [k for k in bad if original[k].is_meta or torch.isfinite(original[k]).all()]
    if from_cast and len(from_cast) == len(bad):
        raise CheckpointError(f"the {what} overflows when cast to {dtype}: {len(bad)} tensors get inf "
                              f"({preview(bad, 6)}). Load it in bfloat16 or float32")
    raise CheckpointError(f"the {what} holds NaN/inf in {len(bad)} tensors ({preview(bad, 6)}): the file is damaged "
                          "or comes from a diverged training run. Download it again, or use another checkpoint")


def load_into(model: nn.Module, sd: StateDict, *, dtype: torch.dtype | None = torch.float32,
              device="cpu", what: str = "checkpoint") -> nn.Module:
    """Check `sd` against `model` strictly, then assign its tensors (cast to `dtype` if floating).

    `model` is usually built on the meta device; after loading every parameter and buffer lives on
    `device` and the model is in eval mode.
    """
    check_state_dict(model, sd, what)
    # One `.to(device=, dtype=)` per tensor: a float32 file loaded as bfloat16 onto a GPU is copied
    # once and converted there, with no second, converted copy of the whole model in CPU memory.
    cast = {k: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else None)
            for k, v in sd.items()}
    check_finite_weights(cast, sd, what, dtype)
    model.load_state_dict(cast, strict=True, assign=True)
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:  # a minidit module registered a tensor that is neither loaded nor recomputed
        raise CheckpointError(f"internal error: tensors left uninitialised after loading: {still_meta[:10]}")
    return model.eval()


def apply_overrides(config, overrides: Mapping | None):
    """`dataclasses.replace(config, **overrides)`, with an error naming the valid fields for a wrong name.
    Every loader's `overrides=` goes through here, after the config is read or detected."""
    if not overrides:
        return config
    fields = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise CheckpointError(f"overrides {unknown} are not fields of {type(config).__name__}; "
                              f"its fields are {fields}")
    return dataclasses.replace(config, **overrides)


def build_on_meta(cls, config):
    """Instantiate `cls(config)` without allocating or initialising weights (a config that cannot build
    the model, e.g. 0 heads or a width that does not divide, is a ConfigError naming the config)."""
    try:
        with torch.device("meta"):
            return cls(config)
    except (TypeError, ValueError, ArithmeticError, RuntimeError) as e:
        raise ConfigError(f"cannot build {cls.__name__} from {config}: {type(e).__name__}: {_first_line(e)}") from None


def save_safetensors(sd: StateDict, path, metadata: dict | None = None) -> None:
    """Write `sd` as safetensors (contiguous copies; shared storage is not allowed there)."""
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
