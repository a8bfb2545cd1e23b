"""Measuring speed and peak memory fairly: one fresh interpreter per measured case.

Peak memory on CPU is the process's resident-set high-water mark (VmHWM), measured by minidit's own
probe, `minidit.pipelines.memory.stage` (what the pipelines' `last_run_stats` report): the child
resets it to the current RSS (`/proc/self/clear_refs` = 5, Linux >= 4.0) after its inputs and weights
are in memory, runs the measured code, and reports the increase — so imports, weights and inputs
are excluded, and no other case's allocations can leak into it. (`tracemalloc` does not see tensor
memory.)

A benchmark script is its own child: the parent calls `run_child(__file__, case)` which runs
`python script.py --child '<json case>'`; the child calls `report(dict)` to print its result.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time


@contextlib.contextmanager
def peak_memory():
    """Measure the block's peak resident memory on the CPU with `minidit.pipelines.memory.stage`.
    Yields a dict that, once the block has ended, holds "peak_mib" (the peak's increase over the RSS
    at the start of the block) and "peak_rss_mib" (the whole process's peak, weights and libraries
    included)."""
    from minidit.pipelines.memory import stage
    stats: dict = {}
    with stage(stats, "measured", "cpu") as record:
        yield record
    if record["start_gib"] is None or record["peak_gib"] is None:
        raise RuntimeError("peak memory needs Linux's /proc/self/status (VmHWM) and a writable /proc/self/clear_refs")
    record["peak_mib"] = round((record["peak_gib"] - record["start_gib"]) * 1024, 1)
    record["peak_rss_mib"] = round(record["peak_gib"] * 1024, 1)


def touch(module) -> None:
    """Read every weight once. Loaders may leave safetensors weights memory-mapped; without this the
    first forward would page the whole model in and count it as activation memory."""
    import torch
    with torch.no_grad():
        for t in module.state_dict().values():
            t.sum()


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


def measure(run, repeats: int) -> tuple[object, dict]:
    """The standard measurement of a forward pass `run()`, weights already paged in (`touch`): one
    warm-up call, then `repeats` timed calls, all under no_grad. Returns the warm-up's output (to
    compare implementations) and {"median_s", "times", "peak_mib"}. The peak is the resident-set
    increase during the timed calls over the RSS after the warm-up: the steady state of a sampling
    loop, in which one-time work of the first call (kernel caches, minidit's position table, which
    diffusers computes at load time instead) is already done and counts for neither side."""
    import torch
    with torch.no_grad():
        out = run()
        with peak_memory() as memory:
            times = time_calls(run, repeats=repeats, warmup=0)
    return out, {"median_s": round(median(times), 4), "times": [round(s, 4) for s in times],
                 "peak_mib": memory["peak_mib"]}


# The columns `comparison_rows` fills, in table order (scripts put their own label columns first).
COMPARISON_COLUMNS = ["median forward (s)", "peak extra memory (MiB)", "default-malloc peak (MiB)",
                      "time ratio", "memory ratio"]


def comparison_rows(results: dict[str, dict], reference: str, **label) -> list[dict]:
    """One table row per implementation (`label` columns first): median time, peak memory and, for
    all but `reference`, their ratios to it (below 1.0 = faster / smaller than the reference)."""
    ref = results[reference]
    return [{**label, "impl": impl, "median forward (s)": r["median_s"], "peak extra memory (MiB)": r["peak_mib"],
             "default-malloc peak (MiB)": r.get("peak_mib_default_malloc", ""),
             "time ratio": "" if impl == reference else f"{r['median_s'] / ref['median_s']:.2f}",
             "memory ratio": "" if impl == reference else f"{r['peak_mib'] / max(ref['peak_mib'], 0.1):.2f}"}
            for impl, r in results.items()]


def same_weights_folder(first: str, folder: str, **config) -> None:
    """A model folder sharing `first`'s safetensors file (a symlink) whose config.json differs by
    `config` (e.g. another latent size): one set of random weights for every case."""
    os.makedirs(folder)
    with open(os.path.join(first, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(cfg, **config), f)
    name = "diffusion_pytorch_model.safetensors"
    os.symlink(os.path.join(first, name), os.path.join(folder, name))


def max_abs_diff(path_a: str, path_b: str) -> float:
    """The largest elementwise difference between two outputs the children saved with torch.save."""
    import torch
    return (torch.load(path_a, weights_only=True) - torch.load(path_b, weights_only=True)).abs().max().item()


def child_case() -> dict | None:
    """The case this process should measure, if it was started by `run_child`."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return json.loads(sys.argv[2])
    return None


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


# glibc's malloc serves a freed large block's size from its heap from then on (the mmap threshold
# moves up to 32 MiB) and keeps freed heap memory, so a process's peak RSS depends on the order in
# which tensors of different sizes were allocated before, not only on what is alive: the same code
# measured 187 and 222 MiB in two runs. A fixed threshold (setting it disables the adjustment) gives
# every tensor of 64 KiB or more its own mapping, returned to the system when freed: the peak RSS is
# then the peak of live tensors. It also costs page faults, so times are measured without it.
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


class ChildFailed(RuntimeError):
    """A measured case's process failed; `.returncode` is -9 when it was killed (out of memory)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def run_child(script: str, case: dict, threads: int | None = None, env_extra: dict | None = None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, script, "--child", json.dumps(case)], env=env,
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        killed = " (killed by SIGKILL: usually the kernel's out-of-memory killer)" if proc.returncode == -9 else ""
        raise ChildFailed(f"benchmark child failed with return code {proc.returncode}{killed} for {case}:\n"
                          f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", proc.returncode)
    return json.loads(lines[-1][len("RESULT "):])


def run_rounds(script: str, cases: dict[str, dict], rounds: int = 2, threads: int | None = None) -> dict[str, dict]:
    """Run each implementation's case (`{impl: case}`, reference first) in a fresh process, `rounds`
    times, alternating which implementation goes first, and keep each one's fastest round: on a
    shared machine the load drifts, and a fixed order would charge the drift to one side.

    Time comes from those rounds (default allocator, as users run it). Peak memory comes from one more
    process per implementation with `LIVE_MEMORY_ENV` (one warm-up and one measured call): the peak
    of live tensors, not of glibc's heap history (see `LIVE_MEMORY_ENV`)."""
    best: dict[str, dict] = {}
    for r in range(rounds):
        for impl in list(cases)[:: 1 if r % 2 == 0 else -1]:
            got = run_child(script, cases[impl], threads)
            if impl not in best or got["median_s"] < best[impl]["median_s"]:
                best[impl] = got
    for impl in cases:
        memory = run_child(script, {**cases[impl], "repeats": 1}, threads, LIVE_MEMORY_ENV)
        best[impl] = {**best[impl], "peak_mib": memory["peak_mib"], "peak_mib_default_malloc": best[impl]["peak_mib"]}
    return {impl: best[impl] for impl in cases}


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
