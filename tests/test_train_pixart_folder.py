"""scripts/train.py on a folder of captioned images, fine-tuning a PixArt from a diffusers pipeline folder (a tiny
random PixArt-Σ written by diffusers: tests/helpers/pixart.py): T5 encodes each caption once into the cache and
is freed, the VAE makes the latents, the batches come from two aspect-ratio buckets, and the exported EMA
weights load back; the null caption (not stored by diffusers) is T5("")."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import require
from weights_loader import load_pixart

require("diffusers")
from helpers.pixart import build_pipeline_folder  # noqa: E402
from test_train_distributed import _script  # noqa: E402


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return build_pipeline_folder(tmp_path_factory.mktemp("sigma"), "sigma", tmp_path_factory.mktemp("spm"))


def test_fine_tune_pixart_on_a_captioned_folder(tmp_path, pipeline):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(256, 256)] * 2 + [(200, 400)] * 2):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(["a red cube", "a blue ball"][i % 2])
    out = tmp_path / "run"
    result = _script().main(["--data", str(images), "--weights", str(pipeline), "--side", "256", "--steps", "4",
                             "--batch-size", "1", "--grad-accum", "2", "--lr", "1e-4", "--log-every", "1",
                             "--threads", "1", "--out", str(out)])
    cached = sorted((out / "text_cache").glob("*.safetensors"))
    assert len(cached) == 3                                            # two captions + "" (the null caption)
    assert all(np.isfinite(result["losses"])) and len(result["losses"]) == 4
    model = load_pixart(result["export"], load_pixart(pipeline).config)          # ema.pth, strict
    assert torch.isfinite(model.y_embedder.y_embedding).all() and model.y_embedder.y_embedding.abs().sum() > 0
