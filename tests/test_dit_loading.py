"""Tier 4 and the loader's contract: original-layout DiT checkpoints load strictly; corrupt, wrong or
malicious files give a clear error and never a half-loaded model."""
import argparse
import os
import pickle

import pytest
import torch
from torch.testing import assert_close

from minidit.dit import DiTConfig
from weights_loader import CheckpointError, load_dit, read_state_dict
from weights_loader.io import save_safetensors

from helpers import FP32, assert_parity
from helpers.layouts.dit import original_to_diffusers, random_original_dit

# DiT-S/8 at 256 px: the smallest paper size, so heads are detected from the preset table.
S8 = dict(D=384, depth=12, p=8, input_size=32)


@pytest.fixture(scope="module")
def original_sd():
    return random_original_dit(**S8)


def test_original_pt_loads_strictly_with_detected_config(original_sd, tmp_path):
    path = tmp_path / "DiT-S-8.pt"
    torch.save(original_sd, path)
    model = load_dit(path)
    c = model.config
    assert (c.hidden_size, c.depth, c.patch_size, c.input_size, c.num_heads, c.num_classes, c.learn_sigma) == \
        (384, 12, 8, 32, 6, 1000, True)
    expected = {k: v for k, v in original_sd.items() if k != "pos_embed"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert not model.training


def test_original_layout_maps_onto_diffusers_strictly(original_sd):
    """The §1.3 rename rules the real-weight test (test_real_weights_dit.py) relies on: a random
    original checkpoint loads strictly into diffusers and gives minidit's output (official shift 0)."""
    from diffusers import DiTTransformer2DModel
    model = load_dit(original_sd)
    ref = DiTTransformer2DModel(num_attention_heads=6, attention_head_dim=64, num_layers=12, sample_size=32,
                                patch_size=8, out_channels=8, norm_eps=1e-6).eval()
    ref.load_state_dict(original_to_diffusers(original_sd, depth=12), strict=True)
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(2, 4, 32, 32, generator=g), torch.tensor([999, 250]), torch.tensor([207, 1000])
    with torch.no_grad():
        assert_parity(model(x, t, y), ref(x, t, y).sample, tol=FP32, what="DiT-S/8 original layout vs diffusers")


def test_safetensors_and_train_checkpoint_wrapper(original_sd, tmp_path):
    save_safetensors(original_sd, tmp_path / "w.safetensors")
    assert load_dit(tmp_path / "w.safetensors").config.depth == 12
    # DiT's train.py writes {"model", "ema", "opt", "args"}; the EMA weights are the ones to use.
    ema = {k: v + 1 for k, v in original_sd.items() if k != "pos_embed"}
    ema["pos_embed"] = original_sd["pos_embed"]
    torch.save({"model": original_sd, "ema": ema, "opt": {}, "args": argparse.Namespace(model="DiT-S/8")},
               tmp_path / "0050000.pt")
    model = load_dit(tmp_path / "0050000.pt")
    assert torch.equal(model.blocks[0].attn.qkv.weight, ema["blocks.0.attn.qkv.weight"])


def test_dtype_argument(original_sd):
    model = load_dit(original_sd, dtype=torch.float16)
    assert model.blocks[3].mlp.fc1.weight.dtype == torch.float16


def test_missing_unexpected_and_misshaped_keys_are_all_listed(original_sd):
    sd = dict(original_sd)
    del sd["blocks.3.attn.proj.bias"]
    sd["blocks.0.extra.weight"] = torch.zeros(3)
    sd["blocks.1.mlp.fc2.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as err:
        load_dit(sd)
    msg = str(err.value)
    assert "1 missing keys: blocks.3.attn.proj.bias" in msg
    assert "1 unexpected keys: blocks.0.extra.weight" in msg
    assert "blocks.1.mlp.fc2.bias: checkpoint (7,) vs model (384,)" in msg


def test_wrong_pos_embed_or_input_size_is_refused(original_sd):
    with pytest.raises(CheckpointError, match="pos_embed"):
        load_dit(original_sd, DiTConfig(input_size=64, patch_size=8, hidden_size=384, depth=12, num_heads=6))
    sd = dict(original_sd, pos_embed=torch.zeros_like(original_sd["pos_embed"]))
    with pytest.raises(CheckpointError, match="not the 2-D sin-cos table"):
        load_dit(sd)
    sd = {k: v for k, v in original_sd.items() if k != "pos_embed"}
    with pytest.raises(CheckpointError, match="input_size"):
        load_dit(sd)


def test_not_a_dit_checkpoint():
    with pytest.raises(CheckpointError, match="does not look like a DiT"):
        load_dit({"encoder.conv_in.weight": torch.zeros(1)})


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "DiT.safetensors"
    bad.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_dit(bad)
    torch.save({"a": torch.zeros(1000)}, tmp_path / "t.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "t.pt").read_bytes()[:300])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_dit(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_dit(tmp_path / "nope.pt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="no weight file"):
        load_dit(tmp_path / "empty_dir")


@pytest.mark.parametrize("payload", [torch.zeros(3), [torch.zeros(3)]], ids=["tensor", "list"])
def test_a_pickle_that_is_not_a_state_dict_gives_a_clear_error(tmp_path, payload):
    torch.save(payload, tmp_path / "DiT.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_dit(tmp_path / "DiT.pt")


class _Exploit:
    """Unpickling this object would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "DiT-XL-2-256x256.pt"
    payload = {"pos_embed": torch.zeros(1), "payload": _Exploit(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused to load .*weights_only=True"):
        load_dit(path)
    assert not marker.exists(), "the payload ran"
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def test_sharded_safetensors_folder(original_sd, tmp_path):
    import json
    keys = sorted(original_sd)
    half = len(keys) // 2
    parts = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in parts.items():
        save_safetensors({k: original_sd[k] for k in ks}, tmp_path / name)
    index = {"metadata": {}, "weight_map": {k: name for name, ks in parts.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    sd = read_state_dict(tmp_path)
    assert sd.keys() == original_sd.keys()
    assert_close(sd["blocks.5.mlp.fc1.weight"], original_sd["blocks.5.mlp.fc1.weight"])
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        read_state_dict(tmp_path)


def test_fp16_variant_files_are_found(original_sd, tmp_path):
    """A download of the fp16 variant only (diffusers' naming: the variant before the last suffix)."""
    half = {k: v.half() for k, v in original_sd.items()}
    save_safetensors(half, tmp_path / "diffusion_pytorch_model.fp16.safetensors")
    sd = read_state_dict(tmp_path)
    assert sd.keys() == original_sd.keys() and sd["blocks.0.attn.qkv.weight"].dtype == torch.float16
    save_safetensors(original_sd, tmp_path / "diffusion_pytorch_model.safetensors")
    assert read_state_dict(tmp_path)["blocks.0.attn.qkv.weight"].dtype == torch.float32   # full precision first
