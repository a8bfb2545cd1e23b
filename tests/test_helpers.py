"""The test helpers themselves: the parity policy passes what it should, fails what it should, and
says why; the key contract lists every difference."""
import pytest
import torch

from helpers import EXACT, FP32, assert_key_contract, assert_parity, perturb, random_state_dict, randomize


def test_bound_is_relative_to_the_output_scale():
    e = torch.tensor([100.0, 0.0])
    assert_parity(e + torch.tensor([0.0, 9e-4]), e, tol=FP32)           # 9e-4 <= 1e-5 x 100, even at the 0
    with pytest.raises(AssertionError, match=r"at index \(1,\).*FP32 1e-05 x scale 100 = 0\.001"):
        assert_parity(e + torch.tensor([0.0, 2e-3]), e, tol=FP32)
    small = torch.tensor([1e-3, -2e-3])                                  # floor 1: an absolute 1e-5
    assert_parity(small + 9e-6, small)
    with pytest.raises(AssertionError, match="scale 1 "):
        assert_parity(small + 2e-5, small)


def test_exact_shape_dtype_and_non_finite():
    x = torch.randn(3, 4)
    assert_parity(x.clone(), x, tol=EXACT)
    with pytest.raises(AssertionError, match="EXACT"):
        assert_parity(x + 1e-7 * x.abs().max(), x, tol=EXACT)
    with pytest.raises(AssertionError, match=r"what: shape \(4, 3\) != expected \(3, 4\)"):
        assert_parity(x.T, x, what="what")
    with pytest.raises(AssertionError, match="dtype torch.float64 != expected torch.float32"):
        assert_parity(x.double(), x)
    y = x.clone()
    y[1, 2] = float("nan")
    with pytest.raises(AssertionError, match=r"non-finite .* index \(1, 2\)"):
        assert_parity(y, x)
    inf = torch.tensor([float("inf"), 1.0])
    assert_parity(inf.clone(), inf)                                      # the same inf on both sides


def test_key_contract_lists_every_difference():
    ours = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "extra": torch.zeros(1)}
    assert_key_contract(ours, {"a": (2, 3), "b": (4,), "extra": (1,)})
    with pytest.raises(AssertionError) as e:
        assert_key_contract(ours, {"a": (3, 2), "b": (4,), "missing": (5,)}, "tiny")
    msg = str(e.value)
    assert msg.startswith("tiny: ") and "1 missing (expected, not in ours): missing" in msg
    assert "1 extra (ours, not expected): extra" in msg and "a ours (2, 3) vs expected (3, 2)" in msg


def test_random_weights_are_seeded_and_non_trivial():
    def model():
        m = torch.nn.Linear(3, 2)
        torch.nn.init.zeros_(m.weight)
        return m
    a, b = randomize(model(), seed=4, scale=0.5), randomize(model(), seed=4, scale=0.5)
    assert torch.equal(a.weight, b.weight) and a.weight.abs().min() > 0 and not a.training
    p = perturb(model(), seed=4, scale=0.5, where=lambda name: name == "bias")
    assert torch.all(p.weight == 0)                                      # only the chosen parameters move
    sd = random_state_dict({"x": (2, 2), "y": (3,)}, seed=1, scale=lambda k: 0.0 if k == "y" else 1.0)
    assert list(sd) == ["x", "y"] and torch.all(sd["y"] == 0) and sd["x"].abs().min() > 0
