"""Reading weights so that loading peaks at about one copy of the model, in the dtype asked for.

The naive way to load a float32 file as bfloat16 reads the whole file (4 bytes a parameter), then
casts it (2 more), then frees the file's copy: a peak of 3x the loaded model. Reading tensor by tensor
and casting each one as it arrives keeps only the result and one tensor in flight:

  * safetensors: `safe_open(...).get_tensor(key)`, one key at a time (`read_safetensors`);
  * sharded folders: one shard file at a time, each read that way;
  * pickles (`.pt`, `.pth`, `.bin`): `torch.load(..., mmap=True, weights_only=True)`, so the tensors
    are views of a memory map of the file and are read from disk only when touched (`cast_entries`).

What "resident" means for a memory map. The pages of a memory-mapped file that were read count in
the process's resident set (RSS, "RssFile" in /proc/self/status) for as long as the map exists, even
though the kernel may drop them at any time (they are clean copies of the file). Both readers keep
that from adding up to the file's size: safetensors files are re-opened every `REOPEN_BYTES` (closing
a `safe_open` unmaps the file once no tensor views it), and a pickle's pages are handed back with
`madvise(MADV_DONTNEED)` once their tensor is cast (`release_pages`). When no cast is needed (a
float32 file loaded as float32) each tensor is still copied out of the map, so that the model never
depends on the file and the map can be closed (a copy costs far less time than reading the file).

A cast that overflows (a float32 weight of 1e5 loaded as float16 becomes inf) keeps the stored
tensor, so that `io.load_into` casts it again and reports the overflow by name, as it always did.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path
from typing import Callable, Union

import torch
from safetensors import safe_open

# A target dtype for every floating tensor, or a function key -> dtype (None: keep that tensor as stored).
DtypePolicy = Union[torch.dtype, Callable[[str], Union[torch.dtype, None]], None]
# Re-open a safetensors file after reading this many bytes from it: bounds its resident pages.
REOPEN_BYTES = 32 * 2**20


def target_dtype(key: str, dtype: DtypePolicy) -> torch.dtype | None:
    return dtype(key) if callable(dtype) else dtype


def cast_tensor(key: str, tensor: torch.Tensor, dtype: DtypePolicy, *, from_file: bool) -> torch.Tensor:
    """`tensor` cast to the policy's dtype for `key` (floating tensors only; integers stay as stored).

    A tensor that comes `from_file` (a view of a memory-mapped file) is always copied out of it, cast
    or not, so that once `read_state_dict` returns no tensor views the file and its map can go. A cast
    that turns finite values into inf/NaN gives the stored values instead (see the module docstring)."""
    target = target_dtype(key, dtype)
    if not tensor.is_floating_point() or target is None or tensor.dtype == target:
        return tensor.clone() if from_file else tensor
    out = tensor.to(target)
    if not torch.isfinite(out).all() and torch.isfinite(tensor).all():
        return tensor.clone() if from_file else tensor
    return out


def read_safetensors(path: Path, keys: list[str], dtype: DtypePolicy) -> dict[str, torch.Tensor]:
    """The tensors `keys` of a safetensors file, each cast as it is read; the file is re-opened every
    REOPEN_BYTES so that the pages already cast are unmapped (module docstring)."""
    sd: dict[str, torch.Tensor] = {}
    i = 0
    while i < len(keys):
        with safe_open(str(path), framework="pt") as f:
            read = 0
            while i < len(keys) and read < REOPEN_BYTES:
                tensor = f.get_tensor(keys[i])
                read += tensor.numel() * tensor.element_size()
                sd[keys[i]] = cast_tensor(keys[i], tensor, dtype, from_file=True)
                del tensor
                i += 1
    return sd


def cast_entries(sd: dict, dtype: DtypePolicy, *, mapped: bool) -> dict:
    """Cast the tensors of `sd` in place, one entry at a time: each source tensor is let go (and, for a
    memory-mapped pickle, its pages released) as soon as its cast (or copy) exists."""
    for key in list(sd):
        source = sd[key]
        if not isinstance(source, torch.Tensor):
            continue
        sd[key] = cast_tensor(key, source, dtype, from_file=mapped)
        if mapped:
            release_pages(source)
        del source
    return sd


_MADV_DONTNEED = 4        # Linux
_PAGE = 4096


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


_LIBC = _libc()


def release_pages(tensor: torch.Tensor) -> None:
    """`madvise(MADV_DONTNEED)` the whole pages inside a tensor of a `torch.load(mmap=True)` map (a
    private map of the file, never written): the kernel drops them from this process, and a later read
    would fetch them from the file again, so it is safe even if another tensor shares a page. Only
    called on such tensors; a no-op without a C library that has madvise."""
    if _LIBC is None or not hasattr(_LIBC, "madvise") or tensor.device.type != "cpu" or tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first, last = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE        # pages wholly inside the tensor
    if last > first:
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


# Fixed tables some files store and the loaders check against the ones minidit computes (PixArt's and
# DiT's sin-cos `pos_embed`) before dropping them: read as stored, since a bfloat16 copy would fail the check.
KEEP_AS_STORED = ("pos_embed",)


def reading_dtype(dtype: torch.dtype | None, keep: tuple[str, ...] = KEEP_AS_STORED) -> DtypePolicy:
    """The policy a loader reads with when the model is loaded in `dtype`: every floating tensor cast
    to it, except the keys named in `keep` (or ending in "." + one of them); None: nothing cast."""
    if dtype is None:
        return None

    def policy(key: str) -> torch.dtype | None:
        return None if any(key == k or key.endswith("." + k) for k in keep) else dtype
    return policy
