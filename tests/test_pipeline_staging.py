"""keep_transformer=False in every pipeline that loads its transformer from files (PixArt, SD3, Hunyuan-DiT,
DiT; diffusers folders and original files): the transformer is a meta skeleton until the denoising, loaded
then and freed before the VAE decodes, so it is in memory neither during the text stage nor the decode;
the image is exactly the default's (the same weights, the same computation), also with offload=True and
on a second call (loaded again). The text encoders are kept (their own staging is tested with each
pipeline), so that each run frees only the transformer. Watched with weak references to every module the loader returns: a
local variable or a closure that still held one would keep it alive into the decode.

The config readers that make the skeleton without reading weights (`read_shapes`, `read_*_config`)
are checked against the loaders' own config of the same file (the loaders read every weight)."""
import weakref
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from minidit.dit import DiT
from minidit.errors import InputError
from minidit.mmdit import MMDiT, official_size
from minidit.pipelines.dit import DiTPipeline
from minidit.pipelines.hunyuan import HunyuanPipeline
from minidit.pipelines.pixart import PixArtPipeline, PixArtSampling
from minidit.pipelines.sd3 import OFFICIAL_SAMPLING, SD3Pipeline
from minidit.pipelines.sd3_text import SD3TextEncoders
from weights_loader import CheckpointError, load_dit, load_hunyuan, load_mmdit, load_pixart, load_vae
from weights_loader.dit import read_dit_config
from weights_loader.header import read_shapes
from weights_loader.hunyuan import read_hunyuan_config
from weights_loader.io import build_on_meta
from weights_loader.mmdit import read_mmdit_config
from weights_loader.pixart import pixart_from_diffusers, pixart_skeleton

from helpers import require

require("diffusers")
from helpers.hunyuan import build_hunyuan_folder, write_original_layout  # noqa: E402
from helpers.pixart import build_pipeline_folder  # noqa: E402
from helpers.sd3 import build_sd3_pipeline  # noqa: E402

PROMPT = "a red cube on the moon"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from test_pipeline_dit import make_folder
    work = tmp_path_factory.mktemp("staging_work")
    sd3 = tmp_path_factory.mktemp("staging_sd3")
    build_sd3_pipeline(sd3, work)
    return {"pixart": build_pipeline_folder(tmp_path_factory.mktemp("staging_pixart"), "sigma", work / "spm"),
            "sd3": sd3, "hunyuan": build_hunyuan_folder(tmp_path_factory.mktemp("staging_hy"), True, work),
            "dit": make_folder(tmp_path_factory.mktemp("staging_dit"))}


def watch(pipe, monkeypatch, text=None, name="encode"):
    """Record ("load" | "text" | "decode", transformers alive, pipe.denoiser.module is None) at each loader
    call, text-stage call (`text`.`name`) and VAE decode; "alive" counts the loaded modules not yet freed
    (no gc.collect() here: `Staged.free` runs one when it frees, so what is still alive is still referenced)."""
    events, refs, loader, decode = [], [], pipe.denoiser.loader, pipe.vae.decode

    def alive():
        return sum(ref() is not None for ref in refs)

    def record(what):
        events.append((what, alive(), pipe.denoiser.module is None))

    def load():
        record("load")
        module = loader()
        refs.append(weakref.ref(module))
        return module
    monkeypatch.setattr(pipe.denoiser, "loader", load)
    monkeypatch.setattr(pipe.vae, "decode", lambda *a, **k: record("decode") or decode(*a, **k))
    if text is not None:
        encode = getattr(text, name)
        monkeypatch.setattr(text, name, lambda *a, **k: record("text") or encode(*a, **k))
    return events


def check_staged(make, call, monkeypatch, what, text=None, name="encode", windowed=None):
    """make(**kw) -> a pipeline; call(pipe) -> its image. The default and keep_transformer=False (twice,
    and with offload=True) give the same image; the staged transformer lives for the denoising only.
    `windowed(pipe)`: one more call, with sliding windows (whose network must not outlive the stage)."""
    default = make()
    calls = [call, call] + ([windowed] if windowed else [])
    expected = [c(default) for c in calls]
    lazy = make(keep_transformer=False)
    assert lazy.denoiser.module is None and all(p.is_meta for p in lazy.transformer.parameters())   # the skeleton
    events = watch(lazy, monkeypatch, text(lazy) if text else None, name)
    for run, (c, image) in enumerate(zip(calls, expected)):
        assert torch.equal(c(lazy), image), f"{what}: keep_transformer=False, call {run + 1}"
    stage = ["text", "load", "decode"] if text else ["load", "decode"]
    assert [e[0] for e in events] == stage * len(calls), events
    assert all(alive == 0 and freed for _, alive, freed in events), events     # loads are counted before the load
    assert lazy.denoiser.module is None and lazy.last_run_stats["denoise"]["transformer_load_s"] >= 0

    offloaded = make(keep_transformer=False, offload=True, device="cpu")
    assert torch.equal(call(offloaded), expected[0]), f"{what}: keep_transformer=False, offload=True"
    moves = [m for m in offloaded.moves if m[0] == offloaded.denoiser.what]
    assert moves == [(offloaded.denoiser.what, "cpu")], offloaded.moves     # to the device, then freed: not back
    assert offloaded.denoiser.module is None
    with pytest.raises(InputError, match="keep_transformer must be True or False"):
        make(keep_transformer="no")


def test_pixart_from_pretrained_and_from_original(folders, monkeypatch, tmp_path):
    folder = folders["pixart"]
    kw = dict(height=256, width=256, num_inference_steps=2, progress=False, output_type="pt")
    check_staged(lambda **k: PixArtPipeline.from_pretrained(folder, keep_text_encoder=True, **k),
                 lambda p: p(PROMPT, generator=torch.Generator().manual_seed(1), **kw), monkeypatch, "PixArt folder",
                 text=lambda p: p, name="encode_prompt",
                 windowed=lambda p: p(PROMPT, generator=torch.Generator().manual_seed(1), window=128, **kw))
    # the original .pth with its null caption (the official sampling's uncond): kept on the skeleton
    config = load_pixart(folder).config
    sd = pixart_from_diffusers(load_file_sd(folder / "transformer"), config.depth)
    sd["y_embedder.y_embedding"] = torch.randn(config.model_max_length, config.caption_channels,
                                               generator=torch.Generator().manual_seed(5))
    torch.save({"state_dict": sd}, tmp_path / "PixArt-tiny.pth")
    skeleton = pixart_skeleton(tmp_path / "PixArt-tiny.pth", config)
    assert torch.equal(skeleton.y_embedder.null_caption(), sd["y_embedder.y_embedding"])
    original = dict(tokenizer=folder / "tokenizer", config=config, sampling=PixArtSampling(uncond="null_caption"),
                    keep_text_encoder=True)
    check_staged(lambda **k: PixArtPipeline.from_original(tmp_path / "PixArt-tiny.pth", folder / "text_encoder",
                                                          folder / "vae", **original, **k),
                 lambda p: p(PROMPT, generator=torch.Generator().manual_seed(1), use_resolution_binning=False,
                             **{**kw, "height": 64, "width": 96}),
                 monkeypatch, "PixArt .pth", text=lambda p: p, name="encode_prompt")


def load_file_sd(folder):
    from safetensors.torch import load_file
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def test_sd3_from_pretrained_and_from_single_file(folders, monkeypatch, tmp_path):
    folder = folders["sd3"]
    kw = dict(height=64, width=48, num_inference_steps=2, guidance_scale=5.0, output_type="pt", progress=False)
    check_staged(lambda **k: SD3Pipeline.from_pretrained(folder, keep_text_encoders=True, **k),
                 lambda p: p(PROMPT, generator=torch.Generator().manual_seed(0), **kw), monkeypatch, "SD3 folder",
                 text=lambda p: p.text,
                 windowed=lambda p: p(PROMPT, generator=torch.Generator().manual_seed(0), window=32, **kw))
    transformer, vae = load_mmdit(folder), load_vae(folder)
    single = tmp_path / "sd3_tiny.safetensors"
    sd = {f"model.diffusion_model.{k}": v for k, v in transformer.state_dict().items()}
    save_file({**sd, **{f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}}, single)

    def make(**k):
        text = SD3TextEncoders.from_pretrained(folder, keep=True, context_width=transformer.config.context_dim)
        return SD3Pipeline.from_single_file(single, text=text, transformer_config=transformer.config,
                                            vae_config=vae.config, sampling=OFFICIAL_SAMPLING["sd3.5-medium"], **k)
    check_staged(make, lambda p: p(PROMPT, generator=torch.Generator().manual_seed(0), **kw), monkeypatch,
                 "SD3 single file", text=lambda p: p.text)


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_hunyuan_diffusers_and_original_layout(folders, monkeypatch, tmp_path, layout):
    folder = folders["hunyuan"] if layout == "diffusers" else write_original_layout(folders["hunyuan"], tmp_path)
    kw = dict(height=64, width=48, num_inference_steps=2, guidance_scale=5.0, output_type="pt",
              use_resolution_binning=False, progress=False)
    check_staged(lambda **k: HunyuanPipeline.from_pretrained(folder, keep_text_encoders=True, **k),
                 lambda p: p(PROMPT, generator=torch.Generator().manual_seed(0), **kw), monkeypatch,
                 f"Hunyuan-DiT {layout}", text=lambda p: p.text,
                 windowed=lambda p: p(PROMPT, generator=torch.Generator().manual_seed(0), window=32, **kw))


def test_dit_from_pretrained_and_from_original(folders, monkeypatch, tmp_path):
    folder = folders["dit"]
    kw = dict(num_inference_steps=3, guidance_scale=4.0, output_type="pt", progress=False)
    check_staged(lambda **k: DiTPipeline.from_pretrained(folder, **k),
                 lambda p: p([207, 1], generator=torch.Generator().manual_seed(0), **kw), monkeypatch, "DiT folder")
    model = load_dit(folder)
    torch.save({"ema": model.state_dict()}, tmp_path / "DiT-tiny.pt")
    check_staged(lambda **k: DiTPipeline.from_original(tmp_path / "DiT-tiny.pt", folder / "vae", config=model.config, **k),
                 lambda p: p([3], generator=torch.Generator().manual_seed(0), **kw), monkeypatch, "DiT .pt")


def test_a_loaded_transformer_must_match_the_skeleton(folders):
    """The loader's module must have the config the pipeline was built for (a file changed on disk)."""
    model, vae = load_dit(folders["dit"]), load_vae(folders["dit"])
    other = build_on_meta(DiT, replace(model.config, depth=1))
    pipe = DiTPipeline(other, vae, transformer_loader=lambda: model, keep_transformer=False)
    with pytest.raises(CheckpointError, match="file changed since the pipeline was made"):
        pipe([1], num_inference_steps=1, progress=False)


# --------------------------------------------------------------------------------------------
# The config readers: no weights read, the loaders' config
# --------------------------------------------------------------------------------------------

def test_read_shapes_is_meta_except_the_named_values(tmp_path):
    sd = {"module.pos_embed": torch.randn(1, 4, 8), "module.w": torch.randn(3, 5).half(), "b": torch.arange(4)}
    save_file(sd, tmp_path / "w.safetensors")
    torch.save({"state_dict": sd}, tmp_path / "zip.pt")
    torch.save({"state_dict": sd}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("w.safetensors", "zip.pt", "legacy.pt"):
        got = read_shapes(tmp_path / name, values=("pos_embed",))
        assert sorted(got) == sorted(sd), name
        assert torch.equal(got["module.pos_embed"], sd["module.pos_embed"]), name
        for key in ("module.w", "b"):
            assert got[key].is_meta and got[key].shape == sd[key].shape and got[key].dtype == sd[key].dtype, name
    assert sorted(read_shapes(tmp_path / "w.safetensors", only_prefix="module.")) == ["module.pos_embed", "module.w"]
    with pytest.raises(CheckpointError, match="does not exist"):
        read_shapes(tmp_path / "missing.pt")


def test_config_readers_give_the_loaders_config(folders, tmp_path):
    """read_*_config(source) == load_*(source).config, for diffusers folders and original files."""
    assert read_dit_config(folders["dit"], {"timestep_freq_shift": 1}) == \
        load_dit(folders["dit"], overrides={"timestep_freq_shift": 1}).config
    assert read_hunyuan_config(folders["hunyuan"]) == load_hunyuan(folders["hunyuan"]).config
    t2i = write_original_layout(folders["hunyuan"], tmp_path / "ckpts")
    assert read_hunyuan_config(t2i) == load_hunyuan(t2i).config
    assert read_mmdit_config(folders["sd3"]) == load_mmdit(folders["sd3"]).config
    # an official-design MM-DiT (width 64 x depth: its config can be read off the file), with QK-norm and MMDiT-X
    config = official_size(2, in_channels=4, out_channels=4, adm_in_channels=8, context_dim=16, pos_embed_max_size=8,
                           qk_norm="rms", x_block_self_attn_layers=(0,))
    torch.manual_seed(0)
    net = MMDiT(config)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in net.state_dict().items()},
              tmp_path / "sd3_official.safetensors")
    assert read_mmdit_config(tmp_path / "sd3_official.safetensors") == config == \
        load_mmdit(tmp_path / "sd3_official.safetensors").config
    # a tiny DiT's size is none of the paper's: both refuse to guess its head count, the same way
    torch.save(load_dit(folders["dit"]).state_dict(), tmp_path / "DiT-tiny.pt")
    for read in (read_dit_config, load_dit):
        with pytest.raises(CheckpointError, match="not one of the paper's DiT sizes"):
            read(tmp_path / "DiT-tiny.pt")
