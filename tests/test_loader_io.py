"""The loaders' shared pieces: the strict key map (`KeyMap`), config overrides and the pipeline-folder search."""
import json

import pytest
import torch

from weights_loader import CheckpointError, MissingPartError, PipelineFolder, load_dit, load_pixart
from weights_loader.keymap import KeyMap, transpose
from weights_loader.pipeline_folder import marker_file

from helpers import require
from helpers.layouts.dit import random_original_dit


def _sd():
    return {"a.weight": torch.randn(2, 3), "q.weight": torch.randn(4, 3), "k.weight": torch.randn(4, 3),
            "v.weight": torch.randn(4, 3), "proj": torch.randn(3, 5), "visual.x": torch.zeros(1),
            "visual.y": torch.zeros(1), "logit_scale": torch.zeros(())}


def test_move_cat_chunk_transpose_and_drop():
    sd = _sd()
    keys = KeyMap(sd, "toy")
    keys.move("a.weight", "b.weight")
    keys.cat(["q.weight", "k.weight", "v.weight"], "qkv.weight")
    keys.move("proj", "proj.weight", transpose)
    assert keys.drop("visual.", "logit_scale", "absent") == ["logit_scale", "visual.x", "visual.y"]
    out = keys.finish()
    assert sorted(out) == ["b.weight", "proj.weight", "qkv.weight"]
    assert out["b.weight"] is sd["a.weight"]
    assert out["proj.weight"].shape == (5, 3) and torch.equal(out["proj.weight"], sd["proj"].T)
    # cat then chunk is the identity: fused q/k/v split back into q, k, v
    back = KeyMap(out, "toy")
    back.chunk("qkv.weight", ["q.weight", "k.weight", "v.weight"])
    back.drop("b.weight", "proj.weight")
    split = back.finish()
    for n in "qkv":
        assert torch.equal(split[f"{n}.weight"], sd[f"{n}.weight"])
    assert len(sd) == 8                                   # the input dict is not consumed


def test_unused_keys_are_listed():
    keys = KeyMap(_sd(), "toy")
    keys.move("a.weight", "b.weight")
    keys.drop("visual.")
    with pytest.raises(CheckpointError, match="toy") as e:
        keys.finish()
    msg = str(e.value)
    assert "5 keys" in msg
    for key in ["q.weight", "k.weight", "v.weight", "proj", "logit_scale"]:
        assert key in msg
    assert "visual." not in msg and "a.weight" not in msg


def test_missing_key_is_named():
    keys = KeyMap(_sd(), "toy family")
    with pytest.raises(CheckpointError, match="the toy family checkpoint is missing 'nope.weight'"):
        keys.move("nope.weight", "x")
    with pytest.raises(CheckpointError, match="missing 'o.weight'"):
        keys.cat(["q.weight", "o.weight"], "qo.weight")
    keys = KeyMap(_sd(), "toy")
    keys.move("a.weight", "x")
    with pytest.raises(CheckpointError, match="missing 'a.weight'"):   # a key is used once only
        keys.move("a.weight", "y")


def test_drop_names_whole_keys_or_prefixes_ending_in_a_dot():
    keys = KeyMap({"visual": torch.zeros(1), "visual_x": torch.zeros(1), "visual.y": torch.zeros(1)}, "toy")
    assert keys.drop("visual") == ["visual"]              # one key, not a prefix
    assert keys.drop("visual.") == ["visual.y"]
    assert keys.remaining() == ["visual_x"]


def test_chunk_must_split_evenly_and_a_destination_is_written_once():
    keys = KeyMap({"w": torch.zeros(5, 2)}, "toy")
    with pytest.raises(CheckpointError, match="3 equal parts"):
        keys.chunk("w", ["a", "b", "c"])
    keys = KeyMap({"x": torch.zeros(1), "y": torch.zeros(1)}, "toy")
    keys.move("x", "z")
    with pytest.raises(CheckpointError, match="map to 'z'"):
        keys.move("y", "z")


# ---------------------------------------------------------------------------------------------
# overrides=: config fields set after the config is read or detected
# ---------------------------------------------------------------------------------------------

def test_overrides_are_applied_after_detection_and_unknown_fields_are_named():
    sd = random_original_dit(D=384, depth=12, p=8, input_size=32)          # DiT-S/8: detectable
    assert load_dit(sd).config.timestep_freq_shift == 0
    model = load_dit(sd, overrides={"timestep_freq_shift": 1})
    assert model.config.timestep_freq_shift == 1 and model.config.depth == 12   # the rest is detected
    with pytest.raises(CheckpointError, match=r"\['timestep_shift'\] are not fields of DiTConfig.*timestep_freq_shift"):
        load_dit(sd, overrides={"timestep_shift": 1})


def test_pixart_transformer_folder_with_caption_length_override(tmp_path):
    diffusers = require("diffusers")
    ref = diffusers.PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                             out_channels=8, num_layers=1, cross_attention_dim=16, caption_channels=32,
                                             sample_size=16, patch_size=2, interpolation_scale=0.5,
                                             use_additional_conditions=False)
    ref.save_pretrained(tmp_path / "transformer")
    assert load_pixart(tmp_path / "transformer").config.model_max_length == 120    # no model_index.json: α's
    model = load_pixart(tmp_path / "transformer", overrides={"model_max_length": 300})
    assert model.config.model_max_length == 300 and model.y_embedder.y_embedding.shape == (300, 32)


# ---------------------------------------------------------------------------------------------
# PipelineFolder: model_index.json, components across a download and a base, the scheduler config
# ---------------------------------------------------------------------------------------------

def _pipeline(root, class_name=None, components=()):
    root.mkdir(parents=True, exist_ok=True)
    if class_name:
        (root / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    for c in components:
        (root / c).mkdir()
        (root / c / marker_file(c)).write_text(json.dumps({"_class_name": f"{c}-of-{root.name}"}))
    return root


def test_pipeline_folder_finds_components_across_roots(tmp_path):
    only = _pipeline(tmp_path / "only", components=["transformer"])
    base = _pipeline(tmp_path / "base", "PixArtSigmaPipeline", ["transformer", "vae", "tokenizer", "scheduler"])
    parts = PipelineFolder(only, base)
    assert parts.pipeline_class(("PixArtAlphaPipeline", "PixArtSigmaPipeline")) == "PixArtSigmaPipeline"
    assert parts.component("transformer") == only / "transformer"          # the download first
    assert parts.component("vae") == base / "vae"                          # the rest from base
    assert parts.component("tokenizer") == base / "tokenizer"              # marked by tokenizer_config.json
    assert parts.scheduler_config() == {"_class_name": "scheduler-of-base"}
    parts.require("transformer", "vae", "scheduler")
    assert parts.has("vae") and not parts.has("text_encoder")


def test_pipeline_folder_errors_name_the_roots_and_what_to_download(tmp_path):
    only = _pipeline(tmp_path / "only", components=["transformer"])
    parts = PipelineFolder(only, hint="Download the rest from some/repo.")
    assert parts.scheduler_config() is None
    with pytest.raises(MissingPartError, match="model_index.json") as e:
        parts.model_index()
    assert str(only) in str(e.value) and "some/repo" in str(e.value)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CheckpointError)
    with pytest.raises(MissingPartError, match=r"no vae/config.json, scheduler/scheduler_config.json in .*only\. "
                                               "Download the rest"):
        parts.require("transformer", "vae", "scheduler")
    other = _pipeline(tmp_path / "other", "DiTPipeline")
    with pytest.raises(FileNotFoundError, match=f"no text_encoder/config.json in {only} and {other}"):
        PipelineFolder(only, other).component("text_encoder")
    with pytest.raises(CheckpointError, match="names a DiTPipeline, not one of PixArtAlphaPipeline"):
        PipelineFolder(other).pipeline_class(("PixArtAlphaPipeline",))


def test_only_prefix_reads_one_component_of_a_whole_file(tmp_path, monkeypatch):
    """An SD3 file holds the MM-DiT, the VAE and maybe the text encoders: a loader reads only its part
    (from safetensors without touching the other tensors), and the key names of the rest."""
    from safetensors.torch import save_file

    from weights_loader.io import read_state_dict, weight_keys
    sd = {"model.diffusion_model.a": torch.ones(2), "first_stage_model.b": torch.zeros(3), "c": torch.ones(1)}
    save_file(sd, tmp_path / "whole.safetensors")
    got = read_state_dict(tmp_path / "whole.safetensors", only_prefix="first_stage_model.")
    assert list(got) == ["first_stage_model.b"] and torch.equal(got["first_stage_model.b"], torch.zeros(3))
    assert sorted(weight_keys(tmp_path / "whole.safetensors")) == sorted(sd)
    assert sorted(read_state_dict(tmp_path / "whole.safetensors", only_prefix="absent.")) == sorted(sd)  # no such part
    torch.save(sd, tmp_path / "whole.pt")                                                  # pickles: filtered after
    assert list(read_state_dict(tmp_path / "whole.pt", only_prefix="model.diffusion_model.")) == ["model.diffusion_model.a"]
    import weights_loader.io as io
    read = []
    real = io.safe_open

    class Spy:                     # which tensors are actually read from the file
        def __init__(self, *a, **kw):
            self.f = real(*a, **kw)

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, k):
            read.append(k)
            return self.inner.get_tensor(k)
    monkeypatch.setattr(io, "safe_open", Spy)
    read_state_dict(tmp_path / "whole.safetensors", only_prefix="model.diffusion_model.")
    assert read == ["model.diffusion_model.a"]
