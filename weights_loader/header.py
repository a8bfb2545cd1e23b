"""A checkpoint's keys and shapes without its weights: what a config is read off before the weights load.

    sd = read_shapes("sd3.5_medium.safetensors", only_prefix="model.diffusion_model.")
    sd["x_embedder.proj.weight"]          # tensor(..., device='meta', size=(1536, 16, 2, 2))

The family loaders detect a config from an original file by key names and shapes (`detect_*_config`);
a pipeline that loads its transformer only when the denoising starts (`keep_transformer=False`) needs
that config before, without the weights in memory. `read_shapes` gives the same `{key: tensor}` dict
as `io.read_state_dict`, with every tensor on the `meta` device (a shape and a dtype, no data), except
the few keys named in `values`, read for real (PixArt's resolution is read off its `pos_embed` table's
values, its null caption is kept):

  * safetensors (a file, or the shards of a `*.safetensors.index.json`): the header only.
  * a `torch.save` zip archive (`.pt`, `.pth`, `.bin` since torch 1.6): memory-mapped, so only the
    pickled index and the pages of the `values` tensors are read from disk.
  * a legacy (pre-zip) pickle cannot be mapped: it is read whole once, its shapes kept, and freed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open

from .configs import read_json_file
from .errors import CheckpointError
from .configs import component_folder
from .io import StateDict, _read_pickle, apply_overrides, take_wrapped, unwrap_state_dict, weight_file, wrong_file_message

# safetensors' dtype names (the header's "dtype" field) -> torch
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def read_shapes(source, *, unwrap: bool | str = True, only_prefix: str | None = None,
                values: Iterable[str] = ()) -> StateDict:
    """`{key: tensor}` of a weight file (or a folder holding one) with every tensor on `meta`, except the
    keys named in `values` (a key that is one of them or ends in "." + one: `module.pos_embed`), whose
    values are read. `unwrap`, `only_prefix`: as `io.read_state_dict`."""
    values = set(values)
    path = weight_file(source)
    if path.name.endswith(".index.json"):
        shards = sorted(set(read_json_file(path).get("weight_map", {}).values()))
        sd = {k: v for shard in shards for k, v in _safetensors_shapes(path.parent / shard, values).items()}
    elif path.suffix == ".safetensors":
        sd = _safetensors_shapes(path, values)
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        loaded, _ = _read_pickle(path, mmap=True)
        if not isinstance(loaded, Mapping):
            raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict ({{name: tensor}})")
        loaded = take_wrapped(loaded, unwrap, source) if isinstance(unwrap, str) else \
            unwrap_state_dict(loaded) if unwrap else loaded
        sd = {k: _keep(k, v, values) for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        del loaded                                        # the mapping (or the legacy file's tensors) goes here
    else:
        raise CheckpointError(f"{path}: unknown weight file type {path.suffix!r}; expected .safetensors, .pt, .pth, "
                              ".bin, .ckpt or a sharded *.index.json")
    if only_prefix is not None and any(k.startswith(only_prefix) for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith(only_prefix)}
    return sd


def read_family_config(source, *, folder_config, detect, diffusers_key: str, what: str, overrides: dict | None = None,
                       prepare=None, **read):
    """A family's config without its weights (`read_dit_config`, ...): `folder_config(folder)` for a diffusers
    folder (pipeline root or transformer/), else `detect(sd)` on the file's `read_shapes(source, **read)`,
    after `prepare(sd)` (prefixes); a diffusers state dict (it holds `diffusers_key`) has no config to detect."""
    folder = component_folder(source, "transformer")
    if folder is not None:
        return apply_overrides(folder_config(folder), overrides)
    sd = read_shapes(source, **read)
    sd = sd if prepare is None else prepare(sd)
    if diffusers_key in sd:
        raise CheckpointError(f"{source} is a diffusers {what} state dict without its config.json: pass the folder "
                              "that holds config.json")
    return apply_overrides(detect(sd), overrides)


def _named(key: str, values: set) -> bool:
    return key in values or any(key.endswith("." + v) for v in values)


def _keep(key: str, tensor: torch.Tensor, values: set) -> torch.Tensor:
    """A value to keep, copied out of the mapped file; any other tensor, as its shape on meta."""
    if _named(key, values):
        return tensor.clone()
    return torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")


def _safetensors_shapes(path: Path, values: set) -> StateDict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (listed in its folder's shard index): download every shard")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: the shapes of a pickled shard cannot be read without reading it; convert "
                              "the shards to safetensors, or keep the transformer loaded (keep_transformer=True)")
    try:
        with safe_open(str(path), framework="pt") as f:
            sd = {}
            for key in f.keys():
                if _named(key, values):
                    sd[key] = f.get_tensor(key)
                else:
                    part = f.get_slice(key)
                    sd[key] = torch.empty(part.get_shape(), device="meta",
                                          dtype=SAFETENSORS_DTYPES.get(part.get_dtype(), torch.float32))
            return sd
    except (SafetensorError, OSError, ValueError) as e:
        problem = wrong_file_message(path, "safetensors")
        raise CheckpointError(problem or f"{path} is not a readable safetensors file ({e}). The download may be "
                              "incomplete: delete it and download it again.") from e
