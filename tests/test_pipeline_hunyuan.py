"""Hunyuan-DiT pipeline: prompt -> image against diffusers' HunyuanDiTPipeline on tiny random folders
(tests/helpers/hunyuan.py), for v1.1 (size + style conditions) and v1.2; where the official code and
diffusers differ (non-square RoPE grid, v1.1's size condition) and by how much; the original t2i/
layout; the bilingual tokenizers against transformers; resolution snapping; the command line."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from minidit.cli import MODELS, main as cli_main
from minidit.embed import get_2d_rope
from minidit.errors import InputError
from minidit.pipelines.hunyuan import (HunyuanPipeline, diffusers_sampling, official_sampling,
                                       official_scheduler_config, standard_shape)
from minidit.pipelines.hunyuan_cli import how_to_get
from minidit.pipelines.hunyuan_text import NEGATIVE_PROMPT
from weights_loader import CheckpointError, MissingPartError, load_bert_tokenizer, load_t5_tokenizer

from helpers import EXACT, FP32, FP32_OTHER_KERNEL, assert_parity, require

diffusers = require("diffusers")
transformers = require("transformers")
from helpers.hunyuan import build_hunyuan_folder, reference_pipeline, write_original_layout  # noqa: E402

PROMPT = "一只可爱的猫坐在窗台上"
MIXED = "一只cute cat在city at night里"
VERSIONS = {"v1.1": True, "v1.2": False}
# hydit/constants.py NEGATIVE_PROMPT, copied from the official file
OFFICIAL_NEGATIVE = "错误的眼睛，糟糕的人脸，毁容，糟糕的艺术，变形，多余的肢体，模糊的颜色，模糊，重复，病态，残缺，"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    work = tmp_path_factory.mktemp("hunyuan_work")
    return {v: build_hunyuan_folder(tmp_path_factory.mktemp(f"hunyuan_{v}"), size_cond, work)
            for v, size_cond in VERSIONS.items()}


def run_diffusers(folder, prompt=PROMPT, *, seed=0, **kw):
    """(latents, np images) from diffusers for one call, binning off (the tiny sizes are in no table)."""
    ref = reference_pipeline(folder)
    out = [ref(prompt, generator=torch.Generator().manual_seed(seed), output_type=o, use_resolution_binning=False,
               **kw).images for o in ("latent", "np")]
    return out[0], out[1]


def run_ours(pipe, prompt=PROMPT, *, seed=0, **kw):
    out = [pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type=o, use_resolution_binning=False,
                progress=False, **kw) for o in ("latent", "np")]
    return out[0], out[1]


def assert_same_image(ours, theirs, what):
    (lat, img), (ref_lat, ref_img) = ours, theirs
    assert_parity(lat, ref_lat, tol=FP32_OTHER_KERNEL, what=f"latents, {what}")
    diff = np.abs(img - ref_img).max()
    assert diff <= 1 / 255, f"{what}: max pixel difference {diff * 255:.2f} / 255"
    assert ref_img.std() * 255 > 5, "a real picture, not a constant"


CALL = dict(num_inference_steps=10, guidance_scale=5.0)


# --------------------------------------------------------------------------------------------
# Same image as diffusers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_square_same_image_as_diffusers(folders, version):
    """follow="diffusers" is HunyuanDiTPipeline; at a square size follow="official" is too, once it is given
    the same negative prompt, steps and guidance (its sampler is the folder's scheduler, and neither
    deviation touches a square image)."""
    folder = folders[version]
    expected = run_diffusers(folder, height=64, width=64, negative_prompt="模糊", **CALL)
    pipe = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    assert (pipe.sampling.sampler.name, pipe.sampling.sampler.prediction_type) == ("ddpm", "v_prediction")
    assert_same_image(run_ours(pipe, height=64, width=64, negative_prompt="模糊", **CALL), expected, f"{version} diffusers")
    official = HunyuanPipeline.from_pretrained(folder, follow="official")
    assert official.sampling.sampler == pipe.sampling.sampler           # the folder ships the official scheduler
    assert_same_image(run_ours(official, height=64, width=64, negative_prompt="模糊", **CALL), expected,
                      f"{version} official, square")


@pytest.mark.parametrize("version", VERSIONS)
def test_non_square_follow_diffusers_same_image(folders, version):
    """48 x 80 px: tokens 3 x 5, whose shorter side starts at row 6 of the 32-box (where diffusers'
    grid is squeezed); follow="diffusers" reproduces that grid and the (H, W) size condition."""
    folder = folders[version]
    expected = run_diffusers(folder, MIXED, height=48, width=80, **CALL)
    pipe = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    assert_same_image(run_ours(pipe, MIXED, height=48, width=80, **CALL), expected, f"{version} 48x80")


def captured_inputs(module, call):
    """The keyword inputs of the first forward call of `module` during `call()`."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs) or None, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen[0]


def test_official_size_condition_and_rope_are_the_official_formulas(folders):
    """What reaches the transformer at 48 x 80 (H x W): official image_meta_size [1024, 1024, W, H, 0, 0]
    (hydit/inference.py: src_size_cond + [target_W, target_H, 0, 0]) and the official RoPE grid;
    diffusers passes [1024, 1024, H, W, 0, 0] and its squeezed grid, which follow="diffusers" reproduces."""
    folder = folders["v1.1"]
    kw = dict(height=48, width=80, num_inference_steps=2, guidance_scale=5.0)
    ours = HunyuanPipeline.from_pretrained(folder)
    got = captured_inputs(ours.transformer, lambda: run_ours(ours, **kw))
    assert got["image_meta_size"].tolist() == [[1024, 1024, 80, 48, 0, 0]] * 2
    assert got["style"].tolist() == [0, 0]
    cos, sin = get_2d_rope(8, 3, 5)
    assert_parity(got["cos_cis_img"], cos, tol=EXACT)
    assert_parity(got["sin_cis_img"], sin, tol=EXACT)
    ref = reference_pipeline(folder)
    theirs = captured_inputs(ref.transformer, lambda: ref(PROMPT, output_type="latent", use_resolution_binning=False,
                                                          **kw))
    assert theirs["image_meta_size"].tolist() == [[1024, 1024, 48, 80, 0, 0]] * 2
    as_diffusers = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    mine = captured_inputs(as_diffusers.transformer, lambda: run_ours(as_diffusers, **kw))
    assert_parity(mine["image_meta_size"], theirs["image_meta_size"], tol=EXACT)
    assert_parity(mine["cos_cis_img"], theirs["image_rotary_emb"][0], tol=EXACT)
    assert (got["cos_cis_img"] - theirs["image_rotary_emb"][0]).abs().max() > 0.05


# Measured (80 x 48 px, 10 DDPM steps, CFG 5; max pixel difference / 255, max latent difference relative
# to the largest latent), and the lower bounds asserted (about a third of each, room for other CPUs):
#   v1.2  official RoPE grid                              19.1 / 255   0.074     bound  6 / 255, 0.025
#   v1.1  official RoPE grid, diffusers' size condition     7.8 / 255   0.032     bound 2.5 / 255, 0.01
#   v1.1  diffusers' RoPE grid, official size condition   139.5 / 255   0.87      bound 40 / 255, 0.3
#   v1.1  both official                                   138.5 / 255   0.87      bound 40 / 255, 0.3
#   either, both of diffusers' deviations reproduced        0.0 / 255   0.0       (the same image)
DEVIATION_BOUNDS = {("v1.2", "official", "diffusers"): (6, 0.025), ("v1.1", "official", "diffusers"): (2.5, 0.01),
                    ("v1.1", "diffusers", "official"): (40, 0.3), ("v1.1", "official", "official"): (40, 0.3)}


@pytest.mark.parametrize("version", VERSIONS)
def test_official_non_square_output_differs_from_diffusers_and_why(folders, version):
    """With everything else diffusers' (scheduler, steps, negative prompt), the official conventions
    give another image at 80 x 48 (tall: the crop starts at column 6 of the 32-box, where diffusers'
    grid is squeezed). Putting diffusers' RoPE grid and (v1.1) size condition back one at a time shows
    each deviation's share; with both back it is diffusers' image."""
    folder = folders[version]
    kw = dict(height=80, width=48, **CALL)
    expected_latents, expected = run_diffusers(folder, **kw)
    pipe = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    base, diffs = pipe.sampling, {}
    for rope in ("official", "diffusers"):
        for size_condition in (("official", "diffusers") if VERSIONS[version] else ("diffusers",)):
            pipe.sampling = replace(base, rope=rope, size_condition=size_condition)
            latents, image = run_ours(pipe, **kw)
            diffs[rope, size_condition] = (float(np.abs(image - expected).max() * 255),
                                           ((latents - expected_latents).abs().max() / expected_latents.abs().max()).item())
    print(version, {k: (round(px, 1), round(rel, 4)) for k, (px, rel) in diffs.items()})
    assert diffs["diffusers", "diffusers"][0] <= 1 and diffs["diffusers", "diffusers"][1] < 1e-4
    for (v, rope, size_condition), (px, rel) in DEVIATION_BOUNDS.items():
        if v == version:
            got = diffs[rope, size_condition]
            assert got[0] > px and got[1] > rel, (rope, size_condition, got)


@pytest.mark.parametrize("version", VERSIONS)
def test_original_t2i_layout_gives_the_same_image(folders, tmp_path, version):
    """The same tiny weights in the original repository's layout (ckpts/t2i/: model/pytorch_model_ema.pt in
    the original keys, clip_text_encoder/, tokenizer/, mt5/, sdxl-vae-fp16-fix/) load and draw the same
    image as diffusers draws from the diffusers folder."""
    folder = folders[version]
    t2i = write_original_layout(folder, tmp_path / "ckpts")
    expected = run_diffusers(folder, MIXED, height=64, width=48, negative_prompt="模糊", **CALL)
    for root in (tmp_path / "ckpts", t2i):
        pipe = HunyuanPipeline.from_pretrained(root, follow="diffusers")     # no scheduler/: the official DDPM
        assert pipe.transformer.config.size_cond == VERSIONS[version]
        assert_same_image(run_ours(pipe, MIXED, height=64, width=48, negative_prompt="模糊", **CALL), expected,
                          f"{version} from {root.name}")
    official = HunyuanPipeline.from_pretrained(tmp_path / "ckpts")
    assert official.sampling.sampler.beta_end == (0.03 if VERSIONS[version] else 0.02)


# --------------------------------------------------------------------------------------------
# Text: tokenizers and encoders against transformers / diffusers
# --------------------------------------------------------------------------------------------

TEXTS = [PROMPT, "An astronaut riding a horse on the moon", MIXED, OFFICIAL_NEGATIVE, "青花瓷风格，一只可爱的哈士奇", ""]


def test_bert_tokenizer_matches_transformers_on_chinese_english_mixed(folders):
    folder = folders["v1.2"] / "tokenizer"
    ours, hf = load_bert_tokenizer(folder), transformers.BertTokenizer.from_pretrained(folder)
    mine = ours(TEXTS, max_length=77)
    ref = hf(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert torch.equal(mine["input_ids"], ref["input_ids"]) and torch.equal(mine["attention_mask"], ref["attention_mask"])
    # CJK splitting: each of the 11 characters of the prompt is a word of its own ([UNK] if not in the vocabulary)
    assert len(ours.tokenize(PROMPT)) == len(PROMPT) == 11


def test_mt5_tokenizer_matches_transformers(folders):
    """Ours against the slow T5Tokenizer (diffusers' tokenizer_2) and AutoTokenizer (the fast one the
    official MT5Embedder loads); the trained model knows Chinese (no <unk>)."""
    folder = folders["v1.2"] / "tokenizer_2"
    mine = load_t5_tokenizer(folder)(TEXTS, max_length=256)
    for hf in (transformers.T5Tokenizer.from_pretrained(folder, extra_ids=0),
               transformers.AutoTokenizer.from_pretrained(folder)):
        ref = hf(TEXTS, padding="max_length", max_length=256, truncation=True, return_tensors="pt")
        assert torch.equal(mine["input_ids"], ref["input_ids"]), type(hf).__name__
        assert torch.equal(mine["attention_mask"], ref["attention_mask"])
    assert not (mine["input_ids"][:, :20] == 2).any()


def test_prompt_encoding_matches_diffusers(folders):
    folder = folders["v1.2"]
    ref = reference_pipeline(folder)
    pipe = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    bert, mt5 = pipe.text.encode([PROMPT, MIXED], ["模糊", ""], num_images_per_prompt=1)
    for index, ours, L in ((0, bert, 77), (1, mt5, 256)):
        e, ne, m, nm = ref.encode_prompt([PROMPT, MIXED], device="cpu", dtype=torch.float32,
                                         do_classifier_free_guidance=True, negative_prompt=["模糊", ""],
                                         max_sequence_length=L, text_encoder_index=index)
        assert_parity(ours.cond, e, tol=FP32, what=f"encoder {index}")
        assert_parity(ours.uncond, ne, tol=FP32, what=f"encoder {index}, negative")
        assert torch.equal(ours.cond_mask, m) and torch.equal(ours.uncond_mask, nm)
        assert ours.cond.shape[1] == L and ours.cond_mask[0].sum() < L          # padded to exactly L, with a mask


def test_masks_stay_with_their_prompts_where_diffusers_tiles_them(folders):
    """Several prompts x num_images_per_prompt: diffusers' encode_prompt repeats the states per prompt
    ([A, A, B, B]) but tiles the masks ([mA, mB, mA, mB]), so with prompts of different lengths its
    images 1 and 2 get another prompt's mask; minidit keeps [mA, mA, mB, mB] (the module docstring)."""
    prompts = [PROMPT, "An astronaut riding a horse on the moon at night"]
    ref = reference_pipeline(folders["v1.2"])
    e, _, m, _ = ref.encode_prompt(prompts, device="cpu", dtype=torch.float32, num_images_per_prompt=2,
                                   do_classifier_free_guidance=True, text_encoder_index=0)
    lengths = [int(x) for x in m.sum(1)]
    assert lengths[0] != lengths[1] and lengths == [lengths[0], lengths[1]] * 2          # tiled
    assert torch.equal(e[0], e[1])                                                         # repeated
    bert, _ = HunyuanPipeline.from_pretrained(folders["v1.2"]).text.encode(prompts, None, num_images_per_prompt=2)
    assert [int(x) for x in bert.cond_mask.sum(1)] == [lengths[0], lengths[0], lengths[1], lengths[1]]
    assert_parity(bert.cond, e, tol=FP32, what="states, repeated per prompt")


def test_batch_images_per_prompt_and_guidance_rescale_match_diffusers(folders):
    folder = folders["v1.1"]
    pipe = HunyuanPipeline.from_pretrained(folder, follow="diffusers")
    kw = dict(height=64, width=64, num_inference_steps=6, guidance_scale=6.0, guidance_rescale=0.7)
    for prompt, extra in (([PROMPT, "An astronaut riding a horse"], dict(negative_prompt=["模糊", "blurry"])),
                          (MIXED, dict(num_images_per_prompt=2))):
        expected = run_diffusers(folder, prompt, seed=3, **kw, **extra)
        got = run_ours(pipe, prompt, seed=3, **kw, **extra)
        assert got[0].shape == (2, 4, 8, 8)
        assert_same_image(got, expected, f"{prompt!r} {extra}")
    plain = run_ours(pipe, MIXED, seed=3, **{**kw, "guidance_rescale": 0.0}, num_images_per_prompt=2)[0]
    assert (plain - got[0]).abs().max() > 1e-3                        # the rescale did something


def test_official_prompts_and_negative_prompt(folders, monkeypatch):
    """Official: the prompt is stripped, no negative prompt (or "") means the official Chinese one;
    diffusers: as given, "" by default."""
    assert NEGATIVE_PROMPT == OFFICIAL_NEGATIVE
    seen = []
    for follow, expected in (("official", OFFICIAL_NEGATIVE), ("diffusers", "")):
        pipe = HunyuanPipeline.from_pretrained(folders["v1.2"], follow=follow)
        real = pipe.text.encode
        monkeypatch.setattr(pipe.text, "encode", lambda p, n, **kw: seen.append((p, n)) or real(p, n, **kw))
        for negative in (None, ""):
            pipe("  猫 ", negative_prompt=negative, height=32, width=32, num_inference_steps=2, output_type="latent",
                 progress=False)
            prompts, negatives = seen.pop()
            assert negatives == [expected] and prompts == (["猫"] if follow == "official" else ["  猫 "])
    pipe(PROMPT, guidance_scale=1.0, height=32, width=32, num_inference_steps=2, output_type="latent", progress=False)
    assert seen.pop()[1] is None                                      # no guidance: no negative branch


# --------------------------------------------------------------------------------------------
# Sampling configuration and sizes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("ddpm", "DDPMScheduler"), ("ddim", "DDIMScheduler"),
                                      ("dpmms", "DPMSolverMultistepScheduler")])
def test_official_samplers_are_the_official_schedulers(name, cls):
    """hydit/constants.py SAMPLER_FACTORY (written out here) with the version's beta_end: the same
    timesteps and alpha-bars as the diffusers scheduler it names."""
    factory = {"ddpm": dict(steps_offset=1, clip_sample=False, clip_sample_range=1.0),
               "ddim": dict(steps_offset=1, clip_sample=False, clip_sample_range=1.0),
               "dpmms": dict(trained_betas=None, solver_order=2, algorithm_type="dpmsolver++")}[name]
    for size_cond, beta_end in ((True, 0.03), (False, 0.02)):
        ref = getattr(diffusers, cls)(**factory, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=beta_end,
                                      prediction_type="v_prediction")
        sampler = official_sampling(size_cond, name).sampler
        assert sampler.prediction_type == "v_prediction" and sampler.beta_end == beta_end
        ref.set_timesteps(100)
        grid = sampler.grid(100)
        assert grid.timesteps.tolist() == ref.timesteps.tolist()
        assert_parity(sampler.alphas_cumprod(), ref.alphas_cumprod.double(), tol=FP32)
    s = official_sampling(False)
    assert (s.steps, s.guidance, s.negative_prompt, s.rope, s.resolution_binning) == (100, 6.0, OFFICIAL_NEGATIVE,
                                                                                     "official", False)
    assert official_sampling(False, distilled=True).steps == 25
    d = diffusers_sampling(official_scheduler_config())
    assert (d.steps, d.guidance, d.negative_prompt, d.rope, d.resolution_binning) == (50, 5.0, "", "diffusers", True)


def test_resolution_snapping(folders):
    """diffusers' table: its own map_to_standard_shapes; the official table (hydit/inference.py
    STANDARD_SHAPE, the TensorRT path) by hand; the official torch path only floors to 16."""
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import map_to_standard_shapes
    for w in range(400, 2000, 37):
        for h in range(400, 2000, 53):
            assert standard_shape(w, h, "diffusers") == tuple(map_to_standard_shapes(w, h)), (w, h)
    assert standard_shape(1000, 700) == (1280, 960) and standard_shape(1024, 768, "diffusers") == (1024, 768)
    assert standard_shape(700, 1300) == (768, 1280) and standard_shape(1100, 1000) == (1024, 1024)
    pipe = HunyuanPipeline.from_pretrained(folders["v1.2"])
    assert pipe.generation_size(1000, 700) == (992, 688)                      # official: floor to 16, no snapping
    assert pipe.generation_size(700, 1000, use_resolution_binning=True) == (960, 1280)
    pipe = HunyuanPipeline.from_pretrained(folders["v1.2"], follow="diffusers")
    assert pipe.generation_size(700, 1000) == (768, 1024)                     # binning on by default
    assert pipe.generation_size(864, 1152) == (864, 1152)                     # in diffusers' table: kept
    with pytest.raises(InputError, match="height must be at least 16, got 8"):
        pipe.generation_size(8, 64)


def test_bad_inputs(folders, tmp_path):
    pipe = HunyuanPipeline.from_pretrained(folders["v1.2"])
    # the argument checks of pipelines/checks.py (every row: tests/test_bad_inputs.py); InputError is
    # both a TypeError and a ValueError
    with pytest.raises(InputError, match="prompt must be a string"):
        pipe(42)
    with pytest.raises(InputError, match="negative_prompt must be a string"):
        pipe(PROMPT, negative_prompt=[1])
    with pytest.raises(InputError, match="negative prompts for"):
        pipe([PROMPT, MIXED, "x"], negative_prompt=["a", "b"], height=32, width=32, num_inference_steps=2)
    with pytest.raises(InputError, match="output_type"):
        pipe(PROMPT, output_type="jpeg")
    with pytest.raises(InputError, match="follow must be"):
        HunyuanPipeline.from_pretrained(folders["v1.2"], follow="comfy")
    with pytest.raises(InputError, match="the official --sampler"):
        HunyuanPipeline.from_pretrained(folders["v1.2"], sampler="euler")
    broken = tmp_path / "no_mt5"
    shutil.copytree(folders["v1.2"], broken)
    shutil.rmtree(broken / "text_encoder_2")
    with pytest.raises(MissingPartError, match="text_encoder_2/config.json"):
        HunyuanPipeline.from_pretrained(broken)
    with pytest.raises(MissingPartError, match="HunyuanDiT-v1.2"):
        HunyuanPipeline.from_pretrained(tmp_path / "empty")
    index = json.loads((broken / "model_index.json").read_text())
    (broken / "model_index.json").write_text(json.dumps({**index, "_class_name": "PixArtSigmaPipeline"}))
    with pytest.raises(CheckpointError, match="not one of HunyuanDiTPipeline"):
        HunyuanPipeline.from_pretrained(broken)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def test_cli_generate(folders, tmp_path, capsys):
    out = tmp_path / "cat.png"
    rc = cli_main(["generate", "--model", "hunyuan-dit-v1.2", "--weights", str(folders["v1.2"]), "--prompt", PROMPT,
                   "--height", "72", "--width", "40", "--steps", "2", "--sampler", "dpmms", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    from PIL import Image
    assert Image.open(out).size == (32, 64)                        # floored to multiples of 16, not snapped
    assert "generated at 64x32" in printed.out and "sampler=dpm_solver++" in printed.out
    assert cli_main(["generate", "--model", "hunyuan-dit-v1.1", "--weights", str(folders["v1.2"]), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "not hunyuan-dit-v1.1" in err and "huggingface-cli download Tencent-Hunyuan/HunyuanDiT-Diffusers" in err
    assert cli_main(["generate", "--model", "hunyuan-dit-v1.2", "--weights", str(folders["v1.2"]), "--class", "1"]) == 2


def test_cli_original_layout_and_download_commands(folders, tmp_path, capsys):
    write_original_layout(folders["v1.2"], tmp_path / "ckpts", load_key="distill")
    out = tmp_path / "d.png"
    assert cli_main(["generate", "--model", "hunyuan-dit-v1.2-distilled", "--weights", str(tmp_path / "ckpts"),
                     "--prompt", PROMPT, "--height", "32", "--width", "32", "--steps", "2", "--out", str(out)]) == 0
    assert "steps=2" in capsys.readouterr().out
    # the ema file is not there: the error says which file and how to get it
    assert cli_main(["generate", "--model", "hunyuan-dit-v1.2", "--weights", str(tmp_path / "ckpts"),
                     "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "pytorch_model_ema.pt" in err
    assert "huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2 --local-dir ckpts" in err
    for model, repo in (("hunyuan-dit-v1.2", "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers"),
                        ("hunyuan-dit-v1.2-distilled", "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers-Distilled"),
                        ("hunyuan-dit-v1.1", "Tencent-Hunyuan/HunyuanDiT-Diffusers")):
        assert cli_main(["generate", "--model", model, "--prompt", "x"]) == 2
        assert f"huggingface-cli download {repo} --local-dir" in capsys.readouterr().err
        assert cli_main(["generate", "--model", model, "--weights", str(tmp_path), "--prompt", "x"]) == 2
        assert "neither a diffusers Hunyuan-DiT folder" in capsys.readouterr().err
    assert "Tencent-Hunyuan/Distillation-v1.2 pytorch_model_distill.pt" in how_to_get(MODELS["hunyuan-dit-v1.2-distilled"])


def test_offload_moves_each_part_for_its_stage_and_keeps_the_image(folders):
    """offload=True: each component is moved to the device for its stage (recorded: BERT and mT5 once,
    then freed; the transformer and the VAE there and back); the image is unchanged."""
    folder = folders["v1.2"]
    kw = dict(height=64, width=64, num_inference_steps=2, output_type="pt", use_resolution_binning=False,
              progress=False)
    a = HunyuanPipeline.from_pretrained(folder)(PROMPT, generator=torch.Generator().manual_seed(0), **kw)
    pipe = HunyuanPipeline.from_pretrained(folder, offload=True, device="cpu")
    assert torch.equal(pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kw), a)
    names = [what for what, _ in pipe.moves]
    assert names.count("Hunyuan-DiT transformer") == 2 and names.count("VAE") == 2 and len(names) == 6, pipe.moves
