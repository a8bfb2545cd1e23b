"""Grader for exercise 18: python -m pytest exercises/test_ex18_lora.py

The oracle is the exercise's equations computed here in float64 from the layer's own tensors:
y = W x + b + (alpha / r) B A dropout(x), with the dropout's mask replayed from the same seed, and
W <- W +- (alpha / r) B A for merge / unmerge.
"""
import inspect

import torch
from torch import nn

from exercises._grading import FP32, FP32_ELEMENTWISE, check_close, load

ex = load("ex18_lora")


def _layer(d_in=12, d_out=12, rank=3, alpha=6.0, dropout=0.0, seed=0):
    """Your LoRALinear on a random base layer, with a random (non-zero) B."""
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    layer = ex.LoRALinear(base, rank, alpha, dropout)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(rank, d_in) * 0.5)
        layer.lora_B.copy_(torch.randn(d_out, rank) * 0.5)
    return layer


def _x(d_in=12, seed=1):
    return torch.randn(2, 5, d_in, generator=torch.Generator().manual_seed(seed))


def _parts(layer):
    W, b = layer.base.weight.detach().double(), layer.base.bias.detach().double()
    return W, b, layer.lora_A.detach().double(), layer.lora_B.detach().double()


def _mistakes(layer, x):
    """What typical wrong forwards output on x (eval mode)."""
    W, b, A, B = _parts(layer)
    x = h = x.double()
    s = layer.alpha / layer.rank
    out = {
        "the scale is alpha / rank, not alpha.": x @ W.T + b + layer.alpha * (h @ A.T @ B.T),
        "the scale is alpha / rank, not rank / alpha.": x @ W.T + b + (layer.rank / layer.alpha) * (h @ A.T @ B.T),
        "the update is applied transposed: a Linear computes x @ W^T, so B A acts as (x @ A^T) @ B^T, "
        "not x @ B @ A.": x @ W.T + b + s * (h @ B @ A) if B.shape[0] == A.shape[1] else None,
        "the low-rank path is missing: add (alpha / rank) B A dropout(x) to base(x).": x @ W.T + b,
        "the base path is missing: the output is base(x) PLUS the low-rank update.": s * (h @ A.T @ B.T),
    }
    return {k: v for k, v in out.items() if v is not None}


def _expected(layer, x, kept=None):
    W, b, A, B = _parts(layer)
    h = x.double() if kept is None else x.double() * kept
    return x.double() @ W.T + b + (layer.alpha / layer.rank) * (h @ A.T @ B.T)


def test_a_fresh_layer_is_the_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = ex.LoRALinear(base, 4, 8.0).eval()
    x = _x()
    check_close(layer(x), base(x), "a fresh LoRALinear (B = 0) vs its base layer", tol=FP32_ELEMENTWISE)


def test_forward_is_the_equation():
    for d_in, d_out, rank, alpha in [(12, 12, 3, 6.0), (12, 7, 2, 1.0), (8, 20, 4, 16.0)]:
        layer = _layer(d_in, d_out, rank, alpha).eval()
        x = _x(d_in)
        with torch.no_grad():
            got = layer(x)
        check_close(got, _expected(layer, x).float(), f"forward of a {d_in} -> {d_out} layer, rank {rank}, "
                    f"alpha {alpha:g}", tol=FP32, mistakes=_mistakes(layer, x))


def test_dropout_on_the_lora_input_in_train_mode():
    layer = _layer(dropout=0.5).train()
    x = _x()
    torch.manual_seed(7)
    with torch.no_grad():
        got = layer(x)
    torch.manual_seed(7)
    kept = nn.functional.dropout(torch.ones_like(x), 0.5, training=True).double()   # the same draws: 0 or 2
    W, b, A, B = _parts(layer)
    s = layer.alpha / layer.rank
    mistakes = {
        "the dropout acts on the LoRA input only: the base path sees x itself.":
            (x.double() * kept) @ W.T + b + s * ((x.double() * kept) @ A.T @ B.T),
        "dropout is off in train mode: use self.dropout on the LoRA input.": _expected(layer, x),
    }
    check_close(got, _expected(layer, x, kept).float(), "forward in train mode with dropout 0.5 (mask replayed "
                "from the same seed: call self.dropout once, on x)", tol=FP32, mistakes=mistakes)


def test_no_dropout_in_eval_mode():
    layer = _layer(dropout=0.5).eval()
    x = _x()
    with torch.no_grad():
        first, second = layer(x), layer(x)
    if not torch.equal(first, second):
        raise AssertionError("in eval mode two calls on the same x differ: dropout is still on. Use self.dropout "
                             "(an nn.Dropout, the identity after .eval()), not F.dropout(..., training=True)")
    check_close(first, _expected(layer, x).float(), "forward in eval mode with dropout 0.5", tol=FP32,
                mistakes=_mistakes(layer, x))


def test_gradients_reach_A_and_B_only():
    layer = _layer().train()
    layer(_x()).square().sum().backward()
    for name in ("lora_A", "lora_B"):
        grad = getattr(layer, name).grad
        if grad is None or not grad.abs().max() > 0:
            raise AssertionError(f"no gradient reaches {name}: keep self.{name} in the graph (no .detach(), no "
                                 "torch.no_grad() in forward)")
    if layer.base.weight.grad is not None:
        raise AssertionError("the base weight got a gradient: it must stay frozen (the stub's __init__ freezes it)")


def test_merge_folds_the_update_into_the_weight():
    layer = _layer(12, 9, 3, 6.0).eval()
    x = _x()
    with torch.no_grad():
        adapted = layer(x)
    W, _, A, B = _parts(layer)
    layer.merge()
    if not layer.merged:
        raise AssertionError("after merge() self.merged must be True")
    update = (6.0 / 3) * (B @ A)
    check_close(layer.base.weight, (W + update).float(), "base.weight after merge", tol=FP32_ELEMENTWISE,
                mistakes={"merge: the update is (alpha / rank) B A; you left out the scale.": (W + B @ A).float(),
                          "merge: the scale is alpha / rank, not alpha.": (W + 6.0 * B @ A).float(),
                          "merge: you subtracted the update; merge adds it.": (W - update).float()})
    with torch.no_grad():
        merged = layer(x)
    W2 = layer.base.weight.detach().double()
    twice = x.double() @ W2.T + layer.base.bias.double() + (6.0 / 3) * (x.double() @ A.T @ B.T)
    check_close(merged, adapted, "the merged layer's output vs the adapter's", tol=FP32,
                mistakes={"after merge() the forward must not add the low-rank path again (the update is inside "
                          "base.weight: check self.merged).": twice.float()})
    layer.merge()
    check_close(layer.base.weight, (W + update).float(), "base.weight after merging twice", tol=FP32_ELEMENTWISE,
                mistakes={"merging twice added the update twice: check self.merged first.":
                          (W + 2 * update).float()})


def test_unmerge_restores_the_base_weight():
    layer = _layer(10, 14, 2, 3.0).eval()
    x = _x(10)
    W = layer.base.weight.detach().clone()
    with torch.no_grad():
        adapted = layer(x)
    update = (layer.alpha / layer.rank) * (layer.lora_B @ layer.lora_A).detach()
    layer.merge()
    layer.unmerge()
    check_close(layer.base.weight, W, "base.weight after merge + unmerge", tol=FP32_ELEMENTWISE,
                mistakes={"unmerge added the update again: unmerge subtracts (alpha / rank) B A.": W + 2 * update,
                          "unmerge did nothing: subtract the update (when self.merged) and set merged = False.":
                              W + update})
    if layer.merged:
        raise AssertionError("after unmerge() self.merged must be False")
    with torch.no_grad():
        check_close(layer(x), adapted, "the output after merge + unmerge", tol=FP32)
    layer.unmerge()
    check_close(layer.base.weight, W, "base.weight after unmerging an unmerged layer (it must do nothing)",
                tol=FP32_ELEMENTWISE)


def test_does_not_use_minidit_lora():
    layer = _layer()
    layer(_x())                                                  # it must run first
    if ex.LoRALinear.__module__.startswith("minidit"):           # CI grading minidit's reference itself
        return
    source = inspect.getsource(ex.LoRALinear)
    if "minidit.lora" in source or "delta_weight" in source:
        raise AssertionError("write the layer yourself: your code uses minidit.lora, which is the answer")
