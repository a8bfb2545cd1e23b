"""benchmarks/pixart_gpu_hires.py and benchmarks/flops.py (from minidit/flops.py) on the CPU: the whole script on tiny models
(rows, columns, window counts), the FLOP count against hand-derived figures and torch's FlopCounterMode,
card detection, the memory-limit note and the OOM report. No wall-clock assertion: GPU figures live in
benchmarks/results/."""
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import flops  # noqa: E402
from benchmarks import pixart_gpu_hires as hires  # noqa: E402
from benchmarks import windowed_denoise  # noqa: E402
from minidit.errors import InputError  # noqa: E402
from minidit.pixart import PIXART_SIGMA_1024_MS  # noqa: E402
from minidit.pipelines.pixart import PixArtPipeline  # noqa: E402

torch.set_num_threads(1)


def parse(text: str) -> tuple[list[str], list[dict]]:
    lines = [s for s in text.splitlines() if s.startswith("|")]
    split = lambda s: [c.strip() for c in s.strip().strip("|").split("|")]  # noqa: E731
    columns = split(lines[0])
    return columns, [dict(zip(columns, split(s))) for s in lines[2:]]


def test_tiny_run_writes_the_table(tmp_path):
    out = tmp_path / "hires.txt"
    text = hires.main(["--tiny", "--sizes", "1024", "4096", "--peak-tflops", "1", "--sdpa-backends", "math", "flash",
                       "--windows-per-call", "3", "--out", str(out)])
    assert out.read_text() == text
    assert "CPU (--tiny" in text and f"torch {torch.__version__}" in text and "speed options (minidit): none" in text
    assert "SDPA restricted to math > flash (both sides)" in text and "3 per transformer call" in text
    columns, rows = parse(text)
    assert columns == hires.COLUMNS
    assert [(r["image"], r["mode"], r["limit GiB"], r["result"]) for r in rows] == [
        ("1024² (tiny: 64²)", "direct", "12 (not applied: CPU)", "ok"),
        ("4096² (tiny: 256²)", "direct", "24 (not applied: CPU)", "ok"),
        ("4096² (tiny: 256²)", "windowed", "24 (not applied: CPU)", "ok")]
    # 64 px -> latent 8 -> 4 x 4 patches; 256 px -> 16 x 16; windows of 128 px (latent 16) overlapping by
    # 32 px (latent 4) on a latent of 32: starts 0, 12, 16 per axis -> 3 x 3 windows of 8 x 8 tokens
    assert [r["windows x tokens"] for r in rows] == ["1 x 16", "1 x 256", "9 x 64"]
    assert [r["calls"] for r in rows] == ["2", "2", "6"]           # 2 steps; 9 windows, 3 per call: 3 a step
    for r in rows:
        for c in ("text s", "denoise s", "decode s", "total s", "denoise peak GiB", "floor fraction"):
            assert float(r[c]) >= 0, (c, r)
        tflop = float(r["denoise TFLOP"])      # 2 steps, batch 2, 2 FLOPs a MAC, tiny shape
        tokens, windows = int(r["windows x tokens"].split(" x ")[1]), int(r["windows x tokens"].split(" x ")[0])
        assert tflop == pytest.approx(8 * windows * tiny_forward_macs(tokens) / 1e12, rel=1e-3)
    assert rows[0]["denoise ratio"] != "-" and float(rows[0]["diffusers denoise s"]) > 0
    assert float(rows[0]["decode ratio"]) > 0
    # the same weights reached both: diffusers' latents after one step are minidit's (float32, relative)
    assert float(rows[0]["latent diff (1 step)"]) < 2e-4
    assert all(r[c] == "-" for r in rows[1:] for c in ("diffusers denoise s", "denoise ratio", "decode ratio",
                                                                "latent diff (1 step)"))


def tiny_forward_macs(tokens: int, depth: int = 2) -> int:
    """The hand-derived PixArt count (no embeddings of size conditions) at the tiny benchmark shape:
    L (14 d² N + 2 N² d + 2 d² M + 2 N M d) + patch, timestep, t_block, caption MLP and output terms."""
    N, d, M, C = tokens, 144, 300, hires.T5_TINY.d_model
    blocks = depth * (14 * d * d * N + 2 * N * N * d + 2 * d * d * M + 2 * N * M * d)
    return N * 16 * d + 256 * d + d * d + 6 * d * d + M * (C * d + d * d) + blocks + N * d * 32


def sigma_forward(tokens: int) -> int:
    return flops.pixart_macs(PIXART_SIGMA_1024_MS, tokens).total


def test_denoise_flops_are_the_hand_derived_figures():
    # PixArt-Σ-XL/2, 20 steps, CFG: 265 TFLOP at 1024², 2.09 PFLOP at 2048², 25.0 PFLOP at 4096² (the four
    # block terms; the embeddings add < 0.1 %)
    for tokens, want in ((4096, 265e12), (16384, 2.09e15), (65536, 25.0e15)):
        assert flops.denoise_flops(sigma_forward(tokens), steps=20) == pytest.approx(want, rel=3e-3)
    # 4096² from 2048² windows, 3 x 3: 9 window forwards
    assert flops.denoise_flops(sigma_forward(16384), steps=20, windows=9) == 9 * flops.denoise_flops(sigma_forward(16384), steps=20)
    # 265 TFLOP on a 989 TFLOP/s card: 0.268 s floor; measured 0.72 s -> 37 %
    assert flops.floor_fraction(265e12, 0.72, 989) == pytest.approx(0.2680 / 0.72, rel=1e-3)
    with pytest.raises(InputError, match="positive"):
        flops.floor_fraction(1e12, 0.0, 989)


def test_forward_macs_match_torchs_flop_counter():
    """An independent count: torch.utils.flop_counter on the meta device (windowed_denoise.counted_macs)."""
    shape = windowed_denoise.TINY
    for depth, latent in ((1, 16), (2, 8)):
        case = dict(latent=latent, window=latent, depth=depth, shape=shape, per_call=1, impl="direct", overlap=0)
        macs, windows = windowed_denoise.counted_macs(case)                     # batch 2
        config = replace(PIXART_SIGMA_1024_MS, depth=depth, hidden_size=shape["hidden_size"],
                         num_heads=shape["num_heads"], caption_channels=shape["caption_channels"])
        assert (macs, windows) == (2 * flops.pixart_macs(config, (latent // 2) ** 2).total, 1)


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                                        ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA A100-PCIE-40GB", 312),
                                        ("NVIDIA GeForce RTX 4090", 165.2)])
def test_card_detection(name, peak):
    assert flops.card_peak_tflops(name) == peak
    assert flops.card_peak_tflops(name, 500.0) == 500.0


def test_unknown_card_asks_for_peak_tflops():
    for name in ("NVIDIA A10", "NVIDIA L4", "CPU"):
        with pytest.raises(InputError, match="--peak-tflops"):
            flops.card_peak_tflops(name)
    with pytest.raises(InputError, match="positive"):
        flops.card_peak_tflops("NVIDIA H200", -1.0)


def test_memory_limit_is_skipped_on_the_cpu():
    assert hires.apply_memory_limit(24.0, torch.device("cpu")) == "24 (not applied: CPU)"
    assert hires.apply_memory_limit(None, torch.device("cpu")) == "none"


def test_out_of_memory_is_a_row_not_a_crash(monkeypatch):
    def oom(self, *args, **kwargs):
        self.last_run_stats = {"device": "cpu", "memory": "-", "text": {"seconds": 1.0, "peak_gib": 2.0},
                               "denoise": {}}
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(PixArtPipeline, "__call__", oom)
    case = dict(size=1024, mode="direct", dtype="float32", limit_gib=12.0, device="cpu", tiny=True,
                scale=hires.TINY_SCALE, steps=2, guidance_scale=4.5, overlap=512, compile=False, cuda_graphs=False,
                channels_last_vae=False, sdpa_backends=None, windows_per_call=1, diffusers_layout=False,
                diffusers=True)
    row = hires.run_case(case)
    assert row["minidit"]["result"] == "OOM in denoise" and row["diffusers"] is None
    cells = hires.table_row(row, 989.0)
    assert cells["result"] == "OOM in denoise" and cells["text peak GiB"] == "2.00"
    assert cells["denoise s"] == cells["floor fraction"] == cells["denoise ratio"] == "-"


def test_full_size_rows_are_the_released_models():
    """The diffusers configs the GPU rows use translate to minidit's presets of the released models."""
    from minidit.pixart import PRESETS
    from minidit.vae import SDXL_VAE
    from weights_loader.pixart import pixart_config_from_diffusers
    from weights_loader.vae import vae_config_from_diffusers
    for size, name in ((1024, "PixArt-Sigma-XL-2-1024-MS"), (2048, "PixArt-Sigma-XL-2-2K-MS"),
                       (4096, "PixArt-Sigma-XL-2-2K-MS")):
        transformer, vae = hires.configs(size, tiny=False)
        assert pixart_config_from_diffusers(transformer, 300) == PRESETS[name]
        assert vae_config_from_diffusers(vae) == SDXL_VAE


def test_default_plan():
    import argparse
    args = argparse.Namespace(sizes=[1024, 2048, 4096], modes=["direct", "windowed"], dtypes=["bfloat16"],
                              memory_limit_gib=None, tiny=False, steps=20, guidance_scale=4.5, overlap=512,
                              compile=False, cuda_graphs=False, channels_last_vae=False, sdpa_backends=None,
                              windows_per_call=1, no_diffusers=False, diffusers_sizes=[1024, 2048])
    plan = [(c["size"], c["mode"], c["limit_gib"], c["diffusers"]) for c in hires.cases(args, torch.device("cuda"))]
    assert plan == [(1024, "direct", 12.0, True), (2048, "direct", 12.0, True), (4096, "direct", 24.0, False),
                    (4096, "windowed", 24.0, False)]
    args.memory_limit_gib, args.modes = 0.0, ["windowed"]
    assert [(c["size"], c["limit_gib"]) for c in hires.cases(args, torch.device("cuda"))] == [(4096, None)]
    args.sizes = [1024]
    with pytest.raises(InputError, match="no row of the plan"):
        hires.cases(args, torch.device("cuda"))
