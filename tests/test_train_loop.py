"""minidit.training.train end to end, on tiny models: gradient accumulation = one larger batch, resume =
the uninterrupted run (bit for bit), exports load back through weights_loader in the official layout, and a
PixArt trained on a folder of captioned images in two aspect-ratio buckets with cached text embeddings."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from minidit.dit import DiT
from minidit.errors import InputError
from minidit.pipelines.toy import TOY
from minidit.pixart import PixArt, PixArtConfig
from minidit.training import (DigitsData, ImageCaptionFolder, TextEmbeddingCache, TrainConfig, export_weights,
                              make_objective, prepare_pixart, train)
from tests.helpers.oracles import require
from tests.helpers.parity import EXACT, FP32, assert_parity
from weights_loader import load_dit, load_pixart

TINY = replace(TOY, hidden_size=32, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def digits():
    return DigitsData()


def _run(tmp, digits, name="run", config=TINY, objective="epsilon", **kw):
    torch.manual_seed(0)
    model = DiT(config)
    cfg = TrainConfig(**{"steps": 3, "batch_size": 8, "lr": 1e-3, "warmup": 1, "log_every": 100,
                         "out": str(tmp / name), **kw})
    obj = make_objective(objective, learn_sigma=config.learn_sigma, beta_schedule="squaredcos_cap_v2")
    result = train(cfg, model, digits, obj)
    return result, torch.load(result["checkpoint"], weights_only=True)


@pytest.mark.parametrize("objective", ["epsilon", "v_prediction", "flow"])
def test_accumulating_k_micro_batches_is_one_batch_k_times_larger(tmp_path, digits, objective):
    config = replace(TINY, learn_sigma=objective != "flow")
    big, big_ckpt = _run(tmp_path, digits, "big", config, objective, batch_size=8)
    acc, acc_ckpt = _run(tmp_path, digits, "acc", config, objective, batch_size=2, grad_accum=4)
    assert_parity(torch.tensor(acc["losses"]), torch.tensor(big["losses"]), tol=FP32, what="loss curve")
    for k, v in big_ckpt["model"].items():
        assert_parity(acc_ckpt["model"][k], v, tol=FP32, what=k)
    other, _ = _run(tmp_path, digits, "other", config, objective, batch_size=8, seed=1)
    assert other["losses"] != big["losses"]                # (the comparison can fail: the seed matters)


def test_resume_continues_the_run_bit_for_bit(tmp_path, digits):
    whole, whole_ckpt = _run(tmp_path, digits, "whole", steps=4, save_every=2, grad_accum=2, batch_size=4)
    first = tmp_path / "whole" / "checkpoint-0000002.pt"
    resumed, resumed_ckpt = _run(tmp_path, digits, "resumed", steps=4, grad_accum=2, batch_size=4,
                                 resume=str(first))
    assert resumed["losses"] == whole["losses"][2:]
    for part in ("model", "optimizer", "ema", "scheduler"):
        a, b = resumed_ckpt[part], whole_ckpt[part]
        flat_a, flat_b = _flatten(a), _flatten(b)
        assert flat_a.keys() == flat_b.keys(), part
        for k in flat_a:
            if isinstance(flat_a[k], torch.Tensor):
                assert_parity(flat_a[k], flat_b[k], tol=EXACT, what=f"{part} {k}", scale=1.0)
            else:
                assert flat_a[k] == flat_b[k], (part, k)
    assert resumed_ckpt["step"] == 4
    # the same global batch split another way (8 x 1 instead of 4 x 2) continues the same curve
    regrouped, _ = _run(tmp_path, digits, "regrouped", steps=4, batch_size=8, resume=str(first))
    assert_parity(torch.tensor(regrouped["losses"]), torch.tensor(whole["losses"][2:]), tol=FP32, what="loss")
    with pytest.raises(ValueError, match="global batch"):
        _run(tmp_path, digits, "bad", steps=4, batch_size=4, resume=str(first))


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        if isinstance(v, (dict, list, tuple)) and not isinstance(v, torch.Tensor):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_dit_export_is_the_official_layout_and_loads_back(tmp_path, digits):
    result, ckpt = _run(tmp_path, digits, "export", steps=2)
    blob = torch.load(result["export"], weights_only=True)
    assert result["export"].suffix == ".pt" and "pos_embed" in blob and blob["pos_embed"].shape == (1, 16, 32)
    assert not any("exp_avg" in k or k.startswith("module.") for k in blob)     # weights only, unwrapped
    model = load_dit(result["export"], TINY)                                     # strict, pos_embed checked
    for k, v in model.state_dict().items():
        assert_parity(v, ckpt["ema"]["shadow"][k], tol=EXACT, what=k)
    assert not model.training


def test_pixart_export_loads_back_with_its_config_read_off_the_file(tmp_path):
    config = PixArtConfig(input_size=16, patch_size=2, in_channels=4, hidden_size=144, depth=2, num_heads=2,
                          caption_channels=16, model_max_length=7, pe_interpolation=0.5)
    model = PixArt(config)
    weights = {k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()}
    path = export_weights(tmp_path / "ema.pth", model, weights)
    assert list(torch.load(path, weights_only=True)) == ["state_dict"]
    back = load_pixart(path)                                   # no config: detected, resolution from pos_embed
    assert back.config == config
    for k, v in back.state_dict().items():
        assert_parity(v, weights[k], tol=EXACT, what=k)
    with pytest.raises(ValueError, match=".pth"):
        export_weights(tmp_path / "ema.pt", model, weights)


def _image_folder(root, sizes):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(f"caption {i % 3}")
    return root


def test_pixart_trains_on_captioned_images_in_aspect_ratio_buckets(tmp_path):
    root = _image_folder(tmp_path / "images", [(256, 256)] * 4 + [(200, 400)] * 4)
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return torch.randn(len(texts), 7, 16), torch.ones(len(texts), 7, dtype=torch.long)
    data = ImageCaptionFolder(root, 256, TextEmbeddingCache(tmp_path / "cache", encode, "fake"))
    assert data.precompute_text() == 3 and sum(calls) == 3
    assert sorted(set(data.buckets())) == [(176, 352), (256, 256)]            # ratio 0.5 at 256: 704 x 1408 / 4
    shapes = []
    load = data.load
    data.load = lambda items, bucket: shapes.append((bucket, load(items, bucket)[0].shape)) or load(items, bucket)
    config = PixArtConfig(input_size=256, patch_size=16, in_channels=3, hidden_size=48, depth=2, num_heads=2,
                          caption_channels=16, model_max_length=7, pe_interpolation=0.5)
    torch.manual_seed(0)
    model = prepare_pixart(PixArt(config))
    result = train(TrainConfig(steps=4, batch_size=2, lr=1e-3, log_every=1, out=str(tmp_path / "run"),
                               checkpointing=True), model, data, make_objective("epsilon"))
    assert {b for b, _ in shapes} == {(176, 352), (256, 256)}
    assert all(s == (2, 3, *b) for b, s in shapes)                           # one bucket's size per batch
    assert sum(calls) == 3 and all(np.isfinite(result["losses"]))             # no encoder call while training
    assert load_pixart(result["export"], config).config == config            # strict, pos_embed checked


def test_folder_errors(tmp_path):
    root = _image_folder(tmp_path / "images", [(64, 64)])
    (root / "0.txt").unlink()
    with pytest.raises(InputError, match="no caption file"):
        ImageCaptionFolder(root, 256, None)
    with pytest.raises(InputError, match="not a folder"):
        ImageCaptionFolder(tmp_path / "nothing", 256, None)


def test_the_loop_trains_only_what_requires_grad(tmp_path, digits):
    """Adapters (here PEFT's LoRA, the test-only oracle) on a frozen base: AdamW gets the adapters only, the
    base weights stay bit-identical, the adapters move, and the checkpoint resumes like any other."""
    peft = require("peft")
    torch.manual_seed(0)
    base = DiT(TINY)
    with torch.no_grad():               # a "pretrained" base: adaLN-Zero's zero gates would block every gradient
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model = peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=4, target_modules=["qkv", "fc1"]), base)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=2, batch_size=8, lr=1e-2, log_every=100, out=str(tmp_path / "lora"), export=False)
    result = train(cfg, model, digits, make_objective("epsilon", beta_schedule="squaredcos_cap_v2"))
    after = torch.load(result["checkpoint"], weights_only=True)
    moved = {k for k in before if not torch.equal(before[k], after["model"][k])}
    assert moved and all("lora_B" in k or "lora_A" in k for k in moved)
    assert any("lora_B" in k for k in moved)                        # B starts at zero: it must have left it
    assert len(after["optimizer"]["state"]) == sum(p.requires_grad for p in model.parameters())
