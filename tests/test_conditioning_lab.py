"""minidit/conditioning_lab.py and scripts/conditioning_experiment.py: the three conditioning designs are the
library's blocks, at one parameter budget, the text reaches the output, the zero-initialised parts start
where the papers say, the strict tokenizer, and a short run of the experiment's own loop and script."""
import importlib.util
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minidit.conditioning_lab import DESIGNS, PRESETS, ToyT2I, parameter_groups, toy_tokenizer
from minidit.dit import DiTBlock, FinalLayer
from minidit.embed import PatchEmbed, TimestepEmbedder, get_2d_sincos_pos_embed
from minidit.errors import InputError
from minidit.mmdit import JointBlock
from minidit.pipelines import toy_world
from minidit.pixart import PixArtBlock, T2IFinalLayer
from minidit.text.bert import BertModel

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("conditioning_experiment", ROOT / "scripts" / "conditioning_experiment.py")
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)

TOK = toy_tokenizer(toy_world.VOCABULARY, PRESETS["adaln"].text_max_length)
BLOCKS = {"adaln": (DiTBlock, FinalLayer), "cross": (PixArtBlock, T2IFinalLayer), "mmdit": (JointBlock, FinalLayer)}


def tiny(design, seed=0):
    torch.manual_seed(seed)
    config = replace(experiment.tiny_config(design), text_vocab_size=len(TOK.vocab))
    return ToyT2I(config).eval()


def randomized(model, seed=1, scale=0.5):
    """Every weight random (the zero-initialised gates and outputs included): a model whose every path is live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def ids(*captions):
    enc = TOK(list(captions), max_length=PRESETS["adaln"].text_max_length)
    return enc["input_ids"], enc["attention_mask"]


def inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 24, 24, generator=g), torch.rand(n, generator=g) * 1000


@pytest.mark.parametrize("design", DESIGNS)
def test_designs_are_the_librarys_blocks(design):
    m = tiny(design)
    block_cls, final_cls = BLOCKS[design]
    blocks = m.joint_blocks if design == "mmdit" else m.blocks
    assert len(blocks) == m.config.depth and all(isinstance(b, block_cls) for b in blocks)
    assert isinstance(m.final_layer, final_cls) and isinstance(m.x_embedder, PatchEmbed)
    assert isinstance(m.t_embedder, TimestepEmbedder) and isinstance(m.text_encoder, BertModel)
    if design == "mmdit":
        assert m.joint_blocks[-1].context_block.pre_only and not m.joint_blocks[0].context_block.pre_only


def test_presets_share_one_budget_and_one_text_encoder():
    with torch.device("meta"):
        groups = {d: parameter_groups(ToyT2I(c)) for d, c in PRESETS.items()}
    totals = [g["total"] for g in groups.values()]
    assert max(totals) / min(totals) - 1 <= 0.03, groups
    assert len({g["text_encoder"] for g in groups.values()}) == 1
    assert {c.patch_size for c in PRESETS.values()} == {PRESETS["adaln"].patch_size}
    assert all(c.design == d for d, c in PRESETS.items())


@pytest.mark.parametrize("design", DESIGNS)
def test_shapes_and_the_text_reaches_the_output(design):
    m = randomized(tiny(design))
    x, t = inputs(2)
    a, am = ids("a red 3", "a blue 7")
    tokens, pooled = m.encode_text(a, am)
    assert tokens.shape == (2, a.shape[1], m.config.text_hidden_size) and pooled.shape == (2, m.config.text_hidden_size)
    with torch.no_grad():
        out = m(x, t, a, am)
        swapped = m(x, t, a.flip(0), am.flip(0))                   # the same images, the captions exchanged
    assert out.shape == (2, 3, 24, 24) and torch.isfinite(out).all()
    assert (out - swapped).abs().max() > 1e-3 * out.abs().max()


def test_adaln_pooled_text_tells_word_order_apart():
    """The same bag of words in another order: BERT's position embeddings and attention make the pooled
    vector differ, so even the pooled-only (adaLN) design can in principle bind colour to digit."""
    m = randomized(tiny("adaln"))
    a, am = ids("a red 3 left of a blue 7", "a blue 7 left of a red 3")
    assert sorted(TOK.tokenize("a red 3 left of a blue 7")) == sorted(TOK.tokenize("a blue 7 left of a red 3"))
    x, t = inputs(1)
    with torch.no_grad():
        _, pooled = m.encode_text(a, am)
        out = m(x.expand(2, -1, -1, -1), t.expand(2), a, am)
    assert (pooled[0] - pooled[1]).abs().max() > 1e-3 * pooled.abs().max()
    assert (out[0] - out[1]).abs().max() > 1e-3 * out.abs().max()


def unpatchify_by_hand(x, p, h, w, C):
    """(B, h*w, p*p*C) -> (B, C, h*p, w*p), token (i, j) holding the (p, p, C) patch at rows i*p.., cols j*p.."""
    B = x.shape[0]
    return x.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, h * p, w * p)


@pytest.mark.parametrize("design", ["adaln", "mmdit"])
def test_adaln_zero_blocks_start_as_the_identity(design):
    """adaLN-Zero (DiT §3.2): every gate and the final modulation are zero at init, so with a live final
    Linear the untrained model is final_linear(LayerNorm(patch_embed(x) + pos)), whatever the caption and t."""
    m = tiny(design)
    with torch.no_grad():
        m.final_layer.linear.weight.normal_(0, 0.2)
        m.final_layer.linear.bias.normal_(0, 0.2)
    x, t = inputs(2)
    a, am = ids("a red 3", "a blue 7 above a green 1")
    c, p = m.config, m.config.patch_size
    h = c.input_size // p
    with torch.no_grad():
        out = m(x, t, a, am)
        tokens = F.conv2d(x, m.x_embedder.proj.weight, m.x_embedder.proj.bias, stride=p).flatten(2).transpose(1, 2)
        tokens = tokens + get_2d_sincos_pos_embed(c.hidden_size, h)[None].to(x.dtype)
        expected = F.linear(F.layer_norm(tokens, (c.hidden_size,), eps=1e-6), m.final_layer.linear.weight,
                            m.final_layer.linear.bias)
        expected = unpatchify_by_hand(expected, p, h, h, c.out_channels)
    assert (out - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_pixart_zero_cross_attention_hides_the_caption_at_init():
    """PixArt's init zeroes every cross-attention output projection: the untrained model (final Linear made
    live) depends on t but not yet on the caption."""
    m = tiny("cross")
    with torch.no_grad():
        m.final_layer.linear.weight.normal_(0, 0.2)
    x, t = inputs(2)
    a, am = ids("a red 3", "a blue 7 above a green 1")
    with torch.no_grad():
        out, swapped, later = m(x, t, a, am), m(x, t, a.flip(0), am.flip(0)), m(x, t * 0.5, a, am)
    assert (out - swapped).abs().max() <= 1e-5 * out.abs().max()
    assert (out - later).abs().max() > 1e-3 * out.abs().max()


def test_tokenizer_is_strict_and_fits_every_caption():
    assert TOK.tokenize("") == [] and ids("")[0][0, :2].tolist() == [TOK.cls_token_id, TOK.sep_token_id]
    with pytest.raises(InputError, match="unknown word"):
        TOK("a purple 3")
    long = " and ".join(["a red 3 left of a blue 7"] * 20)
    with pytest.raises(InputError, match="refused, not cut"):
        TOK(long)
    _, captions, _ = toy_world.draw_batch(64, torch.Generator().manual_seed(0), levels=(4,))
    enc = TOK(captions)                                     # the longest level fits: nothing refused
    assert (enc["input_ids"] != TOK.unk_token_id).all()
    assert enc["attention_mask"].sum(1).max() <= PRESETS["adaln"].text_max_length


def test_thirty_steps_lower_the_loss():
    """The experiment's loss through the toys' `fit` loop, 30 steps on fresh toy-world batches: the flow
    loss on a fixed held-out batch (fixed noise and sigma) goes down."""
    m = tiny("cross").train()
    length = m.config.text_max_length
    empty = experiment.text_inputs(TOK, [""], length)
    g = torch.Generator().manual_seed(0)

    def batch(size):
        images, captions, _ = toy_world.draw_batch(size, g)
        return images, (*experiment.text_inputs(TOK, captions, length), *empty)

    held = batch(16)
    terms = experiment.loss_fn("flow", None, torch.Generator().manual_seed(1))

    def held_loss(model):
        with torch.no_grad():
            return experiment.loss_fn("flow", None, torch.Generator().manual_seed(2))(model, *held)["loss"].mean()
    before = held_loss(m)
    args = experiment.argparse.Namespace(steps=30, batch_size=16, lr=3e-3, warmup=5, final_lr=0.1, ema=0.9, seed=0,
                                         threads=1, log_every=30, minutes=None)
    experiment.fit(args, m, batch, terms)
    assert held_loss(m) < 0.8 * before


def test_experiment_tiny_writes_the_documented_results(tmp_path):
    out = tmp_path / "c.json"
    experiment.main(["--tiny", "--seeds", "0", "--threads", "1", "--out", str(out)])
    results = json.loads(out.read_text())
    assert {"settings", "machine", "torch", "runs", "eval_captions"} <= set(results)
    runs = results["runs"]
    assert {(r["design"], r["objective"]) for r in runs} == {("adaln", "flow"), ("cross", "flow"), ("mmdit", "flow"),
                                                             ("cross", "ddpm")}
    for r in runs:
        assert {"seed", "params", "param_groups", "steps", "seconds", "loss_log", "accuracy"} <= set(r)
        assert r["steps"] == 4 and r["loss_log"][-1]["step"] == 4
        assert [a["step"] for a in r["accuracy"]] == [2, 4]
        assert set(r["accuracy"][-1]["per_level"]) == {str(v) for v in toy_world.LEVELS}
        assert all(0 <= v <= 1 for v in r["accuracy"][-1]["per_level"].values())
        partial = r["accuracy"][-1]["partial"]
        assert set(partial) == {str(v) for v in toy_world.LEVELS} and partial["1"]["relations"] is None
        assert all(0 <= partial["2"][k] <= 1 for k in ("items", "colours", "count", "relations"))
    text = out.with_suffix(".txt").read_text()
    assert "level 4" in text and "Partial credit" in text


def test_saved_weights_load_back_strictly(tmp_path):
    """--save writes the EMA weights with the config and the vocabulary; `pipelines.toy.load_toy_model` loads them."""
    from minidit.pipelines.toy import load_toy_model, read_toy_metadata
    from minidit.conditioning_lab import ToyT2IConfig
    path = tmp_path / "t2i.safetensors"
    experiment.main(["--tiny", "--designs", "cross", "--ddpm-designs", "", "--seeds", "0", "--threads", "1",
                     "--save", str(path), "--out", str(tmp_path / "c.json")])
    model = load_toy_model(path, ToyT2I, ToyT2IConfig)
    config, info = read_toy_metadata(path, ToyT2IConfig)
    assert config.design == "cross" and info["vocabulary"] == list(toy_world.VOCABULARY) and info["steps"] == 4
    assert info["command"].startswith("python scripts/conditioning_experiment.py --tiny --designs cross")
    assert f"--save {path}" in info["command"]
    assert info["evaluation"]["captions_per_level"] == 2 and info["evaluation"]["guidance"] == 3.0
    x, t = inputs(1)
    a, am = ids("a red 3")
    assert model(x, t, a, am).shape == (1, 3, 24, 24)


def test_init_continues_a_saved_run_and_records_it(tmp_path):
    """--init starts from a --save file (same config and objective, else refused) and keeps its record as history."""
    from minidit.pipelines.toy import read_toy_metadata
    from minidit.conditioning_lab import ToyT2IConfig
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["--tiny", "--ddpm-designs", "", "--seeds", "0", "--threads", "1", "--out", str(tmp_path / "c.json")]
    experiment.main([*common, "--designs", "cross", "--save", str(first)])
    experiment.main([*common, "--designs", "cross", "--save", str(second), "--init", str(first)])
    _, info = read_toy_metadata(second, ToyT2IConfig)
    assert [h["file"] for h in info["history"]] == ["a.safetensors"] and info["history"][0]["steps"] == 4
    assert info["accuracy"][-1]["step"] == 4
    with pytest.raises(SystemExit, match="another config"):
        experiment.main([*common, "--designs", "adaln", "--init", str(first)])


def test_merge_joins_seeds_run_in_separate_processes(tmp_path):
    """One process per seed, then --merge: the same runs (losses, accuracies) as one process over both seeds,
    since every draw of a run comes from generators seeded by its seed alone; a run in two files is refused."""
    common = ["--tiny", "--designs", "adaln", "--ddpm-designs", "", "--threads", "1"]
    for seeds, name in [("0", "a"), ("1", "b"), ("0,1", "both")]:
        experiment.main([*common, "--seeds", seeds, "--out", str(tmp_path / f"{name}.json")])
    experiment.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "m.json")])
    merged, both = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("m", "both"))
    assert merged["settings"]["seeds"] == "0,1" and merged["merged_from"] == ["a.json", "b.json"]
    key = lambda r: (r["seed"], r["final_loss"], json.dumps(r["accuracy"]))           # noqa: E731
    assert [key(r) for r in merged["runs"]] == [key(r) for r in both["runs"]]
    assert "mean ± std over seeds" in (tmp_path / "m.txt").read_text()
    with pytest.raises(SystemExit, match="more than one file"):
        experiment.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "both.json"), "--out", str(tmp_path / "x.json")])
    experiment.main([*common, "--seeds", "2", "--guidance", "2", "--out", str(tmp_path / "c.json")])
    with pytest.raises(SystemExit, match="other settings"):
        experiment.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(tmp_path / "y.json")])


def test_the_recorded_experiment_is_the_scripts_output_for_todays_presets():
    """benchmarks/results/conditioning.json was written by the script for the current PRESETS (same parameter
    counts and configs) and the same evaluation captions; its .txt table is the script's table of it."""
    path = ROOT / "benchmarks" / "results" / "conditioning.json"
    results = json.loads(path.read_text())
    assert results["eval_captions"] == {str(k): v for k, v in experiment.eval_set(results["settings"]["eval_per_level"]).items()}
    for run in results["runs"]:
        config = replace(PRESETS[run["design"]], text_vocab_size=len(TOK.vocab))
        assert run["config"] == asdict(config)
        assert run["params"] == sum(p.numel() for p in ToyT2I(config).parameters())
        assert [a["step"] for a in run["accuracy"]][-1] == run["steps"] == results["settings"]["steps"]
    seeds = {(r["design"], r["objective"]): set() for r in results["runs"]}
    for r in results["runs"]:
        seeds[(r["design"], r["objective"])].add(r["seed"])
    assert all(len(s) >= 3 for s in seeds.values()), seeds
    assert path.with_suffix(".txt").read_text() == experiment.table(results)


def test_levels_relations_and_sigma_loc_reach_the_training_and_bad_ones_are_refused(tmp_path, monkeypatch):
    """--levels 2,2,4 trains on level-2 and level-4 captions only (drawn 2:1), --relations limits the training
    captions' relations (the evaluation set keeps all four), --sigma-loc is the logit-normal's location of every
    training draw; the saved file records all three; a level outside toy_world.LEVELS, a non-number or an
    unknown relation is a SystemExit that names the flag."""
    from minidit.pipelines.toy import read_toy_metadata
    from minidit.conditioning_lab import ToyT2IConfig
    seen, relations_seen = [], []
    real = toy_world.draw_batch

    def spy(batch, generator, levels=toy_world.LEVELS, relations=toy_world.RELATIONS):
        seen.append(tuple(levels))
        relations_seen.append((batch, tuple(relations)))
        return real(batch, generator, levels=levels, relations=relations)
    monkeypatch.setattr(toy_world, "draw_batch", spy)
    path = tmp_path / "t2i.safetensors"
    locs = []
    real_sigmas = experiment.training_sigmas

    def sigmas(batch, density, **kw):
        locs.append(kw.get("loc"))
        return real_sigmas(batch, density, **kw)
    monkeypatch.setattr(experiment, "training_sigmas", sigmas)
    experiment.main(["--tiny", "--designs", "cross", "--ddpm-designs", "", "--seeds", "0", "--threads", "1",
                     "--levels", "2,2,4", "--sigma-loc", "0.5", "--relations", "left of,above",
                     "--save", str(path), "--out", str(tmp_path / "c.json")])
    assert (2, 2, 4) in seen and set(seen) <= {(2, 2, 4), (1,), (2,), (3,), (4,)}   # training / eval-set draws
    training = {r for lv, (n, r) in zip(seen, relations_seen) if lv == (2, 2, 4) and n > 1}   # n 1: checking the flags
    assert training == {("left of", "above")}
    assert {r for lv, (n, r) in zip(seen, relations_seen) if lv != (2, 2, 4) and n > 1} == {toy_world.RELATIONS}  # eval
    assert locs and set(locs) == {0.5}
    info = read_toy_metadata(path, ToyT2IConfig)[1]
    assert info["levels"] == "2,2,4" and info["sigma_loc"] == 0.5 and info["relations"] == "left of,above"
    with pytest.raises(SystemExit, match="--relations"):
        experiment.main(["--tiny", "--designs", "cross", "--ddpm-designs", "", "--seeds", "0", "--relations", "beside",
                         "--out", str(tmp_path / "e.json")])
    for bad in ("2,5", "two"):
        with pytest.raises(SystemExit, match="--levels"):
            experiment.main(["--tiny", "--designs", "cross", "--ddpm-designs", "", "--seeds", "0", "--levels", bad,
                             "--out", str(tmp_path / "d.json")])
