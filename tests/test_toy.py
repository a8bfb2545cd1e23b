"""The built-in toy models (minidit/pipelines/toy.py): the DDPM toy (minidit/assets/toy_digits.safetensors)
and the rectified-flow toy (minidit/assets/toy_digits_flow.safetensors).

The quality test is the issue's contract: a classifier trained on the *real* scikit-learn digits
must label at least 90 % of generated digits with the class that was asked for. Generated 16x16
samples are average-pooled back to the 8x8, 0..16 format the classifier was trained on; a control
test shows that this round trip keeps real digits recognisable, so a pass means the samples are
digits of the right class, not an artefact of the resizing. A sampler that returned each class's
average digit would also pass it, so the flow toy's test also asks for variety within a class.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minidit import cli
from minidit.pipelines import toy
from minidit.dit import DiT

sklearn = pytest.importorskip("sklearn", reason="scikit-learn (requirements-dev.txt) provides the digits")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

SAMPLES_PER_CLASS = 20


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def classifier(digits):
    # A standard RBF-SVM on the raw 8x8 grey levels (~99 % cross-validated accuracy on this data).
    return SVC(gamma=0.001, C=10.0).fit(digits.data, digits.target)


@pytest.fixture(scope="module")
def model():
    return toy.load_toy_model()


@pytest.fixture(scope="module")
def flow_model():
    return toy.load_toy_model(toy.FLOW_WEIGHTS)


def class_spread(x, y):
    """Mean distance between two samples of one class (8x8 grey levels), averaged over the classes."""
    return float(np.mean([torch.pdist(torch.as_tensor(x[y == c], dtype=torch.float64)).mean().item()
                          for c in range(10)]))


def test_data_mapping_by_hand():
    # grey level 0 -> -1, 8 -> 0, 16 -> +1; a constant image stays constant after upsampling
    for level, value in [(0, -1.0), (8, 0.0), (16, 1.0)]:
        x = toy.digits_to_images(np.full((1, 8, 8), level))
        assert x.shape == (1, 1, 16, 16)
        torch.testing.assert_close(x, torch.full_like(x, value))
    # bilinear (align_corners=False) doubling of a step edge: the two pixels at the edge are
    # 0.25/0.75 mixes of the neighbours, everything else is copied
    row = torch.tensor([0.0] * 4 + [16.0] * 4)
    x = toy.digits_to_images(row.expand(8, 8)[None])[0, 0, 0]                  # one row of 16
    expected = torch.tensor([-1.0] * 7 + [-0.5, 0.5] + [1.0] * 7)
    torch.testing.assert_close(x, expected)
    with pytest.raises(ValueError, match="0..16"):
        toy.digits_to_images(np.full((1, 8, 8), 17))


def test_round_trip_keeps_real_digits_recognisable(digits, classifier):
    """Control for the quality test: real digits -> 16x16 [-1, 1] -> [0, 1] -> back to 8x8 0..16."""
    x, y = toy.load_digits_dataset()
    assert x.shape == (1797, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    back = toy.images_to_digits((x + 1) / 2).numpy()
    assert np.abs(back - digits.data).mean() < 1.5             # a mild blur, not another picture
    acc = (classifier.predict(back) == y.numpy()).mean()
    assert acc > 0.97, f"round-tripped real digits classified at only {acc:.1%}"


def test_generated_digits_have_the_requested_class(model, classifier):
    labels = torch.arange(10).repeat(SAMPLES_PER_CLASS)                      # 200 samples
    images = toy.sample_digits(labels, seed=1234, model=model)              # the defaults users get
    pred = classifier.predict(toy.images_to_digits(images).numpy())
    acc = float((pred == labels.numpy()).mean())
    per_class = [float((pred[labels.numpy() == c] == c).mean()) for c in range(10)]
    print(f"toy DiT class accuracy: {acc:.1%} per class {per_class}")
    assert acc >= 0.90, (f"only {acc:.1%} of {len(labels)} generated digits were classified as the "
                         f"requested class (need >= 90 %); per class: {per_class}")


def test_sample_digits_contract(model):
    a = toy.sample_digits([3, 7, 7], seed=5, steps=3, model=model)
    assert a.shape == (3, 1, toy.IMAGE_SIZE, toy.IMAGE_SIZE) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(toy.sample_digits([3, 7, 7], seed=5, steps=3, model=model), a,
                               rtol=0, atol=0)                               # same seed, same digits
    assert not torch.equal(toy.sample_digits([3, 7, 7], seed=6, steps=3, model=model), a)
    ddim = toy.sample_digits([3], seed=5, steps=3, sampler="ddim", guidance=1.0, model=model)
    assert ddim.shape == (1, 1, 16, 16)
    for bad, match in [(dict(labels=[10]), "0..9"), (dict(labels=[]), "empty"),
                       (dict(labels=[1], steps=0), "steps"), (dict(labels=[1], sampler="euler"), "sampler")]:
        with pytest.raises(ValueError, match=match):
            toy.sample_digits(**{"model": model, **bad})


def test_flow_toy_digits_have_the_requested_class_and_vary(flow_model, classifier, digits):
    labels = torch.arange(10).repeat(SAMPLES_PER_CLASS)                      # 200 samples
    images = toy.sample_flow_digits(labels, seed=1234, model=flow_model)    # the defaults: 20 Euler steps
    x = toy.images_to_digits(images).numpy()
    pred = classifier.predict(x)
    acc = float((pred == labels.numpy()).mean())
    spread = class_spread(x, labels.numpy()) / class_spread(digits.data, digits.target)
    print(f"flow toy class accuracy: {acc:.1%}, within-class spread {spread:.2f} of the real digits'")
    assert acc >= 0.90, f"only {acc:.1%} of {len(labels)} flow-toy digits were classified as requested (need >= 90 %)"
    # one average image per class would score 100 % above; real variety is 1.0, guidance 2 lowers it
    assert spread >= 0.3, f"the flow toy's samples of one class are nearly identical (spread {spread:.2f} of the data's)"


def test_sample_flow_digits_contract(flow_model):
    a = toy.sample_flow_digits([3, 7, 7], seed=5, steps=3, model=flow_model)
    assert a.shape == (3, 1, toy.IMAGE_SIZE, toy.IMAGE_SIZE) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(toy.sample_flow_digits([3, 7, 7], seed=5, steps=3, model=flow_model), a,
                               rtol=0, atol=0)                               # same seed, same digits
    assert not torch.equal(toy.sample_flow_digits([3, 7, 7], seed=6, steps=3, model=flow_model), a)
    for kw in (dict(sampler="dpm_solver++"), dict(shift=3.0), dict(guidance=1.0)):
        assert toy.sample_flow_digits([3], seed=5, steps=3, model=flow_model, **kw).shape == (1, 1, 16, 16)
    for bad, match in [(dict(labels=[10]), "0..9"), (dict(labels=[]), "empty"), (dict(labels=[1], steps=0), "steps"),
                       (dict(labels=[1], sampler="ddpm"), "sample_digits"), (dict(labels=[1], shift=0.0), "shift")]:
        with pytest.raises(ValueError, match=match):
            toy.sample_flow_digits(**{"model": flow_model, **bad})


def test_shipped_weights_file():
    size = toy.WEIGHTS.stat().st_size
    assert size <= 10 * 2**20, f"toy weights are {size / 2**20:.1f} MiB (limit ~10 MB)"
    config, info = toy.read_toy_metadata()
    assert config == toy.TOY
    assert info["steps"] > 0 and info["train_seconds"] > 0 and len(info["loss_log"]) > 0
    model = toy.load_toy_model()
    assert isinstance(model, DiT) and not model.training
    assert sum(p.numel() for p in model.parameters()) * 4 <= size          # every weight is in it


def test_shipped_flow_weights_file():
    size = toy.FLOW_WEIGHTS.stat().st_size
    assert size <= 10 * 2**20, f"flow toy weights are {size / 2**20:.1f} MiB (limit ~10 MB)"
    config, info = toy.read_toy_metadata(toy.FLOW_WEIGHTS)
    assert config == toy.TOY_FLOW and not config.learn_sigma
    assert info["objective"].startswith("rectified flow") and info["density"] == "logit_normal"
    assert info["steps"] > 0 and info["train_seconds"] > 0 and len(info["loss_log"]) > 0


def test_missing_weights_file_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_toy.py"):
        toy.load_toy_model(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="train_toy_flow.py"):
        toy.load_toy_model(tmp_path / "nope.safetensors")


def test_cli_writes_a_png_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--classes", "3,1,4", "--count", "2", "--steps", "2", "--out", str(out)]) == 0
    img = Image.open(out)
    # 3 columns x 2 rows of 16 px digits at zoom 4 with a 2 px frame
    assert img.size == (3 * (64 + 2) + 2, 2 * (64 + 2) + 2) and img.mode == "L"
    assert "wrote" in capsys.readouterr().out


def test_cli_rejects_bad_classes(tmp_path, capsys):
    assert cli.main(["sample", "--classes", "3,x", "--out", str(tmp_path / "g.png")]) == 2
    assert "--classes" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_python_m_minidit_sample_with_no_arguments(tmp_path):
    """The README's main job, exactly as typed, in a fresh interpreter: a grid of all ten digits
    (4 rows, 50 DDPM steps) written to ./digits.png, with a progress bar. (How long it takes depends on
    the machine and its load, so no test asserts a time; the README's figure is a measurement.)"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "minidit", "sample"], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "digits.png").size == (10 * 66 + 2, 4 * 66 + 2)
    assert "50/50" in r.stderr                                  # tqdm's bar went to stderr, all 50 steps
