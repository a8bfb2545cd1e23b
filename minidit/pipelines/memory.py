"""Time and peak memory of each stage of a pipeline run (encode the prompt, denoise, decode).

What "peak" means depends on the device:
  * CUDA: `torch.cuda.max_memory_allocated`, reset when the stage starts: the most memory torch's
    tensors held on the GPU at any moment of the stage, resident weights included (the caching
    allocator may reserve more; `nvidia-smi` shows that, plus the CUDA context).
  * CPU (Linux): the process's peak resident set size `VmHWM` (/proc/self/status), reset to the
    current RSS when the stage starts by writing "5" to /proc/self/clear_refs (Linux >= 4.0). It
    counts everything in the process: the Python interpreter, torch's libraries (~0.25 GiB),
    every weight in memory. `tracemalloc` cannot be used: it does not see tensor memory.
  * elsewhere (no /proc): time only, memory None.

A fourth count, for any device, is `live_tensor_peak(fn)`: it watches every tensor the ops inside
`fn()` create and adds up the bytes of the storages alive at once. That is what
`torch.cuda.max_memory_allocated` would report for the same code (without the caching allocator's
rounding and the kernels' workspaces), and it is exact and free of allocator noise on the CPU too;
`minidit/plan.py`'s activation formulas are checked against it (`tests/test_plan.py`).

    stats = {}
    with stage(stats, "denoise", device) as record:
        ...
    stats["denoise"] -> {"seconds": 1.2, "start_gib": 1.31, "peak_gib": 3.05}
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GiB = 2**30


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_method(device) -> str:
    """How `stage` measures memory on this device (for printouts)."""
    if torch.device(device).type == "cuda":
        return "torch.cuda.max_memory_allocated"
    return "peak RSS of the process (VmHWM)" if _proc_status_kib("VmHWM") is not None else "not measured"


@contextlib.contextmanager
def stage(stats: dict, name: str, device):
    """Time the block and record its peak memory into stats[name] (a dict the block may extend)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    else:
        rss = _proc_status_kib("VmRSS") if _reset_peak_rss() else None
        start = None if rss is None else rss * 1024
    record = stats[name] = {}
    t0 = time.perf_counter()
    yield record
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        hwm = _proc_status_kib("VmHWM") if start is not None else None
        # The kernel syncs each thread's RSS counters into the process's lazily, so VmHWM read at the end
        # can trail the VmRSS read at the start by a few pages; the peak is at least the start.
        peak = None if hwm is None else max(hwm * 1024, start)
    record.update(seconds=time.perf_counter() - t0,
                  start_gib=None if start is None else start / GiB,
                  peak_gib=None if peak is None else peak / GiB)


def release_freed_memory() -> None:
    """Hand memory that Python has freed back to the system: `gc.collect()`, then glibc's
    `malloc_trim(0)` (glibc keeps freed heap blocks for reuse, so after a 2 GB model is freed the
    process's RSS would not drop; a no-op without glibc). Called when a staged component is freed."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def format_stats(stats: dict, stages=("text", "denoise", "decode")) -> str:
    """A small table of the recorded stages: seconds, memory at the start and peak (GiB)."""
    fmt = lambda v, f: "-" if v is None else f % v  # noqa: E731
    lines = [f"{'stage':<9} {'seconds':>8} {'start GiB':>10} {'peak GiB':>9}  notes"]
    for name in stages:
        r = stats.get(name)
        if r is None:
            continue
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("seconds", "start_gib", "peak_gib"))
        lines.append(f"{name:<9} {fmt(r['seconds'], '%8.2f')} {fmt(r['start_gib'], '%10.3f')} "
                     f"{fmt(r['peak_gib'], '%9.3f')}  {notes}")
    lines.append(f"memory: {stats.get('memory', '?')} on {stats.get('device', '?')}")
    return "\n".join(lines)


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of the storages created by the ops it sees; a storage is freed when the last
    tensor viewing it is garbage (weakref finalizers). Storages made before (`known`) are not counted."""

    def __init__(self, known=()):
        super().__init__()
        self.known = {t.untyped_storage().data_ptr() for t in known}
        self.refs, self.sizes, self.seen = {}, {}, set()
        self.current = self.peak = 0

    def _register(self, t):
        if id(t) in self.seen:
            return
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self.known:
            return
        if ptr not in self.refs:
            self.refs[ptr], self.sizes[ptr] = 0, storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.refs[ptr] += 1
        self.seen.add(id(t))
        weakref.finalize(t, self._release, ptr, id(t))

    def _release(self, ptr, tensor_id):
        self.seen.discard(tensor_id)
        self.refs[ptr] -= 1
        if self.refs[ptr] == 0:
            self.current -= self.sizes.pop(ptr)
            del self.refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._register(t)
        return out


def live_tensor_peak(fn, known=()) -> int:
    """Bytes of the largest set of tensors alive at once while `fn()` runs (under no_grad). Tensors
    made before the call are not counted, except views of them that an op returns: pass the module's
    parameters and buffers and the inputs as `known` so that those views are recognised."""
    counter = _LiveTensors(known)
    with torch.no_grad(), counter:
        out = fn()
        del out
    return counter.peak
