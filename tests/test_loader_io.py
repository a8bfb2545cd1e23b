"""The loaders' shared pieces: the strict key map (`KeyMap`), config overrides and the pipeline-folder search."""
import pytest
import torch

from weights_loader import CheckpointError
from weights_loader.io import KeyMap, transpose


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
