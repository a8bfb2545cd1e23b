"""`python -m minidit`: one model table, defaults from the pipelines' signatures, help that shows them."""
import pytest

from minidit import cli
from minidit.pipelines import dit_cli, hunyuan_cli, pixart_cli, sd3_cli, video_cli

# The pipelines' documented defaults (DiT's sample.py: 250 steps, cfg 4.0; PixArt: 20 DPM-Solver steps, 4.5;
# the toy: 50 steps, guidance 2.0), written out here so the help text is checked against the numbers users read.
DOCUMENTED = {"dit": (250, 4.0), "pixart": (20, 4.5)}
# Latte-1: the official configs/t2x/t2v_sample.yaml (DDIM, num_sampling_steps 50, guidance_scale 7.5);
# Open-Sora: v1.0 configs/opensora/inference/16x{256,512}.py (IDDPM 100 steps, cfg 7.0); v1.2
# configs/opensora-v1-2/inference/sample.py (rflow 30 steps, cfg 7.0)
VIDEO = {"latte-1": (50, 7.5), "opensora-1.0-256": (100, 7.0), "opensora-1.0-512": (100, 7.0), "opensora-1.2": (30, 7.0)}
# SD3: each release's official sd3_infer.py CONFIGS entry
SD3 = {"sd3-medium": (50, 5.0), "sd3.5-large": (40, 4.5), "sd3.5-large-turbo": (4, 1.0), "sd3.5-medium": (50, 5.0)}
# Hunyuan-DiT: hydit/config.py (--infer-steps 100, --cfg-scale 6.0); v1.2-Distilled: the README's 25 steps
HUNYUAN = {"hunyuan-dit-v1.2": (100, 6.0), "hunyuan-dit-v1.2-distilled": (25, 6.0), "hunyuan-dit-v1.1": (100, 6.0)}


def documented(entry):
    per_model = {"sd3": SD3, "hunyuan": HUNYUAN, "video": VIDEO}.get(entry.family)
    return per_model[entry.name] if per_model else DOCUMENTED[entry.family]


def help_text(capsys, *argv):
    assert cli.main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_generate_help_lists_every_model_with_its_defaults(capsys):
    text = help_text(capsys, "generate")
    assert len(cli.MODELS) == 19
    for name, entry in cli.MODELS.items():
        steps, guidance = documented(entry)
        row = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert row.split()[1:3] == [str(steps), str(guidance)], row
    # per-family options, in their own groups
    assert "DiT (class-conditional ImageNet)" in text and "--class" in text
    assert "text-to-image models (PixArt, SD3, Hunyuan-DiT)" in text and "--negative-prompt" in text
    assert "SD3 / SD3.5 (text-to-image, rectified flow)" in text and "--no-t5" in text
    assert "Hunyuan-DiT (bilingual text-to-image, v-prediction)" in text and "--sampler" in text


def test_defaults_come_from_the_pipelines():
    for entry in cli.MODELS.values():
        steps, guidance = documented(entry)
        assert cli.defaults(entry) == {"steps": steps, "guidance": guidance}


def test_sample_help_shows_its_defaults(capsys):
    text = " ".join(help_text(capsys, "sample").split())
    for fragment in ("(default: 50)", "(default: 2.0)", "(default: 0)", "(default: digits.png)", "(default: 4)"):
        assert fragment in text, fragment


@pytest.mark.parametrize("argv,expected", [([], {}), (["--steps", "7"], {"num_inference_steps": 7}),
                                           (["--steps", "1", "--guidance", "0"], {"num_inference_steps": 1,
                                                                                   "guidance_scale": 0.0})])
def test_only_given_values_reach_the_pipeline(monkeypatch, tmp_path, argv, expected):
    """No `args.steps or 250` copies: an option left out leaves the pipeline's default; a given 0 stays 0
    (guidance 0; --steps 0 is refused before this point: tests/test_bad_inputs.py)."""
    seen = {}
    monkeypatch.setattr(dit_cli, "generate", lambda args, entry, kw: seen.update(entry=entry, kw=kw) or 0)
    assert cli.main(["generate", "--model", "dit-xl-2-512", "--weights", str(tmp_path), "--class", "1", *argv]) == 0
    assert seen["kw"] == expected and seen["entry"] is cli.MODELS["dit-xl-2-512"]


def test_dispatch_is_by_the_table(monkeypatch, tmp_path, capsys):
    seen = []
    for module in (dit_cli, pixart_cli, sd3_cli, hunyuan_cli, video_cli):
        monkeypatch.setattr(module, "generate", lambda args, entry, kw, m=module: seen.append((m.FAMILY, entry.name)) or 0)
    for name in cli.MODELS:
        assert cli.main(["generate", "--model", name, "--weights", str(tmp_path)]) == 0
    assert seen == [(entry.family, name) for name, entry in cli.MODELS.items()]
    for name, entry in cli.MODELS.items():           # no weights: the family's download instructions, no run
        assert cli.main(["generate", "--model", name]) == 2
        assert f"huggingface-cli download {entry.repo}" in capsys.readouterr().err
    assert len(seen) == len(cli.MODELS)


def test_unknown_model_lists_the_choices(capsys):
    assert cli.main(["generate", "--model", "sd4-ultra"]) == 2
    err = capsys.readouterr().err
    assert "sd4-ultra" in err and "dit-xl-2-256" in err and "pixart-sigma-2k" in err and "sd3.5-medium" in err


def test_models_lists_how_to_get_each(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, entry in cli.MODELS.items():
        assert name in out and f"huggingface-cli download {entry.repo}" in out and entry.original in out
