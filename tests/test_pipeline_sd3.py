"""SD3 pipeline: prompt -> image against diffusers' StableDiffusion3Pipeline on a tiny random folder,
and the official sampling (sd3_infer.py) against its own loop written out."""
import numpy as np
import pytest
import torch

from dataclasses import replace

from safetensors.torch import save_file

from minidit.pipelines.sd3 import OFFICIAL_SAMPLING, SD3Pipeline, SkipLayerGuidance
from minidit.pipelines.sd3_text import SD3TextEncoders
from weights_loader import load_mmdit, load_vae

from helpers import FP32_OTHER_KERNEL, assert_parity, require
from helpers.sd3 import build_sd3_pipeline
from helpers.sd3_official import (official_cfg_denoiser, official_sample_dpmpp_2m, official_sample_euler,
                                  official_sigmas, official_skip_layer_cfg_denoiser)

diffusers = require("diffusers")
PROMPT = "a tiny red cube on a wooden table"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3")
    build_sd3_pipeline(folder, tmp_path_factory.mktemp("sd3_work"))
    return folder


def reference(folder, drop_t5=False):
    kw = dict(text_encoder_3=None, tokenizer_3=None) if drop_t5 else {}
    pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(folder, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.mark.parametrize("height,width,drop_t5", [(64, 64, False), (48, 96, False), (64, 64, True)])
def test_same_image_as_diffusers(folder, height, width, drop_t5):
    kw = dict(height=height, width=width, num_inference_steps=4, guidance_scale=5.0)
    ref = reference(folder, drop_t5)
    expected_latents = ref(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kw).images
    expected = ref(PROMPT, generator=torch.Generator().manual_seed(0), **kw).images
    pipe = SD3Pipeline.from_pretrained(folder, drop_t5=drop_t5)
    assert pipe.sampling.sampler.name == "euler" and pipe.sampling.sampler.shift == 3.0
    latents = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", progress=False, **kw)
    assert_parity(latents, expected_latents, tol=FP32_OTHER_KERNEL, what=f"latents {height}x{width}, drop_t5={drop_t5}")
    got = pipe(PROMPT, generator=torch.Generator().manual_seed(0), progress=False, **kw)
    assert len(got) == 1 and got[0].size == (width, height)
    diff = np.abs(pixels(got) - pixels(expected))
    assert diff.max() <= 1, f"max pixel difference {diff.max()} / 255"
    assert pixels(expected).std() > 5                                  # a real picture, not a constant
    assert pipe.last_run_stats["denoise"]["text_tokens"] == (77 + 256)  # diffusers' T5 length


def test_batch_negative_prompt_and_skip_layer_guidance_match_diffusers(folder):
    kw = dict(height=64, width=64, num_inference_steps=10, guidance_scale=4.0, num_images_per_prompt=2)
    ref = reference(folder)
    expected = ref([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], skip_guidance_layers=[1],
                   skip_layer_guidance_scale=2.8, skip_layer_guidance_start=0.01, skip_layer_guidance_stop=0.3,
                   generator=torch.Generator().manual_seed(1), output_type="latent", **kw).images
    pipe = SD3Pipeline.from_pretrained(folder)
    pipe.sampling = replace(pipe.sampling, skip_layer_guidance=SkipLayerGuidance(layers=(1,), scale=2.8, start=0.01,
                                                                                  end=0.3))
    got = pipe([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], generator=torch.Generator().manual_seed(1),
               output_type="latent", progress=False, **kw)
    assert got.shape == (4, 16, 8, 8)
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what="batch of 2 x 2 with negatives and skip-layer guidance")
    plain = ref([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], generator=torch.Generator().manual_seed(1),
                output_type="latent", **kw).images
    assert (plain - expected).abs().max() > 1e-3                       # the skip-layer term did something


def test_dynamic_shift_folder_matches_diffusers(folder, tmp_path):
    """A scheduler with use_dynamic_shifting: the shift follows the image's token count, which the
    pipeline passes on (diffusers computes mu from it)."""
    import json
    import shutil
    dyn = tmp_path / "dyn"
    shutil.copytree(folder, dyn)
    cfg_path = dyn / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=8, max_image_seq_len=64)
    cfg_path.write_text(json.dumps(cfg))
    kw = dict(height=64, width=48, num_inference_steps=4, guidance_scale=5.0)
    expected = reference(dyn)(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kw).images
    got = SD3Pipeline.from_pretrained(dyn)(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent",
                                           progress=False, **kw)
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what="dynamic shift")


def test_bad_sizes_and_folders(folder, tmp_path):
    pipe = SD3Pipeline.from_pretrained(folder)
    slg = replace(pipe.sampling, skip_layer_guidance=SkipLayerGuidance(layers=(1,)))
    with pytest.raises(ValueError, match="skip-layer guidance needs classifier-free guidance"):
        SD3Pipeline(pipe.transformer, pipe.vae, pipe.text, slg)(PROMPT, height=64, width=64, guidance_scale=1.0,
                                                                progress=False)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(PROMPT, height=72, width=64, progress=False)
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPT, output_type="jpeg")
    with pytest.raises(FileNotFoundError, match="stable-diffusion-3"):
        SD3Pipeline.from_pretrained(tmp_path)


def official_file(folder, path):
    """The tiny folder's MM-DiT and VAE as an official single file: model.diffusion_model.* (official
    keys = minidit's) + first_stage_model.* (ldm keys = minidit's)."""
    transformer, vae = load_mmdit(folder), load_vae(folder)
    sd = {f"model.diffusion_model.{k}": v for k, v in transformer.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    save_file(sd, path)
    return transformer.config, vae.config


@pytest.mark.parametrize("release,slg", [("sd3.5-medium", False), ("sd3.5-large-turbo", False), ("sd3.5-medium", True)])
def test_official_sampling_is_sd3_infer(folder, tmp_path, release, slg):
    """from_single_file samples as sd3_infer.py does: x_T = randn from torch.manual_seed(seed) on the CPU,
    CFGDenoiser (or SkipLayerCFGDenoiser) on the denoised x0 with [cond | uncond], sample_dpmpp_2m /
    sample_euler on get_sigmas(shift). Oracle: those loops written out (tests/helpers/sd3_official.py),
    around the same network; T5 at the official length (77 tokens for a short prompt)."""
    config, vae_config = official_file(folder, tmp_path / "sd3_tiny.safetensors")
    text = SD3TextEncoders.from_pretrained(folder, keep=True, context_width=config.context_dim)
    sampling = OFFICIAL_SAMPLING[release]
    if slg:        # the official SD3.5-medium option, on the tiny model's layer 1 (it has 3)
        sampling = replace(sampling, guidance=4.0, skip_layer_guidance=SkipLayerGuidance(layers=(1,)))
    pipe = SD3Pipeline.from_single_file(tmp_path / "sd3_tiny.safetensors", text=text, transformer_config=config,
                                        vae_config=vae_config, sampling=sampling)
    steps, seed = 10, 23
    got = pipe(PROMPT, height=64, width=48, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="latent", progress=False)
    assert pipe.last_run_stats["denoise"]["text_tokens"] == 77 + 77

    e = text.encode(PROMPT, "", t5_length="official")
    net = pipe.transformer

    def apply_model(x, sigma, context, y, skip_layers=()):       # BaseModel.apply_model: x - v sigma
        v = net(x, sigma * 1000, y=y, context=context, skip_layers=skip_layers)
        return x - v * sigma.reshape(-1, 1, 1, 1)
    cond, uncond = (e.cond, e.cond_pooled), (e.uncond, e.uncond_pooled)
    if slg:
        denoiser = official_skip_layer_cfg_denoiser(apply_model, cond, uncond, 4.0, steps,
                                                    dict(scale=2.5, start=0.01, end=0.2, layers=[1]))
    else:
        denoiser = official_cfg_denoiser(apply_model, cond, uncond, sampling.guidance)
    noise = torch.randn((1, 16, 8, 6), dtype=torch.float32, generator=torch.manual_seed(seed), device="cpu")
    sigmas = official_sigmas(steps, 3.0)
    x = sigmas[0] * noise                                            # noise_scaling: sigma_0 = 1
    loop = official_sample_euler if release.endswith("turbo") else official_sample_dpmpp_2m
    with torch.no_grad():
        expected = loop(denoiser, x, sigmas, [])
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what=f"{release}{' with SLG' if slg else ''}")
    with torch.no_grad():
        plain = official_sample_dpmpp_2m(official_cfg_denoiser(apply_model, cond, uncond, 4.0), x, sigmas, [])
    if slg:
        assert (plain - expected).abs().max() > 1e-3                   # the skip-layer term did something


def test_release_detection_and_official_defaults(tmp_path):
    from minidit.mmdit import PRESETS, MMDiT
    from minidit.pipelines.sd3 import release_name
    with torch.device("meta"):
        models = {name: MMDiT(config) for name, config in PRESETS.items()}
    assert release_name(models["sd3-medium"]) == "sd3-medium"
    assert release_name(models["sd3.5-medium"], "sd3.5_medium.safetensors") == "sd3.5-medium"
    assert release_name(models["sd3.5-large"], "models/sd3.5_large.safetensors") == "sd3.5-large"
    assert release_name(models["sd3.5-large"], "models/sd3.5_large_turbo.safetensors") == "sd3.5-large-turbo"
    # sd3_infer.py CONFIGS
    table = {n: (s.sampler.name, s.sampler.shift, s.steps, s.guidance) for n, s in OFFICIAL_SAMPLING.items()}
    assert table == {"sd3-medium": ("dpm_solver++", 1.0, 50, 5.0), "sd3.5-large": ("dpm_solver++", 3.0, 40, 4.5),
                     "sd3.5-large-turbo": ("euler", 3.0, 4, 1.0), "sd3.5-medium": ("dpm_solver++", 3.0, 50, 5.0)}
    assert all(s.sampler.spacing == "flow_k_diffusion" and s.t5_length == "official" and not s.uncond_first
               for s in OFFICIAL_SAMPLING.values())
    # --skip_layer_cfg True: CONFIGS' "cfg": 4.0 is read into a variable sd3_infer.py never uses; 5.0 runs
    from minidit.pipelines.sd3 import OFFICIAL_SLG_SAMPLING
    assert OFFICIAL_SLG_SAMPLING.guidance == 5.0 and OFFICIAL_SLG_SAMPLING.skip_layer_guidance.layers == (7, 8, 9)


def test_cli_generate(folder, tmp_path, capsys):
    from minidit.cli import main as cli_main
    out = tmp_path / "cube.png"
    rc = cli_main(["generate", "--model", "sd3.5-medium", "--weights", str(folder), "--prompt", PROMPT,
                   "--height", "64", "--width", "48", "--steps", "2", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    from PIL import Image
    assert Image.open(out).size == (48, 64) and "denoise" in printed.out
    assert cli_main(["generate", "--model", "sd3.5-medium", "--weights", str(folder), "--class", "1"]) == 2
    assert "text-conditional" in capsys.readouterr().err
    assert cli_main(["generate", "--model", "sd3.5-large", "--weights", str(tmp_path), "--prompt", "x"]) == 2
    assert "huggingface-cli download stabilityai/stable-diffusion-3.5-large" in capsys.readouterr().err


def test_offload_moves_each_part_for_its_stage_and_keeps_the_image(folder):
    """offload=True: every component waits on the CPU and is moved to the device for its stage (recorded:
    text encoders once, then freed; the MM-DiT and the VAE there and back); the image is unchanged."""
    kw = dict(height=64, width=64, num_inference_steps=2, guidance_scale=5.0, output_type="pt", progress=False)
    a = SD3Pipeline.from_pretrained(folder)(PROMPT, generator=torch.Generator().manual_seed(0), **kw)
    pipe = SD3Pipeline.from_pretrained(folder, offload=True, device="cpu")
    b = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)
    names = [what for what, _ in pipe.moves]
    assert names.count("MM-DiT") == 2 and names.count("VAE") == 2 and len(names) == 7, pipe.moves
    assert all(device == "cpu" for _, device in pipe.moves) and pipe.last_run_stats["decode"]["tiled"] is False
