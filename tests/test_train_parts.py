"""minidit.training, part by part: objectives (v target, split-invariant draws), learning-rate schedule and
EMA (hand-derived values), gradient checkpointing (same gradients, fewer saved tensors), bf16 autocast,
the bucket sampler's properties, the text-embedding cache (encoder calls counted)."""
import math

import pytest
import torch

from minidit.diffusion import alpha_sigma, get_beta_schedule, make_schedule, predict_x0, training_losses
from minidit.dit import DiT, DiTConfig
from minidit.errors import InputError
from minidit.pipelines.resolution import aspect_ratio_table
from minidit.pixart import PixArt, PixArtConfig
from minidit.training import (EMA, BucketBatchSampler, TextEmbeddingCache, assign_buckets, autocast,
                              enable_checkpointing, make_objective, make_optimizer, warmup_cosine)
from minidit.training.objectives import draw_batch
from tests.helpers.parity import BF16, EXACT, FP32_ELEMENTWISE, assert_parity

DIT = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=32, depth=2, num_heads=2, num_classes=10)
PIX = PixArtConfig(input_size=8, patch_size=2, in_channels=3, hidden_size=48, depth=2, num_heads=2,
                   caption_channels=16, model_max_length=5)


def _noisy(model, scale=0.05):
    with torch.no_grad():                      # adaLN-Zero / zero-init outputs: make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


# ---------------------------------------------------------------------------------------- objectives

def test_v_prediction_target_is_the_formula_and_inverts_to_x0():
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    x0, noise, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0, 400, 999])
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].float().view(-1, 1, 1, 1)
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0                     # Salimans & Ho, by hand
    seen = {}

    def perfect(x_t, timestep):
        seen["x_t"] = x_t
        return v
    terms = training_losses(perfect, schedule, x0, t, noise, learn_sigma=False, prediction_type="v_prediction")
    assert_parity(terms["mse"], torch.zeros(3), tol=FP32_ELEMENTWISE, what="mse of the exact v")
    zero = training_losses(lambda x, s: torch.zeros_like(x), schedule, x0, t, noise, learn_sigma=False,
                           prediction_type="v_prediction")
    assert_parity(zero["mse"], (v ** 2).mean(dim=(1, 2, 3)), tol=FP32_ELEMENTWISE, what="mse of 0")
    # the sampler's inverse (predict_x0, "v_prediction") gives x0 back from the target
    back = predict_x0(v, seen["x_t"], *alpha_sigma(schedule, t, x0.shape), "v_prediction")
    assert_parity(back, x0, tol=FP32_ELEMENTWISE, what="x0 from v")


def test_learned_sigma_hybrid_with_v_trains_only_the_variance_through_vb():
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    out = torch.randn(2, 4, 4, 4, requires_grad=True)
    terms = training_losses(lambda x, t: out, schedule, torch.randn(2, 2, 4, 4), torch.tensor([5, 500]),
                            prediction_type="v_prediction")
    terms["vb"].sum().backward()
    assert out.grad[:, :2].abs().max() == 0 and out.grad[:, 2:].abs().max() > 0


def test_per_sample_draws_do_not_depend_on_the_split():
    for name in ("epsilon", "flow"):
        obj = make_objective(name, learn_sigma=False)
        whole = draw_batch(obj, (1, 4, 4), seed=3, step=7, positions=range(8), p_uncond=0.5)
        halves = [draw_batch(obj, (1, 4, 4), 3, 7, range(a, a + 4), 0.5) for a in (0, 4)]
        for k in whole:
            assert torch.equal(whole[k], torch.cat([h[k] for h in halves])), (name, k)
        other = draw_batch(obj, (1, 4, 4), seed=3, step=8, positions=range(8), p_uncond=0.5)
        assert not torch.equal(whole["noise"], other["noise"])


def test_objective_refusals():
    with pytest.raises(ValueError, match="learn_sigma=False"):
        make_objective("flow", learn_sigma=True)
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("x0")
    with pytest.raises(ValueError, match="probability"):
        draw_batch(make_objective("epsilon"), (1, 2, 2), 0, 0, [0], p_uncond=1.5)


# ---------------------------------------------------------------------------------- schedule and EMA

def test_warmup_cosine_values_by_hand():
    # W = 4, S = 12, m = 0.1: (s+1)/4 while warming up, then 0.1 + 0.9 (1 + cos(pi (s-4)/8)) / 2
    f = [warmup_cosine(s, warmup=4, total=12, min_ratio=0.1) for s in range(13)]
    assert f[0] == 0.25 and f[3] == 1.0 and f[4] == 1.0
    assert math.isclose(f[8], 0.55) and math.isclose(f[12], 0.1)
    assert math.isclose(f[6], 0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    model = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(model, 1e-3, warmup=4, total=12, min_ratio=0.1)
    rates = []
    for _ in range(9):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert math.isclose(rates[0], 2.5e-4) and math.isclose(rates[8], 5.5e-4)


def test_param_groups_by_prefix():
    model = DiT(DIT)
    opt, _ = make_optimizer(model, 5e-5, lr_by_prefix={"y_embedder.": 1e-4, "t_embedder.": 1e-4})
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-4, 5e-5]
    assert opt.param_groups[0]["params"][0] is model.y_embedder.embedding_table.weight
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="starts with"):
        make_optimizer(model, 1e-4, lr_by_prefix={"nope.": 1e-3})


def test_ema_by_hand():
    p = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.p = p
    ema = EMA(model, decay=0.9)
    for value in (1.0, 2.0):
        p.data.fill_(value)
        ema.update(model)
    assert math.isclose(ema.shadow["p"].item(), 0.9 * 0.1 + 0.1 * 2, rel_tol=1e-6)      # 0.29
    p.data.fill_(0.0)
    warm = EMA(model, decay=0.9, warmup=True)          # d_0 = 1/10, d_1 = 2/11
    p.data.fill_(1.0)
    warm.update(model)
    p.data.fill_(2.0)
    warm.update(model)
    assert math.isclose(warm.shadow["p"].item(), (2 / 11) * 0.9 + (9 / 11) * 2, rel_tol=1e-6)  # 1.8


# ------------------------------------------------------------------------------ memory trades

def _grads(model, run):
    model.zero_grad(set_to_none=True)
    run(model).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["dit", "pixart"])
def test_checkpointing_gives_the_same_gradients_and_saves_fewer_tensors(family):
    torch.manual_seed(0)
    if family == "dit":
        model = _noisy(DiT(DIT))
        x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 2])

        def run(m):
            return m(x, t, y)
    else:
        model = _noisy(PixArt(PIX))
        x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 5, 16)
        mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])

        def run(m):
            return m(x, t, y, mask)
    model.eval()                                        # no random label dropout: the two runs must match
    plain = _grads(model, run)
    saved = []

    def count(m):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            return run(m)
    _grads(model, count)
    n_plain, saved[:] = sum(saved), []
    enable_checkpointing(model)
    ckpt = _grads(model, run)
    _grads(model, count)
    n_ckpt = sum(saved)
    for name in plain:
        assert_parity(ckpt[name], plain[name], tol=EXACT, what=name, scale=1.0)
    assert n_ckpt < 0.7 * n_plain, (n_ckpt, n_plain)
    enable_checkpointing(model, False)
    assert not hasattr(model.blocks[0].forward, "checkpointed")
    assert set(model.state_dict()) == set(DiT(DIT).state_dict() if family == "dit" else PixArt(PIX).state_dict())


def test_bf16_autocast_runs_and_stays_close():
    model = _noisy(DiT(DIT)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 2])
    ref = model(x, t, y)
    with autocast("bf16", "cpu"):
        low = model(x, t, y)
    assert low.dtype == torch.bfloat16
    assert_parity(low.float(), ref, tol=BF16, what="bf16 autocast forward")
    with pytest.raises(ValueError, match="precision"):
        autocast("fp16", "cpu")


# ----------------------------------------------------------------------------------------- buckets

def test_pixart_tables_have_40_buckets_not_8():
    assert [len(aspect_ratio_table(s)) for s in (256, 512, 1024, 2048)] == [40] * 4
    assert len(aspect_ratio_table(512, test=True)) == 33
    # ratios 1, 2 and 0.5625 (nearest key 0.57: 768 x 1344 at 1024, halved)
    assert assign_buckets([(512, 512), (1000, 500), (450, 800)], 512) == [(512, 512), (704, 352), (384, 672)]


def test_bucket_sampler_properties():
    buckets = ["a"] * 10 + ["b"] * 7 + ["c"] * 3
    ranks = [BucketBatchSampler(buckets, 2, world_size=2, rank=r, seed=5) for r in (0, 1)]
    one = BucketBatchSampler(buckets, 4, seed=5)                          # the same global batch, one process
    assert ranks[0].steps_per_epoch() == one.steps_per_epoch() == 2 + 1   # c (3 < 4) dropped, 2 + 3 left over
    assert one.summary() == {"a": (10, 8, 2), "b": (7, 4, 3), "c": (3, 0, 3)}
    seen = []
    for step in range(3):
        (b0, [(p0, i0)]), (b1, [(p1, i1)]) = ranks[0].step(step), ranks[1].step(step)
        bucket, [(p, items)] = one.step(step)
        assert b0 == b1 == bucket and {buckets[i] for i in i0 + i1} == {bucket}   # one bucket per batch
        assert i0 + i1 == items and p0 + p1 == p == [0, 1, 2, 3]                  # disjoint shards of it
        seen += items
    assert len(seen) == len(set(seen))                                            # each image once an epoch
    assert one.step(3)[1] != one.step(0)[1] or one.step(4)[1] != one.step(1)[1]   # epoch 1 is reshuffled
    accum = BucketBatchSampler(buckets, 2, grad_accum=2, seed=5)
    assert [i for _, i in accum.step(0)[1]] == [one.step(0)[1][0][1][:2], one.step(0)[1][0][1][2:]]
    assert len(list(iter(ranks[1]))) == len(ranks[1]) == 3
    with pytest.raises(InputError, match="no bucket holds"):
        BucketBatchSampler(buckets, 11)


# -------------------------------------------------------------------------------------- text cache

def test_text_cache_runs_the_encoder_once_per_caption(tmp_path):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        states = torch.stack([torch.full((5, 16), float(len(t))) + torch.arange(16.0) for t in texts])
        return states, torch.ones(len(texts), 5, dtype=torch.long)
    captions = ["a cat", "a dog", "a cat", "the sea"] * 3
    cache = TextEmbeddingCache(tmp_path, encode, "fake-T5|5", batch_size=2)
    assert cache.precompute(captions) == 3 and cache.encoded == 3 and sum(map(len, calls)) == 3
    for _ in range(4):                                                  # epochs: no encoder call
        states, mask = cache.get(captions)
    assert sum(map(len, calls)) == 3
    assert states.shape == (12, 5, 16) and mask.shape == (12, 5)
    assert_parity(states[1], encode(["a dog"])[0][0], tol=EXACT, what="cached states")
    again = TextEmbeddingCache(tmp_path, encode, "fake-T5|5")           # a re-run on the same folder
    calls.clear()
    again.get(captions)
    assert calls == []
    TextEmbeddingCache(tmp_path, encode, "another encoder").get(["a cat"])
    assert calls == [["a cat"]]                                         # keyed by the encoder too
