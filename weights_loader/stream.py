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
though the kernel may drop them at any time (they are clean copies of the file). So every tensor is
copied out of the map (cast on the way, or not) `CHUNK_BYTES` at a time, and the pages of each chunk
copied are handed back with `madvise(MADV_DONTNEED)` (`release_pages`): at any moment the file holds
at most one chunk in memory, and a float32 tensor loaded as float32 is never in memory twice either.
The loaded model is ordinary memory that does not depend on the file.

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
# Copy a tensor out of the file's memory map this many bytes at a time, releasing each chunk's pages.
CHUNK_BYTES = 16 * 2**20


def target_dtype(key: str, dtype: DtypePolicy) -> torch.dtype | None:
    return dtype(key) if callable(dtype) else dtype


def cast_tensor(key: str, tensor: torch.Tensor, dtype: DtypePolicy, *, from_file: bool) -> torch.Tensor:
    """`tensor` cast to the policy's dtype for `key` (floating tensors only; integers stay as stored).

    A tensor that comes `from_file` (a view of a memory-mapped file) is always copied out of it, cast
    or not (`copy_out`). A cast that turns finite values into inf/NaN gives the stored values instead
    (see the module docstring)."""
    target = target_dtype(key, dtype)
    if not tensor.is_floating_point() or target is None or tensor.dtype == target:
        return copy_out(tensor, tensor.dtype) if from_file else tensor
    out = copy_out(tensor, target) if from_file else tensor.to(target)
    if not torch.isfinite(out).all() and torch.isfinite(tensor).all():   # (released pages are re-read)
        return copy_out(tensor, tensor.dtype) if from_file else tensor
    return out


def copy_out(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor of `dtype` with the values of `tensor`, a view of a memory-mapped file, filled
    CHUNK_BYTES at a time; each chunk's file pages are released once copied (module docstring)."""
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        return tensor.to(dtype=dtype, copy=True)
    src = tensor.reshape(-1)
    out = torch.empty(tensor.shape, dtype=dtype)
    dst = out.view(-1)
    step = max(1, CHUNK_BYTES // tensor.element_size())
    for i in range(0, src.numel(), step):
        dst[i:i + step].copy_(src[i:i + step])
        release_pages(src[i:i + step])
    return out


def read_safetensors(path: Path, keys: list[str], dtype: DtypePolicy) -> dict[str, torch.Tensor]:
    """The tensors `keys` of a safetensors file, each copied out of the file's map (and cast) as it is
    read, with the pages of the map released as they are copied."""
    sd: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in keys:
            tensor = f.get_tensor(key)
            sd[key] = cast_tensor(key, tensor, dtype, from_file=True)
            del tensor
    return sd


def cast_entries(sd: dict, dtype: DtypePolicy, *, mapped: bool) -> dict:
    """Cast the tensors of `sd` in place, one entry at a time: each source tensor is let go (and, for a
    memory-mapped pickle, its pages released) as soon as its cast (or copy) exists."""
    for key in list(sd):
        source = sd[key]
        if not isinstance(source, torch.Tensor):
            continue
        sd[key] = cast_tensor(key, source, dtype, from_file=mapped)
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
    """`madvise(MADV_DONTNEED)` the whole pages inside a tensor that views a memory-mapped file
    (`safe_open`'s or `torch.load(mmap=True)`'s, never written): the kernel drops them from this
    process, and a later read fetches them from the file again, so it is safe even if another tensor
    shares a page. Never call it on ordinary memory: there it would zero the pages. A no-op without a
    C library that has madvise."""
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
