"""The video pipeline (`minidit/pipelines/video.py`) against diffusers' LattePipeline on a tiny random
folder written by diffusers (tests/helpers/latte.py): the same frames for the same seed, one prompt
(T5 states cut to the real tokens) and several (padding rows zeroed), 16 frames and 1; the staged T5;
the command line end to end."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from minidit.cli import main as cli_main
from minidit.errors import InputError
from minidit.pipelines.video import LATTE, LattePipeline, VideoFamily
from minidit.vae import decode_latents

from helpers import FP32_OTHER_KERNEL, assert_parity, require

diffusers = require("diffusers")
from helpers.latte import FRAMES, build_pipeline_folder, reference_pipeline  # noqa: E402

torch.set_num_threads(1)
PROMPT = "a red cube on the moon"
SIZE = dict(height=64, width=64, num_inference_steps=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_pipeline_folder(tmp_path_factory.mktemp("latte_pipe"), tmp_path_factory.mktemp("latte_spm"))


@pytest.fixture(scope="module")
def pipe(folder):
    return LattePipeline.from_pretrained(folder)


def pixels(videos):
    return np.stack([np.stack([np.asarray(f, dtype=np.int16) for f in v]) for v in videos])   # (B, F, H, W, 3)


def run_both(folder, pipe, prompt, frames=FRAMES, videos=1, **kw):
    """(diffusers latents, diffusers frames, minidit latents, minidit frames) for the same seeded call."""
    ref = reference_pipeline(folder)
    out = []
    for output_type in ("latent", "pil"):
        out.append(ref(prompt, video_length=frames, generator=torch.Generator().manual_seed(0), output_type=output_type,
                       clean_caption=False, num_images_per_prompt=videos, **SIZE, **kw).frames)
    for output_type in ("latent", "pil"):
        out.append(pipe(prompt, num_frames=frames, generator=torch.Generator().manual_seed(0), output_type=output_type,
                        progress=False, num_videos_per_prompt=videos, **SIZE, **kw))
    return out


@pytest.mark.parametrize("prompt,frames,kw", [
    (PROMPT, FRAMES, {}), ([PROMPT, "a green dog"], FRAMES, {}), (PROMPT, 1, {}),
    (PROMPT, FRAMES, dict(videos=2)),                                     # 2 videos of 1 prompt: the zeroed-padding path
    (PROMPT, FRAMES, dict(guidance_scale=1.0, negative_prompt="blurry")),  # unguided: the negative prompt unused
], ids=["one-prompt", "two-prompts", "one-frame", "two-videos-per-prompt", "unguided"])
def test_same_frames_as_diffusers(folder, pipe, prompt, frames, kw):
    exp_lat, exp, got_lat, got = run_both(folder, pipe, prompt, frames, **kw)
    B = (1 if isinstance(prompt, str) else len(prompt)) * kw.get("videos", 1)
    assert got_lat.shape == exp_lat.shape == (B, 4, frames, 8, 8)
    assert_parity(got_lat, exp_lat, tol=FP32_OTHER_KERNEL, what="latents vs diffusers")
    assert len(got) == len(exp) == B and all(len(v) == frames for v in got)
    diff = np.abs(pixels(got) - pixels(exp))
    assert diff.max() <= 1, f"max pixel difference {diff.max()} / 255"
    assert pixels(exp).std() > 10                                     # pictures, not a constant


def test_the_prompt_and_the_batch_reach_the_frames(pipe):
    """Negative controls: another prompt changes the video; and Latte's mask_feature makes a prompt's video
    depend on whether it is alone in the batch (states cut vs padding zeroed), as in diffusers (above)."""
    def video(prompt):
        return pixels(pipe(prompt, generator=torch.Generator().manual_seed(0), progress=False, **SIZE))
    alone = video(PROMPT)
    assert np.abs(video("a green dog") - alone).max() > 10
    shape = (1, 4, FRAMES, 8, 8)                  # the first video of a batch of 2 starts from the same noise ...
    assert torch.equal(torch.randn((2, *shape[1:]), generator=torch.Generator().manual_seed(0))[:1],
                       torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    assert np.abs(video([PROMPT, PROMPT])[0] - alone[0]).max() > 0   # ... and still differs: mask_feature


def test_output_types_as_diffusers(folder, pipe):
    ref = reference_pipeline(folder)
    for output_type, layout in (("np", (1, FRAMES, 64, 64, 3)), ("pt", (1, FRAMES, 3, 64, 64))):
        exp = ref(PROMPT, video_length=FRAMES, generator=torch.Generator().manual_seed(0), output_type=output_type,
                  clean_caption=False, **SIZE).frames
        got = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type=output_type, progress=False, **SIZE)
        exp, got = torch.as_tensor(np.asarray(exp)), torch.as_tensor(np.asarray(got))
        assert got.shape == exp.shape == layout
        assert_parity(got.float(), exp.float(), tol=2 / 255, what=f"{output_type} frames")


def test_prompt_embeds_skip_the_text_stage(pipe):
    """encode_prompt once, then the same video from its PromptEmbeds (the mask_feature rule applies to them too)."""
    e = pipe.encode_prompt(PROMPT)
    assert e.cond.shape == e.uncond.shape == (1, 120, 32) and int(e.cond_mask.sum()) < 120
    kw = dict(generator=torch.Generator().manual_seed(0), output_type="latent", progress=False, **SIZE)
    a = pipe(PROMPT, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    assert torch.equal(pipe(prompt_embeds=e, **kw), a)


def test_t5_is_staged_and_the_run_is_recorded(pipe):
    assert pipe.text.module is None                                   # not loaded by from_pretrained
    pipe(PROMPT, generator=torch.Generator().manual_seed(0), progress=False, **SIZE)
    assert pipe.text.module is None                                   # loaded for the text stage, freed after it
    stats = pipe.last_run_stats
    assert stats["denoise"]["size"] == f"{FRAMES}x64x64" and stats["decode"]["frames"] == FRAMES
    assert all(stats[s]["seconds"] >= 0 for s in ("text", "denoise", "decode"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_frames=5), "makes 16 frames"), (dict(height=60), "multiples of 16"),
    (dict(decode_chunk_size=0), "decode_chunk_size"), (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(output_type="gif"), "output_type"),
])
def test_bad_arguments_are_refused_before_any_compute(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe(PROMPT, **{**SIZE, **kwargs})


def test_the_adapter_default_decode_is_per_frame(pipe):
    """VideoFamily.decode: frame i of the video = the 2-D VAE's image of latent frame i, whatever the chunk."""
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    frames = VideoFamily().decode(pipe.vae, latents, chunk=2)                       # (1, 3, F, 64, 64)
    assert frames.shape == (1, 3, 3, 64, 64) and type(LATTE).decode is VideoFamily.decode
    for i in range(3):
        assert_parity(frames[:, :, i], decode_latents(pipe.vae, latents[:, :, i]), tol=1e-5, what=f"frame {i}")


# ---------------------------------------------------------------------------------------------
# python -m minidit generate --model latte-1
# ---------------------------------------------------------------------------------------------

def test_cli_writes_the_gif_and_the_grid(folder, tmp_path, capsys):
    out, grid = tmp_path / "clip.gif", tmp_path / "grid.png"
    assert cli_main(["generate", "--model", "latte-1", "--weights", str(folder), "--prompt", PROMPT, "--steps", "2",
                     "--height", "64", "--width", "64", "--out", str(out), "--grid", str(grid)]) == 0
    assert f"wrote {out} ({FRAMES} frames, 64x64)" in capsys.readouterr().out
    gif = Image.open(out)
    assert gif.n_frames == FRAMES and gif.size == (64, 64)
    assert Image.open(grid).size == (4 * 64, 4 * 64)
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(out))]
    assert np.abs(frames[0].astype(int) - np.asarray(Image.open(grid))[:64, :64]).mean() < 8   # GIF: palette rounding


@pytest.mark.parametrize("argv,message", [
    (["--frames", "8"], "--frames 8: latte-1 makes 16 or 1 frames"),
    (["--fps", "0"], "fps"),
    (["--grid", "grid.txt"], "--grid"),
    (["--out", "clip.mp4"], "--out"),
])
def test_cli_refuses_before_reading_weights(tmp_path, capsys, argv, message):
    """--weights does not even exist: the options are refused first."""
    assert cli_main(["generate", "--model", "latte-1", "--weights", str(tmp_path / "nothing"), "--prompt", "x",
                     "--out", str(tmp_path / "clip.gif"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err, err
