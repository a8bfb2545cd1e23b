"""PixArt pipeline: prompt -> image against diffusers' PixArtSigmaPipeline / PixArtAlphaPipeline on tiny
random folders written by diffusers (tests/helpers/pixart.py), resolution binning against diffusers'
own tables and functions, the staged memory report, the original-checkpoint constructor, the CLI."""
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from minidit.cli import main as cli_main
from minidit.pipelines.pixart import (DIFFUSERS_SAMPLING, OFFICIAL_ALPHA_SAMPLING, OFFICIAL_SAMPLING, PixArtPipeline,
                                      PixArtSampling, sampling_from_scheduler_config)
from minidit.cli import MODELS
from minidit.pipelines.pixart_cli import _load_for_cli
from minidit.pipelines.resolution import (ASPECT_RATIO_1024, aspect_ratio_table, classify_height_width_bin,
                                          inference_bins, resize_and_crop)

from helpers import EXACT, FP16, FP32_OTHER_KERNEL, assert_parity, require

diffusers = require("diffusers")
from helpers.pixart import build_pipeline_folder, reference_pipeline  # noqa: E402

PROMPT = "a red cube on the moon"


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    spm = tmp_path_factory.mktemp("pixart_spm")
    return {which: build_pipeline_folder(tmp_path_factory.mktemp(f"pixart_{which}"), which, spm)
            for which in ("sigma", "alpha")}


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def assert_latents_close(got, expected):
    """The tiny random models amplify float32 rounding (x0 = (x - sigma eps) / alpha with alpha = 0.006
    at the first step; latents reach ~1e3): the parity policy compares relative to the largest value."""
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what="latents vs diffusers")


def run_both(folder, which, pipe=None, **kw):
    """(diffusers latents, diffusers images, minidit latents, minidit images) for the same call."""
    ref = reference_pipeline(folder, which)
    pipe = pipe or PixArtPipeline.from_pretrained(folder)
    out = []
    for output_type in ("latent", "pil"):
        out.append(ref(PROMPT, generator=torch.Generator().manual_seed(0), output_type=output_type,
                       clean_caption=False, **kw).images)
    for output_type in ("latent", "pil"):
        out.append(pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type=output_type,
                        progress=False, **kw))
    return out


# --------------------------------------------------------------------------------------------
# End to end: same image as diffusers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width,extra", [
    (256, 256, {}),                                                       # all defaults: 300 tokens
    (200, 300, dict(max_sequence_length=24, negative_prompt="blurry")),  # binned to 208 x 304, resized back
])
def test_sigma_same_image_as_diffusers(folders, height, width, extra):
    exp_lat, exp, got_lat, got = run_both(folders["sigma"], "sigma", height=height, width=width,
                                          num_inference_steps=5, **extra)
    binned = classify_height_width_bin(height, width, inference_bins(256))
    assert got_lat.shape == exp_lat.shape == (1, 4, binned[0] // 8, binned[1] // 8)
    assert_latents_close(got_lat, exp_lat)
    assert got[0].size == exp[0].size == (width, height)
    diff = np.abs(pixels(got) - pixels(exp))
    assert diff.max() <= 1, f"max pixel difference {diff.max()} / 255"
    assert pixels(exp).std() > 10                                        # a picture, not a constant
    # negative control: the prompt reaches the image (cross-attention to T5 is live)
    other = PixArtPipeline.from_pretrained(folders["sigma"])("a green dog", height=height, width=width,
                                                             num_inference_steps=5, progress=False,
                                                             generator=torch.Generator().manual_seed(0), **extra)
    assert np.abs(pixels(other) - pixels(got)).max() > 10


@pytest.mark.parametrize("height,width", [(64, 64), (64, 96)])
def test_alpha_same_image_as_diffusers_with_micro_conditions(folders, height, width):
    """α-1024-like (sample_size 128, micro-conditions), generated off-bin so it stays small."""
    pipe = PixArtPipeline.from_pretrained(folders["alpha"])
    assert pipe.variant == "alpha" and pipe.transformer.config.micro_condition
    assert pipe.transformer.config.model_max_length == 120
    exp_lat, exp, got_lat, got = run_both(folders["alpha"], "alpha", pipe, height=height, width=width,
                                          num_inference_steps=4, use_resolution_binning=False)
    assert_latents_close(got_lat, exp_lat)
    assert np.abs(pixels(got) - pixels(exp)).max() <= 1 and pixels(exp).std() > 10
    # negative control: the micro-conditions matter (same latent grid, other size/aspect condition)
    model = pipe.transformer
    x, t, y = torch.randn(1, 4, height // 8, width // 8), torch.tensor([500]), torch.randn(1, 7, 32)
    with torch.no_grad():
        a = model(x, t, y, img_hw=torch.tensor([[height, width]]), aspect_ratio=torch.tensor([[height / width]]))
        b = model(x, t, y, img_hw=torch.tensor([[1024, 1024]]), aspect_ratio=torch.tensor([[1.0]]))
    assert (a - b).abs().max() > 1e-2


def test_null_caption_is_the_official_unconditional_input(folders, tmp_path):
    """α's official sampler: uncond = the stored y_embedding with the *prompt's* mask. Oracle:
    diffusers' pipeline given exactly that as negative_prompt_embeds / mask (its own tokenizer)."""
    from weights_loader import load_pixart
    from weights_loader.pixart import pixart_from_diffusers
    folder = folders["alpha"]
    config = load_pixart(folder).config
    sd = pixart_from_diffusers(diffusers.PixArtTransformer2DModel.from_pretrained(folder / "transformer")
                               .state_dict(), config.depth)
    null = torch.randn(config.model_max_length, config.caption_channels, generator=torch.Generator().manual_seed(5))
    sd["y_embedder.y_embedding"] = null
    torch.save({"state_dict": sd}, tmp_path / "PixArt-tiny.pth")
    pipe = PixArtPipeline.from_original(tmp_path / "PixArt-tiny.pth", folder / "text_encoder", folder / "vae",
                                        tokenizer=folder / "tokenizer", config=config,
                                        sampling=PixArtSampling(uncond="null_caption"))
    kw = dict(height=64, width=96, num_inference_steps=4, use_resolution_binning=False)
    got = pipe(PROMPT, output_type="latent", generator=torch.Generator().manual_seed(0), progress=False, **kw)
    ref = reference_pipeline(folder, "alpha")
    tokens = ref.tokenizer(PROMPT, padding="max_length", max_length=120, truncation=True, return_tensors="pt")
    with torch.no_grad():
        cond = ref.text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0]
    expected = ref(prompt_embeds=cond, prompt_attention_mask=tokens.attention_mask, negative_prompt=None,
                   negative_prompt_embeds=null[None], negative_prompt_attention_mask=tokens.attention_mask,
                   output_type="latent", generator=torch.Generator().manual_seed(0), **kw).images
    assert_latents_close(got, expected)
    diffusers_way = run_both(folder, "alpha", **kw)[0]
    assert (diffusers_way - expected).abs().max() > 1e-2                 # T5("") is another input
    with pytest.raises(ValueError, match="null caption"):
        pipe(PROMPT, negative_prompt="ugly", progress=False, **kw)
    # default of from_original: the official sampler (time_uniform grid + null caption)
    official = PixArtPipeline.from_original(tmp_path / "PixArt-tiny.pth", folder / "text_encoder", folder / "vae",
                                            tokenizer=folder / "tokenizer", config=config)
    assert official.sampling == OFFICIAL_ALPHA_SAMPLING
    a = official(PROMPT, output_type="latent", generator=torch.Generator().manual_seed(0), progress=False, **kw)
    assert a.shape == got.shape and torch.isfinite(a).all() and (a - got).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------
# Resolution binning, against diffusers' own tables and functions
# --------------------------------------------------------------------------------------------

def test_last_step_order_of_each_sampler(folders, monkeypatch):
    """PixArt-α's copy of DPM-Solver lowers the last step to first order only below 10 steps
    (`lower_order_final and steps < 10`); PixArt-Σ's always does; diffusers' too (its last step
    reaches sigma = 0)."""
    import minidit.samplers as samplers
    seen, real = [], samplers.dpm_solver_sample
    monkeypatch.setattr(samplers, "dpm_solver_sample",
                        lambda *a, **kw: seen.append(kw["lower_order_final"]) or real(*a, **kw))
    pipe = PixArtPipeline.from_pretrained(folders["sigma"], keep_text_encoder=True)
    kw = dict(height=64, width=64, use_resolution_binning=False, output_type="latent", progress=False)
    for sampling, steps in [(OFFICIAL_ALPHA_SAMPLING, 10), (OFFICIAL_ALPHA_SAMPLING, 9), (OFFICIAL_SAMPLING, 10),
                            (DIFFUSERS_SAMPLING, 10)]:
        pipe.sampling = replace(sampling, uncond="negative_prompt")      # this folder stores no null caption
        pipe(PROMPT, num_inference_steps=steps, **kw)
    assert seen == [False, True, True, True]


def test_bins_are_diffusers_tables():
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import (ASPECT_RATIO_256_BIN, ASPECT_RATIO_512_BIN,
                                                                        ASPECT_RATIO_1024_BIN)
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import ASPECT_RATIO_2048_BIN
    for side, table in [(256, ASPECT_RATIO_256_BIN), (512, ASPECT_RATIO_512_BIN), (1024, ASPECT_RATIO_1024_BIN),
                        (2048, ASPECT_RATIO_2048_BIN)]:
        ours = inference_bins(side)
        assert list(ours) == list(table), side                            # same keys, same order (ties!)
        assert {k: tuple(int(v) for v in hw) for k, hw in table.items()} == ours, side
    # hand-checked facts: 40 training buckets, 33 test buckets, ratio keys = rounded h / w
    assert len(aspect_ratio_table(1024)) == 40 and len(inference_bins(1024)) == 33
    assert all(abs(h / w - float(r)) < 0.03 for r, (h, w) in ASPECT_RATIO_1024.items())
    assert all(h % 64 == 0 and w % 64 == 0 and 0.9 <= h * w / 1024**2 <= 1.0 for h, w in ASPECT_RATIO_1024.values())


@pytest.mark.parametrize("side", [256, 512, 1024, 2048])
def test_classify_matches_diffusers(side):
    from diffusers.image_processor import PixArtImageProcessor
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import ASPECT_RATIO_1024_BIN
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import ASPECT_RATIO_2048_BIN
    table = {1024: ASPECT_RATIO_1024_BIN, 2048: ASPECT_RATIO_2048_BIN}.get(side)
    if table is None:
        from diffusers.pipelines.pixart_alpha import pipeline_pixart_alpha as m
        table = getattr(m, f"ASPECT_RATIO_{side}_BIN")
    sizes = [(1024, 1024), (768, 1360), (1360, 768), (200, 300), (512, 2048), (4096, 1024), (100, 1000),
             (1000, 100), (720, 1280), (1080, 1920), (333, 777), (960, 1025), (1, 1), (3000, 1000)]
    for h, w in sizes:
        assert classify_height_width_bin(h, w, inference_bins(side)) == \
            PixArtImageProcessor.classify_height_width_bin(h, w, ratios=table), (side, h, w)
    # hand-derived: 768 x 1360 has ratio 0.565 -> bucket "0.57" = 768 x 1344 at 1024
    assert classify_height_width_bin(768, 1360, inference_bins(1024)) == (768, 1344)


def test_resize_and_crop_matches_diffusers():
    from diffusers.image_processor import PixArtImageProcessor
    g = torch.Generator().manual_seed(0)
    for (h, w), (H, W) in [((208, 304), (200, 300)), ((64, 64), (48, 80)), ((96, 32), (100, 30)),
                           ((32, 32), (32, 32)), ((40, 72), (41, 70))]:
        x = torch.randn(2, 3, h, w, generator=g)
        expected = PixArtImageProcessor.resize_and_crop_tensor(x, W, H)
        got = resize_and_crop(x, H, W)
        assert got.shape == (2, 3, H, W)
        assert_parity(got, expected, tol=EXACT, what=f"resize_and_crop {(h, w)} -> {(H, W)}")
    # diffusers' int(176 * (49 / 176)) = 48 < 49: its crop then starts at -1 and keeps 1 column
    x = torch.randn(1, 3, 10, 176)
    assert PixArtImageProcessor.resize_and_crop_tensor(x, 49, 2).shape[-1] != 49
    assert resize_and_crop(x, 2, 49).shape[-2:] == (2, 49)


# --------------------------------------------------------------------------------------------
# Staged memory, determinism, T5 freed or kept, loading paths, scheduler configs
# --------------------------------------------------------------------------------------------

def test_staged_run_reports_each_stage_and_frees_t5(folders, monkeypatch):
    import minidit.pipelines.pixart as P
    pipe = PixArtPipeline.from_pretrained(folders["sigma"])              # keep_text_encoder=False
    assert pipe.text_encoder is None                                     # T5 is loaded for stage 1 only
    kw = dict(height=256, width=256, num_inference_steps=3, progress=False)
    a = pipe(PROMPT, generator=torch.Generator().manual_seed(1), output_type="pt", **kw)
    stats = pipe.last_run_stats
    assert pipe.text_encoder is None
    for name in ("text", "denoise", "decode"):
        assert stats[name]["seconds"] > 0
        assert stats[name]["peak_gib"] is not None and stats[name]["peak_gib"] >= stats[name]["start_gib"] > 0
    assert stats["text"]["t5_load_s"] >= 0 and stats["decode"]["tiled"] is False
    assert stats["denoise"]["size"] == "256x256" and "VmHWM" in stats["memory"]
    b = pipe(PROMPT, generator=torch.Generator().manual_seed(1), output_type="pt", **kw)
    assert torch.equal(a, b)                                             # same seed, same image
    c = pipe(PROMPT, generator=torch.Generator().manual_seed(2), output_type="pt", **kw)
    assert (a - c).abs().max() > 0.05
    kept = PixArtPipeline.from_pretrained(folders["sigma"], keep_text_encoder=True)
    assert torch.equal(kept(PROMPT, generator=torch.Generator().manual_seed(1), output_type="pt", **kw), a)
    assert kept.text_encoder is not None
    assert kept(PROMPT, progress=False, num_inference_steps=1) and "t5_load_s" not in kept.last_run_stats["text"]
    # precomputed prompt embeddings skip stage 1
    embeds = kept.encode_prompt(PROMPT)
    assert torch.equal(kept(prompt_embeds=embeds, generator=torch.Generator().manual_seed(1), output_type="pt",
                            **kw), a)
    # forced tiling is recorded (the tiny latent, 32 x 32, spans several 16-px tiles here)
    monkeypatch.setattr(P, "DECODE_TILE", 16)
    monkeypatch.setattr(P, "DECODE_OVERLAP", 4)
    tiled = pipe(PROMPT, generator=torch.Generator().manual_seed(1), output_type="pt", decode_tiling=True, **kw)
    assert pipe.last_run_stats["decode"]["tiled"] and tiled.shape == a.shape and not torch.equal(tiled, a)


def test_transformer_loaded_for_denoising_only_and_offload(folders, monkeypatch):
    """keep_transformer=False: only the transformer's config is read up front; the weights are loaded
    after T5 is freed and freed before the VAE decodes (what the decode sees, recorded), with the same
    image. offload=True: each component is moved to the device for its stage and back (recorded), with
    the same image."""
    kw = dict(height=256, width=256, num_inference_steps=2, progress=False, output_type="pt")
    a = PixArtPipeline.from_pretrained(folders["sigma"])(PROMPT, generator=torch.Generator().manual_seed(1), **kw)
    lazy = PixArtPipeline.from_pretrained(folders["sigma"], keep_transformer=False)
    assert lazy.denoiser.module is None and lazy.transformer.x_embedder.proj.weight.is_meta   # the skeleton
    seen = []
    real_loader, real_decode = lazy.denoiser.loader, lazy.vae.decode
    monkeypatch.setattr(lazy.denoiser, "loader", lambda: seen.append(("load", lazy.text.module)) or real_loader())
    monkeypatch.setattr(lazy.vae, "decode", lambda *a_, **k: seen.append(("decode", lazy.denoiser.module)) or
                        real_decode(*a_, **k))
    b = lazy(PROMPT, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a, b)
    assert [what for what, _ in seen] == ["load", "decode"] and all(alive is None for _, alive in seen)
    assert lazy.denoiser.module is None and lazy.last_run_stats["denoise"]["transformer_load_s"] >= 0

    off = PixArtPipeline.from_pretrained(folders["sigma"], offload=True, device="cpu")
    assert torch.equal(off(PROMPT, generator=torch.Generator().manual_seed(1), **kw), a)
    assert off.moves == [("T5 text encoder", "cpu"), ("PixArt transformer", "cpu"), ("PixArt transformer", "cpu"),
                         ("VAE", "cpu"), ("VAE", "cpu")]       # T5 is freed after its stage, not moved back
    assert PixArtPipeline.from_pretrained(folders["sigma"]).moves == []
    with pytest.raises(ValueError, match="offload"):
        PixArtPipeline.from_pretrained(folders["sigma"], offload="yes")


def test_batch_and_images_per_prompt(folders):
    pipe = PixArtPipeline.from_pretrained(folders["sigma"], keep_text_encoder=True)
    kw = dict(height=128, width=256, num_inference_steps=2, progress=False, output_type="latent",
              use_resolution_binning=False)
    one = pipe(PROMPT, generator=torch.Generator().manual_seed(3), **kw)
    two = pipe([PROMPT, "a green dog"], num_images_per_prompt=2, generator=torch.Generator().manual_seed(3), **kw)
    assert one.shape == (1, 4, 16, 32) and two.shape == (4, 4, 16, 32)
    assert_latents_close(two[:1], one)              # first noise sample, first prompt: the same latent
    assert (two[0] - two[1]).abs().max() > 1 and (two[0] - two[2]).abs().max() > 1


def test_t5_never_runs_in_unguarded_fp16(folders):
    pipe = PixArtPipeline.from_pretrained(folders["sigma"], text_encoder_dtype=torch.float16)
    t5 = pipe.text_encoder_loader()
    dtypes = {name.split(".")[-2]: p.dtype for name, p in t5.named_parameters() if "DenseReluDense" in name}
    assert dtypes["wo"] == torch.float32 and dtypes["wi_0"] == torch.float16
    # A T5 handed to the pipeline after a plain .half() (unguarded) gets the policy before it runs.
    from weights_loader import load_t5
    plain = load_t5(folders["sigma"])
    reference = PixArtPipeline(pipe.transformer, pipe.vae, pipe.tokenizer, plain).encode_prompt(PROMPT).cond
    handed = PixArtPipeline(pipe.transformer, pipe.vae, pipe.tokenizer, load_t5(folders["sigma"]).half())
    cond = handed.encode_prompt(PROMPT).cond
    wo = [p.dtype for n, p in handed.text_encoder.named_parameters() if n.endswith("DenseReluDense.wo.weight")]
    assert set(wo) == {torch.float32} and cond.dtype == torch.float16
    assert_parity(cond.float(), reference, tol=FP16, what="guarded float16 T5 vs float32")


def test_t5_fp16_overflow_is_guarded_in_the_pipeline(folders, tmp_path):
    """The guard at work end to end: with a T5 whose residual stream leaves fp16's range (as
    T5 v1.1-XXL's does), the pipeline asked for an fp16 T5 still encodes finite, fp32-close states."""
    from transformers import T5EncoderModel

    from weights_loader import load_t5
    folder = tmp_path / "pixart"
    shutil.copytree(folders["sigma"], folder)
    hf = T5EncoderModel.from_pretrained(folder / "text_encoder").eval()
    with torch.no_grad():
        hf.encoder.block[0].layer[1].DenseReluDense.wo.weight.mul_(1e6)
    hf.save_pretrained(folder / "text_encoder")
    fp32 = PixArtPipeline.from_pretrained(folder)
    embeds = fp32.encode_prompt(PROMPT, max_sequence_length=32)
    tokens = fp32.tokenizer([PROMPT], max_length=32)
    naive = load_t5(folder / "text_encoder")
    with torch.no_grad():
        states = naive(tokens["input_ids"], tokens["attention_mask"], output_hidden_states=True).hidden_states
        assert max(h.abs().max().item() for h in states[1:-1]) > 65504       # the overflow is provoked
        assert not torch.isfinite(naive.half()(tokens["input_ids"], tokens["attention_mask"]).last_hidden_state).all()
    guarded = PixArtPipeline.from_pretrained(folder, text_encoder_dtype=torch.float16).encode_prompt(
        PROMPT, max_sequence_length=32)
    for half, full in [(guarded.cond, embeds.cond), (guarded.uncond, embeds.uncond)]:
        assert half.dtype == torch.float16 and torch.isfinite(half).all()
        assert_parity(half.float(), full, tol=FP16, what="guarded float16 T5 in the pipeline vs float32")


def test_prompt_encoding_matches_diffusers(folders):
    """Stage 1 alone: diffusers lower-cases and strips the prompt (clean_caption=False), pads to
    max_sequence_length, keeps the mask; the negative prompt goes through the same T5."""
    ref = reference_pipeline(folders["sigma"], "sigma")
    ours = PixArtPipeline.from_pretrained(folders["sigma"])
    prompt, negative = "  A Red CUBE on the Moon ", "Blurry, LOW quality"
    with torch.no_grad():
        cond, cond_mask, uncond, uncond_mask = ref.encode_prompt(prompt, negative_prompt=negative, clean_caption=False,
                                                                 max_sequence_length=40)
    e = ours.encode_prompt(prompt, negative, max_sequence_length=40)
    assert torch.equal(e.cond_mask, cond_mask) and torch.equal(e.uncond_mask, uncond_mask)
    assert cond_mask.sum() < 40                                          # padded: the mask matters
    assert_parity(e.cond, cond, what="prompt states vs diffusers' encode_prompt")
    assert_parity(e.uncond, uncond, what="negative-prompt states vs diffusers' encode_prompt")


def test_transformer_only_folder_with_base(folders, tmp_path):
    only = tmp_path / "transformer_only"
    shutil.copytree(folders["sigma"] / "transformer", only / "transformer")
    with pytest.raises(FileNotFoundError, match="pixart_sigma_sdxlvae_T5_diffusers"):
        PixArtPipeline.from_pretrained(only)
    pipe = PixArtPipeline.from_pretrained(only, base=folders["sigma"])
    assert pipe.transformer.config.model_max_length == 300          # Σ's captions, from base's model_index.json
    full = PixArtPipeline.from_pretrained(folders["sigma"])
    kw = dict(num_inference_steps=2, progress=False, output_type="latent")
    assert torch.equal(pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kw),
                       full(PROMPT, generator=torch.Generator().manual_seed(0), **kw))


def test_scheduler_config():
    from diffusers import DPMSolverMultistepScheduler
    assert sampling_from_scheduler_config(dict(DPMSolverMultistepScheduler().config,
                                               _class_name="DPMSolverMultistepScheduler")) == DIFFUSERS_SAMPLING
    for bad in [{"_class_name": "DDIMScheduler"},
                {"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True},
                {"_class_name": "DPMSolverMultistepScheduler", "solver_type": "heun"}]:
        with pytest.raises(ValueError):
            sampling_from_scheduler_config(bad)


def test_bad_sizes_and_folders(folders, tmp_path):
    pipe = PixArtPipeline.from_pretrained(folders["sigma"], keep_text_encoder=True)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(PROMPT, height=100, width=100, use_resolution_binning=False, progress=False)
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPT, output_type="jpeg")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        PixArtPipeline.from_pretrained(tmp_path)
    pipe.sampling = OFFICIAL_SAMPLING              # a diffusers folder stores no null caption
    with pytest.raises(RuntimeError, match="no stored null caption"):
        pipe(PROMPT, progress=False)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def test_cli_generate(folders, tmp_path, capsys):
    out = tmp_path / "cube.png"
    rc = cli_main(["generate", "--model", "pixart-sigma-256", "--weights", str(folders["sigma"]), "--prompt", PROMPT,
                   "--height", "200", "--width", "300", "--steps", "2", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    from PIL import Image
    assert Image.open(out).size == (300, 200)
    assert "generated at 208x304" in printed.out and "peak GiB" in printed.out and "decode" in printed.out
    # a 1024-px α folder is not pixart-sigma-1024: refused with the download command
    assert cli_main(["generate", "--model", "pixart-sigma-1024", "--weights", str(folders["alpha"]),
                     "--prompt", PROMPT]) != 0
    err = capsys.readouterr().err
    assert "not pixart-sigma-1024" in err and "huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-1024-MS" in err
    assert cli_main(["generate", "--model", "pixart-sigma-256", "--weights", str(folders["sigma"]),
                     "--class", "1"]) != 0


def test_cli_missing_weights_give_the_download_command(tmp_path, capsys):
    for model, repo in [("pixart-sigma-1024", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"),
                        ("pixart-sigma-2k", "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS"),
                        ("pixart-sigma-512", "PixArt-alpha/PixArt-Sigma-XL-2-512-MS"),
                        ("pixart-alpha-512", "PixArt-alpha/PixArt-XL-2-512x512"),
                        ("pixart-alpha-1024", "PixArt-alpha/PixArt-XL-2-1024-MS")]:
        assert cli_main(["generate", "--model", model, "--prompt", "x"]) != 0
        assert f"huggingface-cli download {repo} --local-dir" in capsys.readouterr().err
        assert cli_main(["generate", "--model", model, "--weights", str(tmp_path), "--prompt", "x"]) != 0
        err = capsys.readouterr().err
        assert "neither a diffusers PixArt folder" in err and f"huggingface-cli download {repo}" in err
    assert cli_main(["models"]) == 0
    listed = capsys.readouterr().out
    assert all(m in listed for m in ("pixart-alpha-512", "pixart-alpha-1024", "pixart-sigma-1024", "pixart-sigma-2k"))


def test_cli_finds_an_original_checkpoint_with_its_t5_and_vae(folders, tmp_path):
    """The layout of PixArt-alpha/PixArt-alpha: the .pth beside t5-v1_1-xxl/ (with spiece.model) and sd-vae-ft-ema/."""
    from minidit.embed import get_2d_sincos_pos_embed
    from minidit.pixart import PixArt, PixArtConfig
    folder = folders["alpha"]
    # 72-wide heads (as every PixArt): the loader reads the head count off the width
    config = PixArtConfig(input_size=128, hidden_size=144, depth=1, num_heads=2, caption_channels=32,
                          pe_interpolation=2.0, model_max_length=120, micro_condition=True)
    sd = PixArt(config).state_dict()
    sd["pos_embed"] = get_2d_sincos_pos_embed(144, 64, 64, 2.0)[None]        # the stored fixed table
    torch.save({"state_dict": sd}, tmp_path / "PixArt-XL-2-1024-MS.pth")
    shutil.copytree(folder / "text_encoder", tmp_path / "t5-v1_1-xxl")
    shutil.copy(folder / "tokenizer" / "spiece.model", tmp_path / "t5-v1_1-xxl" / "spiece.model")
    shutil.copytree(folder / "vae", tmp_path / "sd-vae-ft-ema")
    pipe = _load_for_cli(MODELS["pixart-alpha-1024"], tmp_path, None, "cpu")
    assert pipe.variant == "alpha" and pipe.sampling == OFFICIAL_ALPHA_SAMPLING
    assert pipe.transformer.config.input_size == 128 and pipe.transformer.config.micro_condition


@pytest.mark.slow
def test_real_pixart_sigma_1024_matches_diffusers():
    """The real checkpoint (float32, CPU: T5-XXL needs ~19 GB of RAM; a few steps at a small bucket)."""
    import os
    from pathlib import Path
    root = Path(os.environ.get("MINIDIT_WEIGHTS", "/nonexistent"))
    folder = next((f for f in (root / "PixArt-Sigma-XL-2-1024-MS", root) if (f / "model_index.json").is_file()), None)
    if folder is None:
        pytest.skip("set MINIDIT_WEIGHTS to a folder holding PixArt-Sigma-XL-2-1024-MS/ (huggingface-cli download "
                    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS --local-dir $MINIDIT_WEIGHTS/PixArt-Sigma-XL-2-1024-MS)")
    kw = dict(height=512, width=2048, num_inference_steps=4)                  # the 1:4 bucket, 1 Mpx
    expected = reference_pipeline(folder, "sigma")(PROMPT, generator=torch.Generator().manual_seed(0),
                                                   clean_caption=False, **kw).images
    got = PixArtPipeline.from_pretrained(folder)(PROMPT, generator=torch.Generator().manual_seed(0), **kw)
    assert np.abs(pixels(got) - pixels(expected)).max() <= 2 and pixels(expected).std() > 10
