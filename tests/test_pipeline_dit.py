"""DiT pipeline: class label -> image, against diffusers' DiTPipeline and the official sampler's maths."""
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from minidit.cli import main as cli_main
from minidit.pipelines.dit import (OFFICIAL_SAMPLING, DiTPipeline, class_ids, imagenet_class_names,
                                   sampling_from_scheduler_config)
from minidit.samplers import Sampler
from weights_loader import load_dit, load_vae
from weights_loader.dit import dit_config_from_diffusers, dit_from_diffusers
from weights_loader.configs import read_config

from helpers import require

diffusers = require("diffusers")


def make_folder(folder, sample_size=8, scheduler="ddim"):
    """A tiny random diffusers DiT pipeline (transformer + VAE + scheduler), as the hub's: the
    current converter writes a DDIMScheduler, early converted folders hold a DDPMScheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, DiTTransformer2DModel
    from diffusers import DiTPipeline as DiffusersDiT
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                        out_channels=8, num_layers=2, sample_size=sample_size, patch_size=2,
                                        norm_num_groups=8, num_embeds_ada_norm=1000)
    # The converter copies DiT's single timestep/label embedder into every block; do the same.
    for block in transformer.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(transformer.transformer_blocks[0].norm1.emb.state_dict())
    vae = AutoencoderKL(latent_channels=4, layers_per_block=1, block_out_channels=(8, 16, 16, 16),
                        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    if scheduler == "ddim":
        scheduler = DDIMScheduler(beta_schedule="linear", prediction_type="epsilon", clip_sample=False)
    else:
        scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    DiffusersDiT(transformer=transformer, vae=vae, scheduler=scheduler).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("dit"))


@pytest.fixture(scope="module")
def ddpm_folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("dit_ddpm"), scheduler="ddpm")


def reference_pipeline(folder):
    pipe = diffusers.DiTPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def visited(sampler, steps):
    """The training timesteps a sampler visits, ascending."""
    return sampler.grid(steps).timesteps.flip(0).long().tolist()


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.mark.parametrize("scheduler,labels,steps,guidance", [
    ("ddim", [207, 1], 8, 4.0), ("ddim", [3], 5, 1.0), ("ddpm", [207, 1], 6, 4.0)])
def test_same_image_as_diffusers_dit_pipeline(folder, ddpm_folder, scheduler, labels, steps, guidance):
    folder = folder if scheduler == "ddim" else ddpm_folder
    torch.manual_seed(3)      # diffusers draws DDPM step noise from the global RNG (not from `generator`)
    expected = reference_pipeline(folder)(class_labels=labels, num_inference_steps=steps, guidance_scale=guidance,
                                          generator=torch.Generator().manual_seed(7)).images
    pipe = DiTPipeline.from_pretrained(folder, follow="diffusers")
    assert pipe.sampling.sampler.name == scheduler and pipe.sampling.cfg_channels is None
    assert pipe.transformer.config.timestep_freq_shift == 1
    torch.manual_seed(3)
    got = pipe(labels, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator().manual_seed(7), progress=False)
    assert len(got) == len(labels) and got[0].size == (64, 64)
    diff = np.abs(pixels(got) - pixels(expected))
    assert diff.max() <= 1, f"max pixel difference {diff.max()} / 255"
    assert pixels(expected).std() > 10                      # a real picture, not a constant
    if guidance > 1:   # negative control: the official sampler on the same weights is another image
        official = DiTPipeline.from_pretrained(folder)(labels, num_inference_steps=steps,
                                                       generator=torch.Generator().manual_seed(7), progress=False)
        assert np.abs(pixels(official) - pixels(expected)).max() > 10


def test_default_is_the_official_sampler(folder):
    """Default = DiT's sample.py: IDDPM-respaced DDPM with learned-range variances and CFG on 3
    channels. Oracle: diffusers' DDPMScheduler(variance_type="learned_range") on the official
    respaced timesteps, driven by a hand-written loop with the official forward_with_cfg rule."""
    from diffusers import DDPMScheduler
    torch.manual_seed(0)
    ref = reference_pipeline(folder)
    steps = 10
    # IDDPM space_timesteps(1000, [10]): stride (1000 - 1) / (10 - 1) = 111, both ends kept
    official = list(range(0, 1000, 111))
    assert visited(OFFICIAL_SAMPLING.sampler, steps) == official
    sched = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False)
    sched.set_timesteps(timesteps=official[::-1])
    g = torch.Generator().manual_seed(11)
    labels = torch.tensor([207, 3])
    x = torch.randn(2, 4, 8, 8, generator=g)
    x = torch.cat([x, x])
    y = torch.cat([labels, torch.full_like(labels, 1000)])
    with torch.no_grad():
        for t in sched.timesteps:
            x = torch.cat([x[:2], x[:2]])         # official forward_with_cfg: the first half, twice
            out = ref.transformer(x, timestep=t.expand(4), class_labels=y).sample
            eps, rest = out[:, :3], out[:, 3:]                       # official: guide 3 channels only
            cond, uncond = eps.chunk(2)
            half = uncond + 4.0 * (cond - uncond)
            x = sched.step(torch.cat([torch.cat([half, half]), rest], dim=1), t, x, generator=g).prev_sample
        image = ref.vae.decode(x[:2] / 0.18215).sample
    expected = ((image / 2 + 0.5).clamp(0, 1) * 255).round()
    assert expected.std() > 10                              # a real picture, not a constant
    # minidit: the official sampler, with diffusers' timestep embedding so the two networks agree
    config = replace(dit_config_from_diffusers(read_config(folder / "transformer")), timestep_freq_shift=1)
    pipe = DiTPipeline(load_dit(folder, config), load_vae(folder))
    got = pipe([207, 3], num_inference_steps=steps, generator=torch.Generator().manual_seed(11),
               output_type="pt", progress=False)
    assert (got * 255).round().sub(expected).abs().max() <= 1


def test_original_checkpoint_constructor(folder, tmp_path):
    """An original-layout .pt (keys of facebookresearch/DiT) gives the same pipeline as the folder."""
    from safetensors.torch import load_file
    config = dit_config_from_diffusers(read_config(folder / "transformer"))
    sd = dit_from_diffusers(load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors"), config.depth)
    torch.save(sd, tmp_path / "DiT-tiny.pt")
    a = DiTPipeline.from_original(tmp_path / "DiT-tiny.pt", folder / "vae", config=config)
    b = DiTPipeline.from_pretrained(folder)
    kw = dict(num_inference_steps=3, output_type="latent", progress=False)
    torch.testing.assert_close(a([1], generator=torch.Generator().manual_seed(0), **kw),
                               b([1], generator=torch.Generator().manual_seed(0), **kw))


def test_progress_bar(folder, capsys):
    DiTPipeline.from_pretrained(folder)([0], num_inference_steps=2, output_type="latent")
    assert "DDPM" in capsys.readouterr().err


def test_class_names_are_imagenet_and_match_open_clip():
    names = imagenet_class_names()
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.fail("open_clip_torch (the class names' source) is missing: pip install --no-deps open_clip_torch==3.3.0")
    path = Path(spec.submodule_search_locations[0]) / "zero_shot_metadata.py"
    meta = importlib.util.spec_from_file_location("zero_shot_metadata", path)
    module = importlib.util.module_from_spec(meta)
    meta.loader.exec_module(module)
    assert names == tuple(module.IMAGENET_CLASSNAMES)
    assert (names[0], names[207], names[999]) == ("tench", "Golden Retriever", "toilet paper")


def test_class_ids_from_ids_and_names():
    assert class_ids([207, "golden retriever", "GOLDFISH", " 88 "]) == [207, 207, 1, 88]
    assert class_ids("tench") == [0]
    assert class_ids(torch.tensor([5, 6])) == class_ids(np.array([5, 6])) == [5, 6]
    with pytest.raises(ValueError, match="golden retriever"):     # a typo gets suggestions
        class_ids(["golden retreiver"])
    with pytest.raises(ValueError, match=r"\[657, 744\]"):        # ambiguous names ask for the id
        class_ids(["missile"])
    with pytest.raises(ValueError, match="out of range"):
        class_ids([1000])
    with pytest.raises(ValueError, match="pass ids"):
        class_ids(["tench"], num_classes=10)


@pytest.mark.parametrize("spacing,offset,steps", [("leading", 0, 250), ("leading", 1, 50), ("trailing", 0, 4),
                                                   ("trailing", 0, 7), ("linspace", 0, 13)])
def test_timesteps_are_diffusers(spacing, offset, steps):
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(steps)
    ours = visited(Sampler("ddpm", spacing=spacing, steps_offset=offset), steps)
    assert ours == sched.timesteps.flip(0).tolist()


def test_unsupported_sampling_is_refused():
    # diffusers' DDIM steps by T // n, which skips or repeats timesteps of these spacings
    for spacing, steps in [("linspace", 10), ("trailing", 7)]:
        with pytest.raises(ValueError, match="not a consistent"):
            Sampler("ddim", spacing=spacing).grid(steps)
    assert visited(Sampler("ddim", spacing="trailing"), 4) == [249, 499, 749, 999]
    with pytest.raises(ValueError, match="clip_sample"):
        sampling_from_scheduler_config({"_class_name": "DDIMScheduler", "clip_sample": True})
    with pytest.raises(ValueError, match="variance_type"):
        sampling_from_scheduler_config({"_class_name": "DDPMScheduler", "variance_type": "learned_range"})
    with pytest.raises(ValueError, match="EulerDiscreteScheduler"):
        sampling_from_scheduler_config({"_class_name": "EulerDiscreteScheduler"})


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def test_cli_without_weights_says_how_to_get_them(tmp_path, capsys):
    assert cli_main(["generate", "--model", "dit-xl-2-256", "--class", "207"]) != 0
    err = capsys.readouterr().err
    assert "huggingface-cli download facebook/DiT-XL-2-256 --local-dir" in err
    assert "wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in err
    assert "huggingface-cli download stabilityai/sd-vae-ft-mse" in err
    assert cli_main(["generate", "--model", "dit-xl-2-512", "--weights", str(tmp_path), "--class", "1"]) != 0
    err = capsys.readouterr().err
    assert "facebook/DiT-XL-2-512" in err and "DiT-XL-2-512x512.pt" in err


def test_cli_models_lists_dit(capsys):
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dit-xl-2-256" in out and "dit-xl-2-512" in out


def test_cli_generate_writes_an_image(tmp_path, folder, capsys):
    big = make_folder(tmp_path / "dit256", sample_size=32)              # 32 latent = 256 px
    out = tmp_path / "dog.png"
    rc = cli_main(["generate", "--model", "dit-xl-2-256", "--weights", str(big), "--class", "golden retriever",
                   "--steps", "2", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    from PIL import Image
    assert Image.open(out).size == (256, 256)
    # the 64 px tiny folder is not a 256 px model: refused with the download instructions
    assert cli_main(["generate", "--model", "dit-xl-2-256", "--weights", str(folder), "--class", "1"]) != 0
    assert "huggingface-cli download" in capsys.readouterr().err
    assert cli_main(["generate", "--model", "dit-xl-2-256", "--weights", str(big), "--class", "dogg"]) != 0
    assert cli_main(["generate", "--model", "dit-xl-2-256", "--weights", str(big), "--class", "1",
                     "--height", "512"]) != 0


@pytest.mark.slow
def test_real_dit_xl_2_256_matches_diffusers():
    import os
    weights = Path(os.environ.get("MINIDIT_WEIGHTS", "/nonexistent")) / "DiT-XL-2-256"
    if not (weights / "model_index.json").is_file():
        pytest.skip("set MINIDIT_WEIGHTS to a folder holding DiT-XL-2-256/ (huggingface-cli download "
                    "facebook/DiT-XL-2-256 --local-dir $MINIDIT_WEIGHTS/DiT-XL-2-256)")
    ref = diffusers.DiTPipeline.from_pretrained(weights)
    ref.set_progress_bar_config(disable=True)
    expected = ref(class_labels=[207], num_inference_steps=4, generator=torch.Generator().manual_seed(0)).images
    got = DiTPipeline.from_pretrained(weights, follow="diffusers")(
        ["golden retriever"], num_inference_steps=4, generator=torch.Generator().manual_seed(0), progress=False)
    assert np.abs(pixels(got) - pixels(expected)).max() <= 1


def test_offload_moves_each_part_for_its_stage_and_keeps_the_image(folder):
    """offload=True: the transformer and the VAE are moved to the device for their stage and back
    (recorded); the image is unchanged."""
    kw = dict(num_inference_steps=2, output_type="pt", progress=False)
    a = DiTPipeline.from_pretrained(folder)([1], generator=torch.Generator().manual_seed(0), **kw)
    pipe = DiTPipeline.from_pretrained(folder, offload=True, device="cpu")
    assert torch.equal(pipe([1], generator=torch.Generator().manual_seed(0), **kw), a)
    assert pipe.moves == [("DiT transformer", "cpu"), ("DiT transformer", "cpu"), ("VAE", "cpu"), ("VAE", "cpu")]
