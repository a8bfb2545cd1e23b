"""The Open-Sora pipelines (`minidit/pipelines/opensora.py`) against the official sampling loops.

No Open-Sora package exists to import: the oracle is the official loop written out from the official code
(tests/helpers/opensora.py: v1.0's IDDPM with `forward_with_cfg`, v1.2's `RFLOW.sample`), run on the same
tiny random model, the same T5 states (transformers' T5 and tokenizer, on the text the official script
sends: v1.0 the prompt as written, v1.2 with " aesthetic score: 6.5." appended and lower-cased) and the same
random stream. Then the decode (diffusers' VAE per frame for 1.0, the video VAE for 1.2), the staged T5,
refusals before any compute, and the command line."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from minidit.cli import main as cli_main
from minidit.errors import InputError
from minidit.pipelines.opensora import OPENSORA_12_SAMPLER, OpenSora1Pipeline, OpenSora12Pipeline
from minidit.stdit import STDiT, STDiTConfig
from minidit.stdit3 import STDiT3, STDiT3Config
from minidit.vae import VAEConfig
from minidit.vae_temporal import VAETemporalConfig, VideoAutoencoderPipeline, VideoAutoencoderPipelineConfig
from weights_loader import load_t5, load_t5_tokenizer

from helpers import FP32_OTHER_KERNEL, assert_parity, require
from helpers.opensora import official_iddpm_sample, official_rflow_sample
from helpers.weights import randomize

diffusers = require("diffusers")
from helpers.pixart import T5_WIDTH, tiny_t5_and_vae  # noqa: E402

torch.set_num_threads(1)
PROMPT = "A Red Cube on the Moon"
TOKENS = 48             # room for the prompt and the aesthetic suffix: nothing truncated
# Open-Sora 1.0: 16 frames of 8 x 8 latents (64 x 64 pixels with the tiny x8 VAE); width 144 = 2 heads of 72
# (the head size the loader reads the head count with)
STDIT = STDiTConfig(input_size=(16, 8, 8), hidden_size=144, depth=2, num_heads=2, caption_channels=T5_WIDTH,
                    model_max_length=TOKENS, space_scale=0.5, time_scale=1.0)
STDIT3 = STDiT3Config(hidden_size=48, depth=2, num_heads=4, caption_channels=T5_WIDTH, model_max_length=TOKENS)
VIDEO_VAE = VideoAutoencoderPipelineConfig(                 # the tiny x2 video VAE of tests/test_vae_temporal.py
    vae_2d=VAEConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, norm_num_groups=4, scaling_factor=0.18215),
    vae_temporal=VAETemporalConfig(filters=8, num_res_blocks=1, channel_multipliers=(1, 2, 2, 4),
                                   temporal_downsample=(False, True, True), num_groups=4))


def big_captions(name: str, others: float = 0.15) -> float:
    return 0.5 if "y_embedder" in name or "scale_shift_table" in name else others


def conditioned_chain(name: str) -> float:
    """big_captions with the other weights at 0.05 (not 0.15): 10 guided IDDPM steps of the random STDiT stay a
    well-conditioned computation. At 0.15 the latents reached 7e11 and the official loop itself moved by 7e-4 of
    that between float32 and float64, more than the parity bound; at 0.05 (latents ~2e3) by 3e-6."""
    return big_captions(name, others=0.05)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A folder as the user downloads it for Open-Sora 1.0 (the .pth, t5-v1_1-xxl/, sd-vae-ft-ema/) + the oracle's
    T5 and VAE (the transformers / diffusers objects)."""
    folder, spiece = tmp_path_factory.mktemp("opensora"), tmp_path_factory.mktemp("spm")
    tokenizer, t5, vae = tiny_t5_and_vae(spiece, 0.18215)
    t5.save_pretrained(folder / "t5-v1_1-xxl")
    tokenizer.save_pretrained(folder / "t5-v1_1-xxl")
    shutil.copy(spiece / "spiece.model", folder / "t5-v1_1-xxl" / "spiece.model")
    vae.save_pretrained(folder / "sd-vae-ft-ema")
    stdit = randomize(STDiT(STDIT), seed=1, scale=conditioned_chain).eval()
    sd = dict(stdit.state_dict())
    sd["pos_embed"], sd["pos_embed_temporal"] = stdit.pos_embed(4, 4), stdit.pos_embed_temporal(16)
    torch.save(sd, folder / "OpenSora-v1-tiny-16x64x64.pth")
    return folder, tokenizer, t5, vae.eval(), stdit


def official_states(tokenizer, t5, text):
    """The official T5 stage: padded to the token count, truncated, with the mask."""
    tok = tokenizer([text], max_length=TOKENS, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        return t5(tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state, tok.attention_mask


# --------------------------------------------------------------------------------------------
# Open-Sora 1.0
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipe1(parts):
    return OpenSora1Pipeline.from_pretrained(parts[0])


def test_opensora_1_matches_the_official_iddpm_loop_and_decode(parts, pipe1):
    _, tokenizer, t5, vae, stdit = parts
    y, mask = official_states(tokenizer, t5, PROMPT)                           # the prompt as written
    null = stdit.y_embedder.y_embedding[None]
    steps = 10
    g = torch.Generator().manual_seed(0)
    z = torch.randn((1, 4, 16, 8, 8), generator=g)
    with torch.no_grad():
        expected = official_iddpm_sample(lambda x2, t2: stdit(x2, t2, torch.cat([y, null]), torch.cat([mask, mask])),
                                         z, steps, 7.0, g)
    kw = dict(num_inference_steps=steps, progress=False)
    got = pipe1(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kw)
    assert got.shape == (1, 4, 16, 8, 8)
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what="10 guided IDDPM steps vs the official loop")
    assert pipe1.text.module is None                                           # T5 freed after the text stage
    video = pipe1(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **kw)  # (1, F, 3, H, W)
    with torch.no_grad():
        frames = torch.stack([vae.decode(got[:, :, i] / 0.18215).sample for i in range(16)], dim=1)
    assert video.shape == (1, 16, 3, 64, 64)
    assert_parity(video, (frames / 2 + 0.5).clamp(0, 1), tol=FP32_OTHER_KERNEL, what="diffusers' VAE on every frame")
    # negative control: the lower-cased prompt (what the 1.2 / Latte pipelines send) is another video
    other = pipe1(PROMPT.lower(), generator=torch.Generator().manual_seed(0), output_type="latent", **kw)
    assert (other - got).abs().max() > 1e-3


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_frames=8), "makes 16 frames"), (dict(height=60), "multiples of 16"),
    (dict(negative_prompt="blurry"), "null caption"), (dict(guidance_scale=-1.0), "guidance_scale"),
])
def test_opensora_1_refuses_before_any_compute(pipe1, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe1(PROMPT, progress=False, **kwargs)
    assert pipe1.text.module is None


def test_opensora_1_folder_errors(parts, tmp_path):
    from weights_loader import CheckpointError
    folder = parts[0]
    with pytest.raises(CheckpointError, match="sd-vae-ft-ema"):
        shutil.copy(folder / "OpenSora-v1-tiny-16x64x64.pth", tmp_path / "x.pth")
        OpenSora1Pipeline.from_pretrained(tmp_path)
    shutil.copy(folder / "OpenSora-v1-tiny-16x64x64.pth", tmp_path / "y.pth")
    with pytest.raises(CheckpointError, match="2 .pth files"):
        OpenSora1Pipeline.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------
# Open-Sora 1.2
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipe12(parts):
    folder = parts[0]
    stdit3 = randomize(STDiT3(STDIT3), seed=2, scale=big_captions).eval()
    vae = randomize(VideoAutoencoderPipeline(VIDEO_VAE), seed=5, scale=0.2).eval()
    calls = []

    def t5_loader():
        calls.append(1)
        return load_t5(folder / "t5-v1_1-xxl")
    pipe = OpenSora12Pipeline(stdit3, vae, load_t5_tokenizer(folder / "t5-v1_1-xxl"), OPENSORA_12_SAMPLER,
                              text_encoder_loader=t5_loader, keep_text_encoder=False)
    return pipe, calls


@pytest.mark.parametrize("frames", [17, 1])
def test_opensora_12_matches_the_official_rflow_loop_and_decode(parts, pipe12, frames):
    _, tokenizer, t5, _, _ = parts
    pipe, calls = pipe12
    stdit3, vae = pipe.transformer, pipe.vae
    y, mask = official_states(tokenizer, t5, (PROMPT + " aesthetic score: 6.5.").lower())
    null = stdit3.y_embedder.y_embedding[None]
    H, W, steps, fps = 16, 24, 4, 24 if frames > 1 else 120
    T = vae.latent_frames(frames)
    g = torch.Generator().manual_seed(0)
    z = torch.randn((1, 4, T, H // 2, W // 2), generator=g)

    def official_model(z2, t2):                                             # x0 - eps, not negated
        return stdit3(z2, t2, torch.cat([y, null]), torch.cat([mask, mask]), fps=torch.tensor([float(fps)] * 2),
                      height=torch.tensor([float(H)] * 2), width=torch.tensor([float(W)] * 2))
    with torch.no_grad():
        expected, _ = official_rflow_sample(official_model, z, steps, H, W, frames, guidance_scale=7.0)
    kw = dict(num_frames=frames, height=H, width=W, num_inference_steps=steps, progress=False)
    n = len(calls)
    got = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kw)
    assert len(calls) == n + 1 and pipe.text.module is None                 # T5 loaded for the text stage only
    assert got.shape == (1, 4, T, 8, 12)
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what=f"{steps} guided rflow steps vs RFLOW.sample")
    video = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **kw)
    with torch.no_grad():
        frames_ref = vae.decode(got, num_frames=frames)                 # (1, 3, F, H, W)
    assert video.shape == (1, frames, 3, H, W)
    assert_parity(video, (frames_ref.transpose(1, 2) / 2 + 0.5).clamp(0, 1), tol=FP32_OTHER_KERNEL,
                  what="the video VAE")


def test_opensora_12_aesthetic_suffix_reaches_t5(pipe12):
    pipe, _ = pipe12
    a = pipe.encode_prompt(PROMPT)
    assert a.uncond is None                                                # the null caption replaces it
    plain = OpenSora12Pipeline(pipe.transformer, pipe.vae, pipe.tokenizer, text_encoder_loader=pipe.text.loader,
                               keep_text_encoder=False, aesthetic_score=None)
    b = plain.encode_prompt(PROMPT + " aesthetic score: 6.5.")
    assert torch.equal(a.cond, b.cond) and torch.equal(a.cond_mask, b.cond_mask)
    assert not torch.equal(plain.encode_prompt(PROMPT).cond_mask, a.cond_mask)   # the suffix adds tokens
    assert pipe.family.prompts(["x aesthetic score: 5.0."]) == ["x aesthetic score: 5.0."]   # not appended twice


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_frames=16), "17 and more"), (dict(num_frames=2), "17 and more"), (dict(height=15), "multiples of 2"),
    (dict(negative_prompt="blurry"), "null caption"), (dict(output_type="gif"), "output_type"),
])
def test_opensora_12_refuses_before_any_compute(pipe12, kwargs, message):
    pipe, calls = pipe12
    n = len(calls)
    with pytest.raises(InputError, match=message):
        pipe(PROMPT, progress=False, **{"height": 16, "width": 16, **kwargs})
    assert len(calls) == n                                                  # T5 never loaded


# --------------------------------------------------------------------------------------------
# python -m minidit generate --model opensora-1.0-256 | opensora-1.2
# --------------------------------------------------------------------------------------------

def test_cli_opensora_1_writes_the_gif(parts, tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert cli_main(["generate", "--model", "opensora-1.0-256", "--weights", str(parts[0]), "--prompt", PROMPT,
                     "--steps", "2", "--out", str(out)]) == 0
    assert f"wrote {out} (16 frames, 64x64)" in capsys.readouterr().out
    gif = Image.open(out)
    assert gif.n_frames == 16 and gif.size == (64, 64)
    assert np.asarray(gif.convert("RGB")).std() > 1                           # a picture, not a constant


@pytest.mark.parametrize("model,argv,message", [
    ("opensora-1.0-256", ["--frames", "8"], "--frames 8: opensora-1.0-256 makes 16 frames"),
    ("opensora-1.2", ["--frames", "16"], "--frames 16: opensora-1.2 makes 1 or 17 and more frames"),
    ("opensora-1.2", ["--negative-prompt", "blurry"], "null caption"),
    ("opensora-1.0-512", ["--fps", "0"], "fps"),
])
def test_cli_refuses_before_reading_weights(tmp_path, capsys, model, argv, message):
    assert cli_main(["generate", "--model", model, "--weights", str(tmp_path / "nothing"), "--prompt", "x",
                     "--out", str(tmp_path / "clip.gif"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err, err


def test_cli_without_weights_says_how_to_get_them(capsys):
    assert cli_main(["generate", "--model", "opensora-1.2", "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    for repo in ("hpcai-tech/OpenSora-STDiT-v3", "hpcai-tech/OpenSora-VAE-v1.2", "DeepFloyd/t5-v1_1-xxl"):
        assert f"huggingface-cli download {repo} --local-dir opensora-1.2/" in err
    assert cli_main(["generate", "--model", "opensora-1.0-512", "--prompt", "x"]) == 2
    assert "hpcai-tech/Open-Sora OpenSora-v1-HQ-16x512x512.pth" in capsys.readouterr().err
