"""Measuring speed and peak memory fairly: one fresh interpreter per measured case.

Peak memory on CPU is the process's resident-set high-water mark (VmHWM). The child resets it to the
current RSS (`/proc/self/clear_refs` = 5, Linux >= 4.0) after its inputs and weights are in memory,
runs the measured code, and reports the increase — so imports, weights and inputs are excluded, and
no other case's allocations can leak into it. (`tracemalloc` does not see tensor memory.)

A benchmark script is its own child: the parent calls `run_child(__file__, case)` which runs
`python script.py --child '<json case>'`; the child calls `report(dict)` to print its result.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


def reset_peak() -> int:
    """Reset the high-water mark to the current RSS; returns that baseline in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _hwm_kib()


def touch(module) -> None:
    """Read every weight once. Loaders may leave safetensors weights memory-mapped; without this the
    first forward would page the whole model in and count it as activation memory."""
    import torch
    with torch.no_grad():
        for t in module.state_dict().values():
            t.sum()


def peak_since(baseline_kib: int) -> float:
    """MiB the resident set grew above `baseline_kib` at its peak since `reset_peak()`."""
    return round((_hwm_kib() - baseline_kib) / 1024, 1)


def time_calls(fn, repeats: int = 3, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn()` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def child_case() -> dict | None:
    """The case this process should measure, if it was started by `run_child`."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return json.loads(sys.argv[2])
    return None


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def run_child(script: str, case: dict, threads: int | None = None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, script, "--child", json.dumps(case)], env=env,
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"benchmark child failed for {case}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def median(xs):
    return statistics.median(xs)


def machine() -> str:
    import torch
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(out)
