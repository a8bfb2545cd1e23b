"""Streaming reads (weights_loader/stream.py): every file format cast tensor by tensor to the dtype
asked for, with the same values as casting afterwards; the key maps consume their source; and loading
a float32 file as bfloat16 peaks near the result's size (a child process's VmHWM), not 3x it."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from weights_loader import CheckpointError, read_state_dict
from weights_loader import stream
from weights_loader.keymap import KeyMap


def _sd():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(64, 48, generator=g), "b.bias": torch.randn(48, generator=g),
            "pos_embed": torch.randn(1, 16, 8, generator=g), "ids": torch.arange(7)}


def _write(fmt, sd, folder):
    if fmt == "safetensors":
        path = folder / "model.safetensors"
        save_file(sd, path)
    elif fmt == "zip-pickle":
        path = folder / "model.pt"
        torch.save({"state_dict": sd}, path)
    elif fmt == "legacy-pickle":                       # cannot be memory-mapped: read whole, then cast
        path = folder / "model.pt"
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:                                              # two safetensors shards + index
        keys = sorted(sd)
        parts = {"model-1.safetensors": keys[:2], "model-2.safetensors": keys[2:]}
        for name, names in parts.items():
            save_file({k: sd[k] for k in names}, folder / name)
        path = folder / "model.safetensors.index.json"
        path.write_text(json.dumps({"weight_map": {k: n for n, names in parts.items() for k in names}}))
    return path


@pytest.mark.parametrize("fmt", ["safetensors", "zip-pickle", "legacy-pickle", "sharded"])
def test_every_format_is_cast_as_read_with_the_values_of_a_cast_afterwards(fmt, tmp_path):
    sd = _sd()
    path = _write(fmt, sd, tmp_path)
    got = read_state_dict(path, dtype=stream.reading_dtype(torch.bfloat16))
    assert sorted(got) == sorted(sd)
    for k in ("a.weight", "b.bias"):
        assert got[k].dtype == torch.bfloat16 and torch.equal(got[k], sd[k].to(torch.bfloat16))
    assert got["pos_embed"].dtype == torch.float32 and torch.equal(got["pos_embed"], sd["pos_embed"])  # kept
    assert got["ids"].dtype == torch.int64 and torch.equal(got["ids"], sd["ids"])
    as_stored = read_state_dict(path)                                          # no dtype: as before
    assert all(as_stored[k].dtype == sd[k].dtype for k in sd)


def test_a_dict_source_is_not_changed_and_an_overflow_keeps_the_stored_tensor():
    sd = {"w": torch.full((4,), 1e5), "v": torch.ones(3)}
    got = read_state_dict(sd, dtype=torch.float16)
    assert sd["w"].dtype == torch.float32 and got["v"].dtype == torch.float16
    assert got["w"].dtype == torch.float32     # 1e5 overflows float16: load_into casts again and names it


def test_overflow_is_still_reported_by_name_through_a_file(tmp_path):
    """A float32 file whose values overflow float16: the read keeps them as stored, and load_into's
    check names the overflow, as it did when the whole file was cast at once."""
    from weights_loader.io import load_into
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.full((4,), 1e5)}, path)
    sd = read_state_dict(path, dtype=torch.float16)
    assert sd["w"].dtype == torch.float32
    model = torch.nn.Module()
    with torch.device("meta"):
        model.w = torch.nn.Parameter(torch.empty(4))
    with pytest.raises(CheckpointError, match="overflows when cast to torch.float16"):
        load_into(model, sd, dtype=torch.float16)


@pytest.mark.parametrize("name", ["m.safetensors", "m.pt"])
def test_file_pages_are_released_chunk_by_chunk(name, tmp_path, monkeypatch):
    """What keeps the file's pages from piling up: each tensor is copied out of the map CHUNK_BYTES at
    a time and each chunk's pages are released (madvise), cast or not; the values are unchanged."""
    sd = {f"t{i}": torch.randn(256, 256) for i in range(6)}                    # 256 KiB each
    (save_file(sd, tmp_path / name) if name.endswith(".safetensors") else torch.save(sd, tmp_path / name))
    monkeypatch.setattr(stream, "CHUNK_BYTES", 64 * 1024)
    released, real_release = [], stream.release_pages
    monkeypatch.setattr(stream, "release_pages", lambda t: released.append(t.numel()) or real_release(t))
    for dtype in (torch.bfloat16, torch.float32):
        released.clear()
        got = read_state_dict(tmp_path / name, dtype=dtype)
        assert len(released) == 6 * 4 and all(torch.equal(got[k], sd[k].to(dtype)) for k in sd)
    released.clear()
    read_state_dict(sd, dtype=torch.bfloat16)                                 # a dict: ordinary memory, never
    assert released == []


def test_keymap_consume_empties_the_source_as_it_goes():
    sd = {"q": torch.ones(2, 3), "k": torch.ones(2, 3), "v": torch.ones(2, 3), "o": torch.ones(3)}
    keys = KeyMap(sd, "toy", consume=True)
    keys.cat(["q", "k", "v"], "qkv")
    assert sorted(sd) == ["o"]                       # the fused sources are gone from the caller's dict too
    keys.move("o", "out")
    assert keys.finish().keys() == {"qkv", "out"} and not sd


CHILD = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    from weights_loader.io import read_state_dict
    def hwm():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
    open("/proc/self/clear_refs", "w").write("5")
    start = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) * 1024
    sd = read_state_dict(sys.argv[1], dtype=torch.bfloat16)
    print((hwm() - start) / sum(t.numel() * t.element_size() for t in sd.values()))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("name", ["m.safetensors", "m.pt"])
def test_loading_float32_as_bfloat16_peaks_near_the_result_not_three_times_it(name, tmp_path):
    """160 MiB of float32 in 40 tensors -> 80 MiB of bfloat16: reading whole then casting peaks at
    ~3x the result (the file's copy + the cast); streaming at ~1x plus one tensor and one re-open window."""
    g = torch.Generator().manual_seed(0)
    sd = {f"t{i}": torch.randn(1024, 1024, generator=g) for i in range(40)}
    (save_file(sd, tmp_path / name) if name.endswith(".safetensors") else torch.save(sd, tmp_path / name))
    del sd
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / name), root], capture_output=True, text=True,
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    ratio = float(out.stdout.strip())
    assert ratio < 2.0, f"peak {ratio:.2f}x the loaded size"
