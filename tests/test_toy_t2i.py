"""The built-in text-to-image model (`pipelines/toy_t2i.py`, `generate --prompt` without --model).

The shipped model is graded by the toy world's caption checker on the world's fixed prompt set (the
issue's target: >= 80 %), each prompt drawn from three fixed noise seeds: with one draw per prompt, one
model's score moved from 75 % to 82.5 % between seeds, more than its distance to the target. The pipeline
itself is checked on a tiny random model against the sampling loop written out here (Euler on
sigma = linspace(1, 1/T, N), then 0; CFG v_u + g (v_c - v_u) against the empty caption), and the command
line's refusals one by one.
"""
from dataclasses import replace

import pytest
import torch

from minidit import cli
from minidit.conditioning_lab import PRESETS, ToyT2I, toy_tokenizer
from minidit.errors import InputError
from minidit.pipelines import toy_t2i, toy_world
from minidit.pipelines.toy import save_toy_model
from tests.helpers.parity import FP32, assert_parity

TARGET = 0.80
SEEDS = (0, 1, 2)                     # noise draws per prompt


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A tiny untrained T2I-toy file (random, non-zero outputs: the zero-initialised layers are re-drawn)."""
    config = replace(PRESETS["cross"], hidden_size=16, depth=2, num_heads=2, text_hidden_size=16, text_layers=1,
                     text_heads=2, text_vocab_size=4 + len(toy_world.VOCABULARY))
    torch.manual_seed(0)
    model = ToyT2I(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("t2i") / "tiny.safetensors"
    save_toy_model(model, path, {"objective": "flow", "vocabulary": list(toy_world.VOCABULARY), "design": "cross"})
    return path


@pytest.fixture(scope="module")
def graded_prompt_set():
    """The shipped model's images of the world's fixed prompt set (10 per level), one per noise seed, graded:
    {level: [ok, ...]} (30 per level)."""
    by_level = toy_t2i.grade_prompt_set(seeds=SEEDS)
    print(f"built-in T2I: images right per level ({len(SEEDS)} seeds)",
          {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_level.items())})
    return by_level


def test_the_shipped_model_draws_the_prompt_set(graded_prompt_set):
    # measured 105 of 120 (87.5 %: 30, 29, 25, 21 of 30 per level); 35 of 40 from seed 0 alone
    ok = [good for level in graded_prompt_set.values() for good in level]
    accuracy = sum(ok) / len(ok)
    assert accuracy >= TARGET, f"{accuracy:.1%} of the prompt set drawn right (target {TARGET:.0%})"


def test_the_shipped_model_draws_single_objects(graded_prompt_set):
    # measured 30/30; held as a floor below the target above
    ones = graded_prompt_set[1]
    assert sum(ones) / len(ones) >= 0.7, f"only {sum(ones)}/{len(ones)} one-object images right"


def test_the_shipped_model_follows_relations(graded_prompt_set):
    # measured 29/30; placing two objects at random satisfies a relation 3 times in 8, so a model that ignores
    # the relation word (as the 33 000-step one did: 2 of 10 from seed 0) fails this floor
    twos = graded_prompt_set[2]
    assert sum(twos) / len(twos) >= 0.6, f"only {sum(twos)}/{len(twos)} two-object images right"


def test_the_shipped_file_records_its_training():
    config, info = toy_t2i.read_t2i_metadata()
    assert config.design in ("adaln", "cross", "mmdit") and info["objective"] in toy_t2i.OBJECTIVES
    assert tuple(info["vocabulary"]) == toy_world.VOCABULARY
    assert info["steps"] > 0 and info["train_seconds"] > 0


def _hand_sampler(model, tokenizer, captions, x_T, steps, guidance):
    """Euler on the flow grid with CFG, written out (no Sampler, no guided_model_fn)."""
    T = 1000
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / T, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    enc = tokenizer(captions, max_length=model.config.text_max_length)
    empty = tokenizer([""] * len(captions), max_length=model.config.text_max_length)
    x = x_T.clone()
    with torch.no_grad():
        for i in range(steps):
            t = torch.full((len(x),), float(sigmas[i]) * T)
            v_c = model(x, t, enc["input_ids"], enc["attention_mask"])
            v_u = model(x, t, empty["input_ids"], empty["attention_mask"])
            x = x + float(sigmas[i + 1] - sigmas[i]) * (v_u + guidance * (v_c - v_u))
    return ((x + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_the_pipeline_is_the_written_out_sampling_loop(tiny_file, guidance):
    prompts = ["a red 3", "a blue 7 left of a green 1"]
    images = toy_t2i.generate_toy_images(prompts, seed=5, steps=4, guidance=guidance, weights=tiny_file)
    model, tokenizer, objective = toy_t2i.load_t2i_model(tiny_file)
    assert objective == "flow" and images.shape == (2, 3, 24, 24)
    x_T = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    expected = _hand_sampler(model, tokenizer, prompts, x_T, 4, guidance)
    assert_parity(images, expected, tol=FP32, what=f"images at guidance {guidance}")
    again = toy_t2i.generate_toy_images(prompts, seed=5, steps=4, guidance=guidance, weights=tiny_file)
    assert torch.equal(images, again)


def test_prompts_outside_the_world_are_refused_before_loading(tmp_path):
    missing = tmp_path / "none.safetensors"                                  # never read: the prompt fails first
    with pytest.raises(InputError, match="'dog'"):
        toy_t2i.generate_toy_images("a red dog", weights=missing)
    with pytest.raises(InputError, match="grammar"):
        toy_t2i.generate_toy_images("red 3 a", weights=missing)
    with pytest.raises(InputError, match="no prompt"):
        toy_t2i.generate_toy_images([], weights=missing)
    with pytest.raises(InputError):
        toy_t2i.generate_toy_images("a red 3", steps=0, weights=missing)


def test_a_file_of_another_toy_is_refused(tmp_path):
    from minidit.pipelines.toy import WEIGHTS as DIGITS
    with pytest.raises(Exception, match="T2I|config|objective"):
        toy_t2i.load_t2i_model(DIGITS)


def test_cli_without_model_runs_the_built_in_model(tiny_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy_t2i, "WEIGHTS", tiny_file)
    out = tmp_path / "t2i.png"
    assert cli.main(["generate", "--prompt", "a red 3 left of a blue 7", "--steps", "2", "--out", str(out)]) == 0
    from PIL import Image
    assert Image.open(out).size == (24 * 8 + 4, 24 * 8 + 4)
    assert "built-in" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    ([], "give --prompt"),
    (["--prompt", "a red 3", "--weights", "x"], "--weights belong to the downloaded models"),
    (["--prompt", "a red 3", "--height", "512"], "--height"),
    (["--prompt", "a red 3", "--dtype", "float16"], "--dtype"),
    (["--prompt", "a red 3", "--negative-prompt", "a blue 7"], "--negative-prompt"),
    (["--prompt", "a red cat"], "'cat'"),
    (["--prompt", "a red 3", "--steps", "0"], "--steps"),
])
def test_cli_refuses_what_the_built_in_model_cannot_do(tiny_file, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(toy_t2i, "WEIGHTS", tiny_file)
    assert cli.main(["generate", *extra, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_the_tokenizer_is_the_worlds_vocabulary():
    tok = toy_tokenizer(toy_world.VOCABULARY)
    words = [w for w in tok.vocab if not w.startswith("[")]
    assert tuple(words) == toy_world.VOCABULARY


def _figure_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "toy_t2i_figure.py"
    spec = importlib.util.spec_from_file_location("toy_t2i_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_figure_script_draws_eight_graded_prompts(tmp_path, capsys):
    from PIL import Image
    png = tmp_path / "t2i.png"
    assert _figure_script().main(["--png", str(png)]) == 0
    assert Image.open(png).size == (4 * (24 * 6 + 2) + 2, 2 * (24 * 6 + 2) + 2)    # 2 rows of 4, 6x, 2-px frame
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1] for line in lines[1:]] == [f'"{t}"' for t in toy_world.prompt_set()[::5]]


def test_the_figure_script_grades_any_file(tiny_file, capsys):
    assert _figure_script().main(["--grade", str(tiny_file)]) == 0
    out = capsys.readouterr().out
    assert "prompt set, 3 seeds: level 1 " in out and "/120 = " in out and "64 other captions per level" in out
