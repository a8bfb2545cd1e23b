"""scripts/lora_digits.py on a shortened run: the pieces work together and the style moves the right way.
(The recorded run, 400 steps and 200 samples, is benchmarks/results/lora_digits.txt.)"""
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="scikit-learn (requirements-dev.txt) provides the digits")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lora_digits", ROOT / "scripts" / "lora_digits.py")
lora_digits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lora_digits)


def test_thicken_is_a_3x3_grey_dilation():
    x = -torch.ones(1, 1, 16, 16)
    x[0, 0, 5, 7] = 1.0
    y = lora_digits.thicken(x)
    assert torch.equal(y[0, 0, 4:7, 6:9], torch.ones(3, 3)) and y.sum() == -256 + 2 * 9


def test_short_run_thickens_the_samples(tmp_path):
    args = lora_digits.build_parser().parse_args(["--steps", "40", "--samples", "1", "--threads", "1",
                                                  "--out", str(tmp_path / "r.txt"), "--png", str(tmp_path / "g.png")])
    r = lora_digits.run(args)
    # 4 blocks x rank 8 x (D_in + D_out) of qkv 128->384, proj 128->128, fc1 128->512, fc2 512->128
    assert r["n_lora"] == 4 * 8 * ((128 + 384) + (128 + 128) + (128 + 512) + (512 + 128)) == 65_536
    assert r["merged_output_diff"] <= 1e-5 * max(1.0, r["output_scale"])        # merge is exact
    assert r["merged_image_diff"] <= 1e-4
    assert r["lora_bytes"] * 10 < r["model_bytes"]
    # the data: dilation adds ink; the samples follow it (50 steps took 0.29 -> 0.45, the data 0.31 -> 0.48)
    assert r["ink_thick"] > r["ink_real"] + 0.1
    assert r["ink_after"] > r["ink_before"] + 0.05, r
    text = lora_digits.report(r, args)
    assert "mean ink" in text and (tmp_path / "g.png").stat().st_size > 0
