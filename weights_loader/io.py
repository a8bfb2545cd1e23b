"""Reading checkpoint files and loading them strictly into minidit modules.

Nothing here defines a network. Every family loader (`weights_loader/dit.py`, ...) uses the same
four steps:

1. `read_state_dict(source)`   a file, a folder or a dict  ->  {key: tensor}
   (safetensors, `.pt`/`.pth`/`.bin` pickles read with `weights_only=True` only, sharded
   `*.index.json` folders; wrappers such as `{"state_dict": ...}` or `{"ema": ...}` are unwrapped)
2. `strip_prefix(...)`          e.g. `model.diffusion_model.`, `first_stage_model.`
3. a family-specific key map    official or diffusers names  ->  minidit names (= official names),
                                written with `KeyMap` (every source key used once, or dropped by name)
4. `load_into(model, sd)`       strict: missing / unexpected / mis-shaped keys raise
                                `CheckpointError` listing them; nothing is half-loaded.

Models are built on the `meta` device (no memory, no random init) and the checkpoint tensors are
assigned in place, so loading a 2.7 GB model costs ~2.7 GB, not twice that.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

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


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the model. The message says what to do."""


# --------------------------------------------------------------------------------------------
# 1. Reading files
# --------------------------------------------------------------------------------------------

def read_state_dict(source, *, unwrap: bool | str = True, only_prefix: str | None = None) -> StateDict:
    """Read `source` into a flat `{key: tensor}` dict.

    `source` may be a dict of tensors, a weight file (`.safetensors`, `.pt`, `.pth`, `.bin`,
    `.ckpt`), a sharded `*.index.json`, or a folder holding one of `WEIGHT_FILE_NAMES`.
    `only_prefix`: if the file has keys under this prefix, read only those (from a safetensors file
    without reading the rest: an SD3.5 file holds 16 GB, of which its VAE is 160 MB).
    `unwrap`: True takes the weights out of a `{"ema": ...}` / `{"state_dict": ...}` / ... wrapper
    (`unwrap_state_dict`); a key name (e.g. "module") takes exactly that part of a wrapped file.
    """
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"{path} does not exist. Check the path (download it first if needed).")
        if path.is_dir():
            path = find_weight_file(path)
        if path.name.endswith(".index.json"):
            sd = _read_sharded(path)
        elif path.suffix == ".safetensors":
            sd = _read_safetensors(path, only_prefix)
        elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
            sd = _read_pickle(path)
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
    return sd


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
            raise CheckpointError(f"{path} is not a readable safetensors file ({e}). "
                                  "The download may be incomplete: delete it and download it again.") from e
    return list(read_state_dict(source))


def _read_safetensors(path: Path, only_prefix: str | None = None) -> StateDict:
    try:
        if only_prefix is not None:
            with safe_open(str(path), framework="pt") as f:
                keys = [k for k in f.keys() if k.startswith(only_prefix)]
                if keys:
                    return {k: f.get_tensor(k) for k in keys}
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}). "
                              "The download may be incomplete: delete it and download it again.") from e


def _read_pickle(path: Path) -> StateDict:
    try:
        # DiT's train.py stores its argparse.Namespace next to the weights; allow that one class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it is a pickle that contains more than tensors and plain containers, "
            f"and unpickling it could run arbitrary code. minidit only reads pickles with "
            f"torch.load(weights_only=True). If you trust the file, convert it to safetensors yourself. "
            f"(torch said: {str(e).splitlines()[0]})") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({str(e).splitlines()[0]}). "
                              "The download may be incomplete: delete it and download it again.") from e


def _read_sharded(index_path: Path) -> StateDict:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{index_path} is not a valid shard index (need a 'weight_map')") from e
    sd: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{index_path} lists shard {shard}, which is missing from {index_path.parent}. "
                                  "Download all shards.")
        part = _read_safetensors(shard_path) if shard.endswith(".safetensors") else _read_pickle(shard_path)
        sd.update(part)
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


def read_config(folder) -> dict:
    """The `config.json` that `save_pretrained` wrote into `folder`."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; pass config= explicitly or point at a "
                              "diffusers/transformers component folder")
    return json.loads(path.read_text())


def component_folder(source, component: str) -> Path | None:
    """If `source` is a pipeline root (it has `model_index.json` and `component/`), return that
    component's folder; if `source` is itself a folder with `config.json`, return it; else None."""
    if isinstance(source, Mapping):
        return None
    path = Path(source)
    if not path.is_dir():
        return None
    if (path / component / "config.json").is_file():
        return path / component
    if (path / "config.json").is_file():
        return path
    return None


# --------------------------------------------------------------------------------------------
# 2. Key manipulation
# --------------------------------------------------------------------------------------------

def strip_prefix(sd: StateDict, prefixes: Iterable[str]) -> StateDict:
    """Remove the first of `prefixes` that starts *every* key, if any (e.g. `model.diffusion_model.`)."""
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def select_prefix(sd: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix` (e.g. `first_stage_model.` inside a full SD single file), prefix removed."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def count_blocks(sd: StateDict, prefix: str) -> int:
    """How many numbered blocks `prefix{i}.` the state dict has (e.g. `blocks.` -> depth)."""
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


class KeyMap:
    """Rename a state dict to minidit's keys, strictly: every source key is used exactly once, and
    `finish()` raises `CheckpointError` listing the ones that were not (nothing is skipped silently).

        keys = KeyMap(sd, "diffusers DiT")
        keys.move("proj_out_2.weight", "final_layer.linear.weight")                  # 1 -> 1
        keys.cat(["to_q.weight", "to_k.weight", "to_v.weight"], "attn.qkv.weight")  # N -> 1 (fuse q/k/v)
        keys.chunk("in_proj_weight", ["q.weight", "k.weight", "v.weight"])          # 1 -> N (split)
        keys.move("text_projection", "text_projection.weight", transpose)           # with a transform
        keys.drop("pos_embed.pos_embed")    # the allow-list: only named keys may go unused (say why)
        sd = keys.finish()                  # the renamed dict; raises if a source key was not used

    `family` names the checkpoint in the errors ("the diffusers DiT checkpoint is missing ...").
    """

    def __init__(self, sd: Mapping[str, torch.Tensor], family: str):
        self.family = family
        self._left = dict(sd)          # source keys not used yet
        self._out: StateDict = {}

    def has(self, src: str) -> bool:
        """Whether the source key `src` is there and not used yet."""
        return src in self._left

    def remaining(self) -> list[str]:
        """The source keys not used yet, sorted."""
        return sorted(self._left)

    def take(self, src: str) -> torch.Tensor:
        """Use the source tensor `src` (a missing key raises, naming it)."""
        try:
            return self._left.pop(src)
        except KeyError:
            raise CheckpointError(f"the {self.family} checkpoint is missing {src!r}") from None

    def put(self, dst: str, tensor: torch.Tensor) -> None:
        """Write minidit's key `dst` (at most once)."""
        if dst in self._out:
            raise CheckpointError(f"two keys of the {self.family} checkpoint map to {dst!r}")
        self._out[dst] = tensor

    def move(self, src: str, dst: str, transform=None) -> None:
        """1 -> 1: `dst` = `src`, or `transform(src)` (e.g. `transpose`)."""
        tensor = self.take(src)
        self.put(dst, tensor if transform is None else transform(tensor))

    def cat(self, srcs, dst: str, dim: int = 0) -> None:
        """N -> 1: `dst` = the sources concatenated along `dim` (e.g. separate q, k, v -> fused qkv)."""
        self.put(dst, torch.cat([self.take(s) for s in srcs], dim=dim))

    def chunk(self, src: str, dsts, dim: int = 0) -> None:
        """1 -> N: `src` split into len(dsts) equal parts along `dim` (e.g. fused qkv -> q, k, v)."""
        tensor, dsts = self.take(src), list(dsts)
        if tensor.shape[dim] % len(dsts):
            raise CheckpointError(f"{src!r} {tuple(tensor.shape)} of the {self.family} checkpoint does not split "
                                  f"into {len(dsts)} equal parts along dim {dim}")
        for dst, part in zip(dsts, tensor.chunk(len(dsts), dim=dim)):
            self.put(dst, part)

    def drop(self, *names: str) -> list[str]:
        """The allow-list of keys that may go unused: each name is one key, or, ending in ".", every
        key under it (e.g. "visual."). Absent names are fine. Returns the keys dropped."""
        gone = [k for k in self._left if any(k.startswith(n) if n.endswith(".") else k == n for n in names)]
        for k in gone:
            del self._left[k]
        return sorted(gone)

    def finish(self) -> StateDict:
        """The renamed state dict; raises `CheckpointError` listing every source key not used."""
        if self._left:
            raise CheckpointError(f"{len(self._left)} keys of the {self.family} checkpoint have no place in the "
                                  f"model: {_preview(self._left)}")
        return self._out


def transpose(tensor: torch.Tensor) -> torch.Tensor:
    """A `KeyMap` transform: a (D, P) matrix used as `x @ W` -> the (P, D) weight of an `nn.Linear`."""
    return tensor.T.contiguous()


def _preview(keys, n=12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --------------------------------------------------------------------------------------------
# 3. Strict loading
# --------------------------------------------------------------------------------------------

def check_state_dict(model: nn.Module, sd: StateDict, what: str = "checkpoint") -> None:
    """Raise `CheckpointError` listing missing, unexpected and mis-shaped keys (all of them at once)."""
    expected = model.state_dict()
    missing = set(expected) - set(sd)
    unexpected = set(sd) - set(expected)
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        lines = [f"the {what} does not fit {type(model).__name__}"
                 f" (config: {getattr(model, 'config', '?')}):"]
        if missing:
            lines.append(f"  {len(missing)} missing keys: {_preview(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys: {_preview(unexpected)}")
        if shapes:
            lines.append(f"  {len(shapes)} keys with a different shape: " + "; ".join(shapes[:8])
                         + (" ..." if len(shapes) > 8 else ""))
        lines.append("  Is this the right checkpoint for this model/preset? If the config was guessed "
                     "from the file, pass config= explicitly.")
        raise CheckpointError("\n".join(lines))


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
    """Instantiate `cls(config)` without allocating or initialising weights."""
    with torch.device("meta"):
        return cls(config)


def save_safetensors(sd: StateDict, path, metadata: dict | None = None) -> None:
    """Write `sd` as safetensors (contiguous copies; shared storage is not allowed there)."""
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
