"""Bad inputs, tried as a new user would: each row is an input, the error type it must raise and a
fragment of the message (what was wrong, where, what to do). Nothing here may end in a traceback of
someone else's code or in a silent substitution (a value swapped for a default).

Pipelines are tiny minidit models built here (no download, no oracle). For the argument rows their
networks refuse to run (`no_compute`): a row whose check came after a network call fails with
ComputeSpent instead of the expected error, so every row also shows the refusal comes before any
compute. Files are written into one temporary folder per module; the suite runs in seconds.

The count of rows is printed by `test_row_count` and quoted in the README.
"""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import save_file

from minidit import cli
from minidit.dit import DiT, DiTConfig
from minidit.errors import InputError, NonFiniteError
from minidit.hunyuan import HunyuanConfig, HunyuanDiT
from minidit.mmdit import MMDiT, MMDiTConfig
from minidit.pipelines.checks import check_guidance, check_size, check_steps
from minidit.pipelines.dit import DiTPipeline, class_ids
from minidit.pipelines.hunyuan import HunyuanPipeline, official_sampling
from minidit.pipelines.hunyuan_text import HunyuanTextEncoders
from minidit.pipelines.pixart import PixArtPipeline
from minidit.pipelines.sd3 import SD3Pipeline, SD3Sampling
from minidit.pipelines.sd3_text import SD3TextEncoders
from minidit.pipelines.toy import TOY, sample_digits, sample_flow_digits, save_grid
from minidit.pixart import PixArt, PixArtConfig
from minidit.samplers import Sampler
from minidit.text.bert import BertConfig, BertModel
from minidit.text.clip import CLIPTextConfig, CLIPTextModel
from minidit.text.t5 import T5Config, T5EncoderModel
from minidit.text.tokenizers import CLIP_SPECIALS, CLIPTokenizer, WordPieceTokenizer, bytes_to_unicode
from minidit.vae import AutoencoderKL, VAEConfig
from weights_loader import (CheckpointError, ConfigError, MissingPartError, PipelineFolder, load_clip_tokenizer,
                            load_dit, load_hunyuan, load_mmdit, load_pixart, load_t5, load_t5_tokenizer, load_vae)
from weights_loader.io import read_state_dict

from helpers.text import train_spiece
from helpers.weights import randomize

NAN = float("nan")
INF = float("inf")

# --------------------------------------------------------------------------------------------
# Tiny models (built once per module)
# --------------------------------------------------------------------------------------------

DIT = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)
VAE = VAEConfig(ch=8, ch_mult=(1, 1, 1, 1), num_res_blocks=1, z_channels=4, norm_num_groups=8)
T5 = T5Config(vocab_size=600, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
T5_SD3 = T5Config(vocab_size=600, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2)    # >= the CLIPs' 16 + 16
PIXART = PixArtConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2,
                      caption_channels=16, model_max_length=8)
CLIP_VOCAB = len(bytes_to_unicode()) * 2 + 2
CLIP_L = CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, eos_token_id=CLIP_VOCAB - 1, projection_dim=None)
CLIP_G = CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, hidden_act="gelu", eos_token_id=CLIP_VOCAB - 1, projection_dim=16)
MMDIT = MMDiTConfig(patch_size=2, in_channels=4, depth=1, hidden_size=16, num_heads=2, adm_in_channels=32,
                    context_dim=32, out_channels=4, pos_embed_max_size=8)
# Hunyuan-DiT: BERT 12 wide (the transformer's text_states_dim), mT5 = the tiny T5 (16 wide); the text
# stack pads to 77 and 256 tokens, the lengths of the config's defaults
HUNYUAN = HunyuanConfig(patch_size=2, in_channels=4, hidden_size=16, depth=4, num_heads=2, mlp_ratio=2.0,
                        text_states_dim=12, text_states_dim_t5=16, pooled_dim=20)
BERT_VOCAB = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefghijklmnopqrstuvwxyz", "猫"])}
BERT = BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=24, max_position_embeddings=80)


class ComputeSpent(AssertionError):
    """A network ran although the call should have been refused first."""


def _refuse(module, *args):
    raise ComputeSpent(f"{type(module).__name__} ran before the bad input was refused")


def no_compute(*modules):
    for m in modules:
        m.register_forward_pre_hook(_refuse)


def poison(module):
    """Every parameter NaN (a damaged checkpoint)."""
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(NAN)
    return module


def clip_tokenizer(pad):
    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + list(CLIP_SPECIALS))}
    return CLIPTokenizer(vocab, [], pad)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bad_inputs")


@pytest.fixture(scope="module")
def spiece(work):
    return train_spiece(work / "spiece")


def make_dit():
    torch.manual_seed(0)
    return DiTPipeline(randomize(DiT(DIT), 0), randomize(AutoencoderKL(VAE), 1, 0.05))


def make_pixart(spiece):
    torch.manual_seed(0)
    return PixArtPipeline(randomize(PixArt(PIXART), 0), randomize(AutoencoderKL(VAE), 1, 0.05),
                          load_t5_tokenizer(spiece), randomize(T5EncoderModel(T5), 2), variant="sigma")


def make_sd3(spiece):
    torch.manual_seed(0)
    text = SD3TextEncoders(clip_l=randomize(CLIPTextModel(CLIP_L), 3), clip_g=randomize(CLIPTextModel(CLIP_G), 4),
                           t5=randomize(T5EncoderModel(T5_SD3), 5), tokenizer_l=clip_tokenizer(CLIP_SPECIALS[1]),
                           tokenizer_g=clip_tokenizer("!"), tokenizer_t5=load_t5_tokenizer(spiece), context_width=32)
    sampling = SD3Sampling(Sampler("euler", prediction_type="flow", spacing="flow", shift=3.0), steps=2, guidance=4.0)
    return SD3Pipeline(randomize(MMDiT(MMDIT), 6), randomize(AutoencoderKL(VAE), 1, 0.05), text, sampling)


def make_hunyuan(spiece):
    torch.manual_seed(0)
    text = HunyuanTextEncoders(WordPieceTokenizer(BERT_VOCAB), load_t5_tokenizer(spiece),
                               randomize(BertModel(BERT), 7), randomize(T5EncoderModel(T5), 2))
    return HunyuanPipeline(randomize(HunyuanDiT(HUNYUAN), 8), randomize(AutoencoderKL(VAE), 1, 0.05), text,
                           official_sampling(False))


@pytest.fixture(scope="module")
def dit():
    pipe = make_dit()
    no_compute(pipe.transformer, pipe.vae)
    return pipe


@pytest.fixture(scope="module")
def pixart(spiece):
    pipe = make_pixart(spiece)
    no_compute(pipe.transformer, pipe.vae, pipe.text.module)
    return pipe


@pytest.fixture(scope="module")
def sd3(spiece):
    pipe = make_sd3(spiece)
    no_compute(pipe.transformer, pipe.vae, pipe.text.clip_l.module, pipe.text.clip_g.module, pipe.text.t5.module)
    return pipe


@pytest.fixture(scope="module")
def hunyuan(spiece):
    pipe = make_hunyuan(spiece)
    no_compute(pipe.transformer, pipe.vae, pipe.text.bert.module, pipe.text.mt5.module)
    return pipe


def expect(error, fragment, fn, *args, **kwargs):
    with pytest.raises(error) as e:
        fn(*args, **kwargs)
    assert fragment in str(e.value), f"{fragment!r} not in: {e.value}"
    assert not isinstance(e.value, ComputeSpent)
    return e.value


ROWS = {}          # section -> rows, counted by test_row_count


def rows(section, table):
    ROWS[section] = table
    return table


# --------------------------------------------------------------------------------------------
# DiT pipeline
# --------------------------------------------------------------------------------------------

DIT_ROWS = rows("DiT pipeline", [
    (dict(num_inference_steps=0), InputError, "num_inference_steps must be between 1 and 1000, got 0"),
    (dict(num_inference_steps=-5), InputError, "got -5"),
    (dict(num_inference_steps=2.5), InputError, "num_inference_steps must be an integer, got 2.5"),
    (dict(num_inference_steps=True), InputError, "must be an integer, got True"),
    (dict(num_inference_steps="10"), InputError, "must be an integer, got '10'"),
    (dict(num_inference_steps=None), InputError, "must be an integer, got None"),
    (dict(num_inference_steps=1001), InputError, "between 1 and 1000, got 1001"),
    (dict(guidance_scale=NAN), InputError, "guidance_scale must be a finite number, got nan"),
    (dict(guidance_scale=INF), InputError, "finite number, got inf"),
    (dict(guidance_scale=-INF), InputError, "finite number, got -inf"),
    (dict(guidance_scale=-1.0), InputError, "guidance_scale must be >= 0, got -1.0"),
    (dict(guidance_scale="4"), InputError, "guidance_scale must be a number, got '4'"),
    (dict(guidance_scale=True), InputError, "must be a number, got True"),
    (dict(guidance_scale=None), InputError, "must be a number, got None"),
    (dict(class_labels=True), InputError, "not True (bool)"),
    (dict(class_labels=1.7), InputError, "class_labels must be a class id"),
    (dict(class_labels=[1.0]), InputError, "not 1.0 (float)"),
    (dict(class_labels=[True]), InputError, "not True (bool)"),
    (dict(class_labels=[np.bool_(True)]), InputError, "True_ (bool)"),
    (dict(class_labels=10), InputError, "class id 10 is out of range: this model has classes 0..9"),
    (dict(class_labels=-1), InputError, "class id -1 is out of range"),
    (dict(class_labels="-3"), InputError, "class id -3 is out of range"),
    (dict(class_labels=[]), InputError, "class_labels is empty"),
    (dict(class_labels=None), InputError, "class_labels must be a class id"),
    (dict(class_labels={"a": 1}), InputError, "class_labels must be a class id"),
    (dict(class_labels=torch.tensor([0.5])), InputError, "not 0.5 (float)"),
    (dict(class_labels=torch.tensor([True])), InputError, "not True (bool)"),
    (dict(class_labels=["golden retriever"]), InputError, "this model has 10 classes: pass ids"),
    (dict(generator=np.random.default_rng(0)), InputError, "a NumPy generator cannot drive torch"),
    (dict(generator=5), InputError, "torch.Generator().manual_seed(seed)"),
    (dict(generator="seed"), InputError, "generator must be a torch.Generator or None"),
    (dict(output_type="png"), InputError, "output_type must be one of 'pil', 'np', 'pt', 'latent', not 'png'"),
    (dict(output_type=None), InputError, "not None"),
    (dict(output_type="PIL"), InputError, "not 'PIL'"),
    (dict(output_type=["pil"]), InputError, "not ['pil']"),
])


@pytest.mark.parametrize("kwargs,error,fragment", DIT_ROWS)
def test_dit_pipeline_refuses(dit, kwargs, error, fragment):
    kwargs = {"class_labels": [1], "num_inference_steps": 2, "progress": False, **kwargs}
    expect(error, fragment, dit, **kwargs)


def test_class_names_are_checked_against_imagenet():
    expect(InputError, "is not an ImageNet class name", class_ids, ["golden retreiver!"], 1000)
    expect(InputError, "Did you mean", class_ids, ["golden retreiver"], 1000)


# --------------------------------------------------------------------------------------------
# PixArt pipeline
# --------------------------------------------------------------------------------------------

PIXART_ROWS = rows("PixArt pipeline", [
    (dict(prompt=None), InputError, "pass a prompt (or prompt_embeds from encode_prompt)"),
    (dict(prompt=123), InputError, "prompt must be a string or a list of strings, got 123 (int)"),
    (dict(prompt=[1, 2]), InputError, "entry 0 is 1 (int)"),
    (dict(prompt=["a cat", None]), InputError, "entry 1 is None"),
    (dict(prompt=[]), InputError, "prompt is an empty list"),
    (dict(prompt=b"a cat"), InputError, "got b'a cat' (bytes)"),
    (dict(negative_prompt=5), InputError, "negative_prompt must be a string or a list of strings, got 5"),
    (dict(negative_prompt=["a", "b"]), InputError, "2 negative prompts for 1 prompts"),
    (dict(negative_prompt=[1]), InputError, "negative_prompt must be a string or a list of strings: entry 0"),
    (dict(num_images_per_prompt=0), InputError, "num_images_per_prompt must be at least 1, got 0"),
    (dict(num_images_per_prompt=-1), InputError, "at least 1, got -1"),
    (dict(num_images_per_prompt=1.5), InputError, "num_images_per_prompt must be an integer"),
    (dict(num_images_per_prompt=True), InputError, "must be an integer, got True"),
    (dict(max_sequence_length=0), InputError, "max_sequence_length must be at least 1, got 0"),
    (dict(max_sequence_length=-5), InputError, "at least 1, got -5"),
    (dict(max_sequence_length=2.5), InputError, "max_sequence_length must be an integer"),
    (dict(max_sequence_length=True), InputError, "must be an integer, got True"),
    (dict(num_inference_steps=0), InputError, "num_inference_steps must be between 1 and 1000, got 0"),
    (dict(num_inference_steps=2.5), InputError, "must be an integer, got 2.5"),
    (dict(num_inference_steps=-3), InputError, "got -3"),
    (dict(num_inference_steps=False), InputError, "got False"),
    (dict(guidance_scale=NAN), InputError, "guidance_scale must be a finite number, got nan"),
    (dict(guidance_scale=-1), InputError, "guidance_scale must be >= 0, got -1.0"),
    (dict(guidance_scale=INF), InputError, "got inf"),
    (dict(height=0), InputError, "height must be at least 1, got 0"),
    (dict(height=-64), InputError, "height must be at least 1, got -64"),
    (dict(width=-64, use_resolution_binning=True), InputError, "width must be at least 1, got -64"),
    (dict(height=2.5), InputError, "height must be an integer, got 2.5"),
    (dict(width="64"), InputError, "width must be an integer, got '64'"),
    (dict(height=True), InputError, "height must be an integer, got True"),
    (dict(height=60), InputError, "height and width must be multiples of 16"),
    (dict(generator=np.random.default_rng(0)), InputError, "a NumPy generator"),
    (dict(generator=0), InputError, "generator must be a torch.Generator or None, got 0 (int)"),
    (dict(output_type="jpg"), InputError, "output_type must be one of"),
    (dict(use_resolution_binning="yes"), InputError, "use_resolution_binning must be True or False"),
    (dict(decode_tiling="auto"), InputError, "decode_tiling must be True or False, got 'auto'"),
    (dict(prompt_embeds={"cond": 1}), InputError, "prompt_embeds must be the PromptEmbeds of encode_prompt"),
    (dict(use_resolution_binning=True), ValueError, "no aspect-ratio bins for a 64-px model"),
])


@pytest.mark.parametrize("kwargs,error,fragment", PIXART_ROWS)
def test_pixart_pipeline_refuses(pixart, kwargs, error, fragment):
    kwargs = {"prompt": "a cat", "num_inference_steps": 2, "use_resolution_binning": False, "progress": False,
              **kwargs}
    expect(error, fragment, pixart, **kwargs)


def test_pixart_negative_prompt_none_is_the_empty_string(spiece):
    """diffusers reads negative_prompt=None as no negative prompt, i.e. ""; so does minidit (not a TypeError)."""
    pipe = make_pixart(spiece)
    kw = dict(num_inference_steps=2, use_resolution_binning=False, progress=False, output_type="latent")
    a = pipe("a cat", negative_prompt=None, generator=torch.Generator().manual_seed(0), **kw)
    b = pipe("a cat", negative_prompt="", generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# SD3 pipeline
# --------------------------------------------------------------------------------------------

SD3_ROWS = rows("SD3 pipeline", [
    (dict(prompt=None), InputError, "prompt must be a string or a list of strings, got None"),
    (dict(prompt=123), InputError, "got 123 (int)"),
    (dict(prompt=["a", 3]), InputError, "entry 1 is 3 (int)"),
    (dict(negative_prompt=["a", "b"]), InputError, "2 negative prompts for 1 prompts"),
    (dict(num_inference_steps=0), InputError, "num_inference_steps must be between 1 and 1000, got 0"),
    (dict(num_inference_steps=2.5), InputError, "must be an integer, got 2.5"),
    (dict(guidance_scale=NAN), InputError, "guidance_scale must be a finite number"),
    (dict(guidance_scale=-2.0), InputError, "must be >= 0, got -2.0"),
    (dict(height=0), InputError, "height must be at least 1, got 0"),
    (dict(height=40), InputError, "height and width must be multiples of 16 (VAE x patch), got 40x64"),
    (dict(width=-16), InputError, "width must be at least 1, got -16"),
    (dict(num_images_per_prompt=0), InputError, "num_images_per_prompt must be at least 1"),
    (dict(generator=np.random.default_rng(0)), InputError, "a NumPy generator"),
    (dict(max_sequence_length=0), InputError, "max_sequence_length must be at least 1, got 0"),
    (dict(output_type="image"), InputError, "output_type must be one of"),
])


@pytest.mark.parametrize("kwargs,error,fragment", SD3_ROWS)
def test_sd3_pipeline_refuses(sd3, kwargs, error, fragment):
    kwargs = {"prompt": "a cat", "num_inference_steps": 2, "height": 64, "width": 64, "progress": False, **kwargs}
    expect(error, fragment, sd3, **kwargs)


# --------------------------------------------------------------------------------------------
# Hunyuan-DiT pipeline and its text stack
# --------------------------------------------------------------------------------------------

HUNYUAN_ROWS = rows("Hunyuan-DiT pipeline", [
    (dict(prompt=None), InputError, "prompt must be a string or a list of strings, got None"),
    (dict(prompt=123), InputError, "got 123 (int)"),
    (dict(prompt=["猫", 3]), InputError, "entry 1 is 3 (int)"),
    (dict(prompt=[]), InputError, "prompt is an empty list"),
    (dict(negative_prompt=5), InputError, "negative_prompt must be a string or a list of strings, got 5"),
    (dict(negative_prompt=["a", "b"]), InputError, "2 negative prompts for 1 prompts"),
    (dict(negative_prompt=[None]), InputError, "negative_prompt must be a string or a list of strings: entry 0"),
    (dict(negative_prompt=["a", "b"], guidance_scale=1.0), InputError, "2 negative prompts for 1 prompts"),
    (dict(num_inference_steps=0), InputError, "num_inference_steps must be between 1 and 1000, got 0"),
    (dict(num_inference_steps=2.5), InputError, "must be an integer, got 2.5"),
    (dict(num_inference_steps=1001), InputError, "got 1001"),
    (dict(num_inference_steps=True), InputError, "got True"),
    (dict(guidance_scale=NAN), InputError, "guidance_scale must be a finite number, got nan"),
    (dict(guidance_scale=INF), InputError, "got inf"),
    (dict(guidance_scale=-1.0), InputError, "guidance_scale must be >= 0, got -1.0"),
    (dict(guidance_scale="6"), InputError, "guidance_scale must be a number, got '6'"),
    (dict(guidance_rescale=1.5), InputError, "guidance_rescale must be between 0 and 1 (0: plain CFG"),
    (dict(guidance_rescale=-0.1), InputError, "got -0.1"),
    (dict(guidance_rescale=NAN), InputError, "guidance_rescale must be between 0 and 1 (0: plain CFG; 0.7 in the "
     "paper), got nan"),
    (dict(guidance_rescale="0.7"), InputError, "guidance_rescale must be a number in [0, 1], got '0.7'"),
    (dict(guidance_rescale=None), InputError, "got None"),
    (dict(height=8), InputError, "height must be at least 16, got 8. Hunyuan-DiT floors sizes to multiples of 16"),
    (dict(width=0), InputError, "width must be at least 16, got 0"),
    (dict(width=-32), InputError, "got -32"),
    (dict(height=32.5), InputError, "height must be an integer, got 32.5"),
    (dict(width="32"), InputError, "width must be an integer, got '32'"),
    (dict(height=True), InputError, "height must be an integer, got True"),
    (dict(num_images_per_prompt=0), InputError, "num_images_per_prompt must be at least 1, got 0"),
    (dict(num_images_per_prompt=1.5), InputError, "num_images_per_prompt must be an integer"),
    (dict(generator=np.random.default_rng(0)), InputError, "a NumPy generator"),
    (dict(generator=0), InputError, "generator must be a torch.Generator or None, got 0 (int)"),
    (dict(output_type="jpeg"), InputError, "output_type must be one of"),
    (dict(use_resolution_binning="yes"), InputError, "use_resolution_binning must be True or False, got 'yes'"),
    (dict(use_resolution_binning=1), InputError, "got 1 (int)"),
    (dict(original_size=(1024,)), InputError, "original_size must be a pair (height, width) of positive integers"),
    (dict(original_size=(0, 1024)), InputError, "original_size[0] must be at least 1, got 0"),
    (dict(original_size=(1024, 1024.5)), InputError, "original_size[1] must be an integer"),
])


@pytest.mark.parametrize("kwargs,error,fragment", HUNYUAN_ROWS)
def test_hunyuan_pipeline_refuses(hunyuan, kwargs, error, fragment):
    kwargs = {"prompt": "a cat", "num_inference_steps": 2, "height": 32, "width": 32, "progress": False, **kwargs}
    expect(error, fragment, hunyuan, **kwargs)


HUNYUAN_TEXT_ROWS = rows("Hunyuan-DiT text stack", [
    ((123, None), {}, InputError, "prompt must be a string or a list of strings, got 123"),
    (([], None), {}, InputError, "prompt is an empty list"),
    ((["a"], ["a", "b"]), {}, InputError, "2 negative prompts for 1 prompts"),
    ((["a"], [3]), {}, InputError, "negative_prompt must be a string or a list of strings: entry 0 is 3"),
    ((["a"], None), dict(num_images_per_prompt=0), InputError, "num_images_per_prompt must be at least 1, got 0"),
    ((["a"], None), dict(num_images_per_prompt=True), InputError, "must be an integer, got True"),
])


@pytest.mark.parametrize("args,kwargs,error,fragment", HUNYUAN_TEXT_ROWS)
def test_hunyuan_text_stack_refuses(hunyuan, args, kwargs, error, fragment):
    expect(error, fragment, hunyuan.text.encode, *args, **kwargs)


def test_hunyuan_negative_prompt_none_and_empty_are_the_default(spiece, monkeypatch):
    """Official: None and "" both mean the official Chinese negative prompt (End2End.predict); a list
    must have one per prompt (as diffusers' check), it is never cycled."""
    pipe = make_hunyuan(spiece)
    no_compute(pipe.transformer, pipe.vae, pipe.text.bert.module, pipe.text.mt5.module)
    assert pipe._negatives(None, 2) == pipe._negatives("", 2) == [pipe.sampling.negative_prompt] * 2
    assert pipe._negatives(["", "blurry"], 2) == [pipe.sampling.negative_prompt, "blurry"]
    expect(InputError, "1 negative prompts for 2 prompts", pipe._negatives, ["blurry"], 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(-64, 4096), st.integers(-64, 4096))
def test_hunyuan_pipeline_sizes_before_compute(hunyuan, height, width):
    """Sizes below 16 are refused before a network runs; the others (floored to multiples of 16, as the
    official code and diffusers do) pass the checks and reach the text encoders (ComputeSpent here)."""
    good = height >= 16 and width >= 16
    with pytest.raises(ComputeSpent if good else InputError):
        hunyuan("a cat", height=height, width=width, num_inference_steps=2, use_resolution_binning=False,
                progress=False)


# --------------------------------------------------------------------------------------------
# NaN / inf at every stage: the error names the stage
# --------------------------------------------------------------------------------------------

def _nan_dit(part):
    pipe = make_dit()
    poison(getattr(pipe, part))
    return lambda: pipe([1], num_inference_steps=2, progress=False)


def _nan_pixart(spiece, part):
    pipe = make_pixart(spiece)
    poison(pipe.text.module if part == "t5" else getattr(pipe, part))
    return lambda: pipe("a cat", num_inference_steps=2, use_resolution_binning=False, progress=False)


def _nan_sd3(spiece, part):
    pipe = make_sd3(spiece)
    poison({"clip_l": pipe.text.clip_l.module, "t5": pipe.text.t5.module}.get(part) or getattr(pipe, part))
    return lambda: pipe("a cat", num_inference_steps=2, height=64, width=64, progress=False)


def _nan_hunyuan(spiece, part):
    pipe = make_hunyuan(spiece)
    poison({"bert": pipe.text.bert.module, "mt5": pipe.text.mt5.module}.get(part) or getattr(pipe, part))
    return lambda: pipe("a cat", num_inference_steps=2, height=32, width=32, progress=False)


NAN_ROWS = rows("NaN stages", [
    ("dit", "transformer", "denoising, model call 1, produced NaN/inf"),
    ("dit", "vae", "the VAE decode produced NaN/inf"),
    ("pixart", "t5", "text encoding (T5) produced NaN/inf"),
    ("pixart", "transformer", "denoising, model call 1, produced NaN/inf"),
    ("pixart", "vae", "the VAE decode produced NaN/inf"),
    ("sd3", "clip_l", "text encoding (CLIP-L text encoder) produced NaN/inf"),
    ("sd3", "t5", "text encoding (T5-XXL) produced NaN/inf"),
    ("sd3", "transformer", "denoising, model call 1, produced NaN/inf"),
    ("sd3", "vae", "the VAE decode produced NaN/inf"),
    ("hunyuan", "bert", "text encoding (BERT text encoder) produced NaN/inf"),
    ("hunyuan", "mt5", "text encoding (mT5 text encoder) produced NaN/inf"),
    ("hunyuan", "transformer", "denoising, model call 1, produced NaN/inf"),
    ("hunyuan", "vae", "the VAE decode produced NaN/inf"),
])


@pytest.mark.parametrize("family,part,fragment", NAN_ROWS)
def test_non_finite_stage_is_named(spiece, family, part, fragment):
    run = {"dit": lambda: _nan_dit(part), "pixart": lambda: _nan_pixart(spiece, part),
           "sd3": lambda: _nan_sd3(spiece, part), "hunyuan": lambda: _nan_hunyuan(spiece, part)}[family]()
    e = expect(NonFiniteError, fragment, run)
    assert "weights" in str(e) or "VAE" in str(e)                    # and what to try


def test_float16_hint_names_bfloat16():
    from minidit.pipelines.checks import precision_hint
    assert "bfloat16" in precision_hint(torch.nn.Linear(2, 2).half(), "T5", "text_encoder_dtype")


# --------------------------------------------------------------------------------------------
# The toy (sample_digits, sample_flow_digits)
# --------------------------------------------------------------------------------------------

TOY_ROWS = rows("toy", [
    (sample_digits, dict(labels=True), InputError, "labels must be integers (digits 0..9), got True"),
    (sample_digits, dict(labels=[1.7]), InputError, "got 1.7 (float)"),
    (sample_digits, dict(labels=[]), InputError, "labels is empty"),
    (sample_digits, dict(labels="3"), InputError, "got '3'"),
    (sample_digits, dict(labels=torch.tensor([0.5])), InputError, "labels must be integers, got a torch.float32"),
    (sample_digits, dict(labels=torch.tensor([True])), InputError, "torch.bool"),
    (sample_digits, dict(labels=[3], steps=0), InputError, "steps must be between 1 and 1000, got 0"),
    (sample_digits, dict(labels=[3], steps=2.5), InputError, "steps must be an integer, got 2.5"),
    (sample_digits, dict(labels=[3], steps=1001), InputError, "got 1001"),
    (sample_digits, dict(labels=[3], steps=True), InputError, "got True"),
    (sample_digits, dict(labels=[3], guidance=NAN), InputError, "guidance must be a finite number, got nan"),
    (sample_digits, dict(labels=[3], guidance=-1.0), InputError, "guidance must be >= 0"),
    (sample_digits, dict(labels=[3], guidance="2"), InputError, "guidance must be a number, got '2'"),
    (sample_digits, dict(labels=[3], seed=-1), InputError, "seed must be between 0 and 18446744073709551615"),
    (sample_digits, dict(labels=[3], seed=2**70), InputError, "got 1180591620717411303424"),
    (sample_digits, dict(labels=[3], seed=1.5), InputError, "seed must be an integer"),
    (sample_digits, dict(labels=[3], sampler="euler"), InputError, "unknown sampler 'euler'"),
    (sample_flow_digits, dict(labels=[3], shift=0), InputError, "shift must be a finite number > 0, got 0"),
    (sample_flow_digits, dict(labels=[3], shift=NAN), InputError, "got nan"),
    (sample_flow_digits, dict(labels=[3], sampler="ddpm"), InputError, "unknown sampler 'ddpm'"),
    (sample_flow_digits, dict(labels=[True]), InputError, "got True"),
])


@pytest.mark.parametrize("fn,kwargs,error,fragment", TOY_ROWS)
def test_toy_sampling_refuses(fn, kwargs, error, fragment):
    model = DiT(TOY).eval()
    no_compute(model)
    expect(error, fragment, fn, model=model, **kwargs)


def test_save_grid_never_creates_folders(tmp_path):
    expect(InputError, "does not exist; create it first", save_grid, torch.zeros(1, 1, 16, 16),
           tmp_path / "new" / "grid.png", 1)
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def t5_tokenizer(spiece):
    return load_t5_tokenizer(spiece)


TOKENIZER_ROWS = rows("tokenizers", [
    (dict(max_length=0), InputError, "max_length must be a positive integer, got 0"),
    (dict(max_length=2.5), InputError, "got 2.5"),
    (dict(max_length=True), InputError, "got True"),
    (dict(padding="none"), ValueError, "padding must be 'max_length' or 'longest', not 'none'"),
    (dict(texts=123), TypeError, "texts must be a string or a list of strings"),
    (dict(texts=[]), ValueError, "no prompts given"),
])


@pytest.mark.parametrize("kwargs,error,fragment", TOKENIZER_ROWS)
def test_tokenizer_refuses(t5_tokenizer, kwargs, error, fragment):
    kwargs = {"texts": "a cat", "max_length": 8, **kwargs}
    expect(error, fragment, t5_tokenizer, kwargs.pop("texts"), **kwargs)


# --------------------------------------------------------------------------------------------
# Files: weights that are not what their name says
# --------------------------------------------------------------------------------------------

def dit_state_dict():
    return {k: v.clone() for k, v in randomize(DiT(DIT), 0).state_dict().items()}


class Evil:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def safetensors_bytes(work):
    path = work / "scratch.safetensors"
    save_file({"a": torch.ones(4)}, str(path))
    return path.read_bytes()


def torch_zip_bytes(work):
    path = work / "scratch.pt"
    torch.save({"a": torch.ones(4)}, str(path))
    return path.read_bytes()


FILE_ROWS = rows("weight files", [
    # (file name, content maker, loader, error, fragment)
    ("DiT-XL-2-256x256.pt", lambda w: b"", "dit", CheckpointError, "is empty (0 bytes)"),
    ("DiT-XL-2-256x256.pt", lambda w: bytes(np.random.default_rng(0).integers(1, 127, 4096).astype(np.uint8) | 0x80),
     "dit", CheckpointError, "neither a zip archive (torch.save) nor a pickle"),
    ("DiT-XL-2-256x256.pt", lambda w: b"e" * 100 + b"\nmore text\n", "dit", CheckpointError, "is a text file"),
    ("DiT-XL-2-256x256.pt", lambda w: b"<!DOCTYPE html><html><body>Access to model is restricted</body></html>",
     "dit", CheckpointError, "gated repository"),
    ("DiT-XL-2-256x256.pt", lambda w: b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", "dit",
     CheckpointError, "Git LFS pointer"),
    ("DiT-XL-2-256x256.pt", safetensors_bytes, "dit", CheckpointError,
     "safetensors file under a PyTorch name: rename it to DiT-XL-2-256x256.safetensors"),
    ("PixArt-XL-2-512x512.pth", lambda w: b"hello, I am not a checkpoint", "pixart", CheckpointError,
     "is a text file (it starts with 'hello"),
    ("model.safetensors", torch_zip_bytes, "dit", CheckpointError,
     "PyTorch checkpoint under a safetensors name: rename it to model.pt"),
    ("model.safetensors", lambda w: safetensors_bytes(w)[:40], "dit", CheckpointError,
     "not a readable safetensors file"),
    ("model.safetensors", lambda w: b"", "vae", CheckpointError, "is empty (0 bytes)"),
    ("model.safetensors", lambda w: b"<html>Sign in</html>", "mmdit", CheckpointError, "web page, not weights"),
    ("truncated.pt", lambda w: torch_zip_bytes(w)[:100], "dit", CheckpointError, "is not a readable PyTorch checkpoint"),
    ("evil.pt", "evil", "dit", CheckpointError, "could run arbitrary code"),
    ("tensor.pt", "tensor", "dit", CheckpointError, "holds a Tensor, not a state dict"),
    ("weights.npz", lambda w: b"PK\x03\x04", "dit", CheckpointError, "unknown weight file type '.npz'"),
    ("not_there.pt", None, "dit", CheckpointError, "does not exist"),
    ("t5.safetensors", lambda w: b"\x00" * 64, "t5", CheckpointError, "not a readable safetensors file"),
])


def write_file(work, index, name, content):
    folder = work / f"file_{index}"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if content == "evil":
        torch.save({"weights": Evil()}, str(path))
    elif content == "tensor":
        torch.save(torch.ones(3), str(path))
    elif content is not None:
        path.write_bytes(content(work))
    return path


LOADERS = {"dit": lambda p: load_dit(p, DIT), "pixart": lambda p: load_pixart(p, PIXART),
           "vae": lambda p: load_vae(p, VAE), "mmdit": lambda p: load_mmdit(p, MMDIT), "t5": lambda p: load_t5(p, T5)}


@pytest.mark.parametrize("index", range(len(FILE_ROWS)))
def test_wrong_weight_file_is_named(work, index):
    name, content, loader, error, fragment = FILE_ROWS[index]
    path = write_file(work, index, name, content)
    e = expect(error, fragment, LOADERS[loader], path)
    assert str(path.name) in str(e)                                          # the file is named


# --------------------------------------------------------------------------------------------
# Tensors: wrong kinds, NaN / inf, wrong keys
# --------------------------------------------------------------------------------------------

def _with(change):
    def make():
        sd = dit_state_dict()
        change(sd)
        return sd
    return make


KEY = "x_embedder.proj.weight"
TENSOR_ROWS = rows("tensors", [
    (_with(lambda sd: sd.__setitem__(KEY, sd[KEY].long())), "int64 where the model has float32"),
    (_with(lambda sd: sd.__setitem__(KEY, sd[KEY] > 0)), "bool where the model has float32"),
    (_with(lambda sd: sd.__setitem__(KEY, sd[KEY].to(torch.complex64))), "complex64 where the model has float32"),
    (_with(lambda sd: sd[KEY].view(-1)[0].fill_(NAN)), "holds NaN/inf in 1 tensors (x_embedder.proj.weight)"),
    (_with(lambda sd: sd["blocks.0.attn.qkv.weight"].view(-1)[3].fill_(INF)), "holds NaN/inf in 1 tensors"),
    (_with(lambda sd: sd.pop("blocks.1.mlp.fc2.bias")), "1 missing keys: blocks.1.mlp.fc2.bias"),
    (_with(lambda sd: sd.__setitem__("blocks.9.extra", torch.zeros(1))), "1 unexpected keys: blocks.9.extra"),
    (_with(lambda sd: sd.__setitem__(KEY, sd[KEY][:, :2])), "keys with a different shape"),
    (_with(lambda sd: sd.__setitem__("pos_embed", torch.ones(1, 16, 32))), "is not the 2-D sin-cos table"),
])


@pytest.mark.parametrize("make,fragment", TENSOR_ROWS)
def test_tensor_problems_are_listed(make, fragment):
    expect(CheckpointError, fragment, load_dit, make(), DIT)


def test_float16_overflow_is_told_apart_from_a_damaged_file():
    sd = dit_state_dict()
    sd[KEY][0, 0, 0, 0] = 1e6                                  # finite in float32, inf in float16
    expect(CheckpointError, "overflows when cast to torch.float16", load_dit, sd, DIT, dtype=torch.float16)


def test_not_a_dit_checkpoint():
    vae_sd = AutoencoderKL(VAE).state_dict()
    expect(CheckpointError, "does not look like a DiT checkpoint", load_dit, vae_sd)
    expect(CheckpointError, "overrides ['depthh'] are not fields of DiTConfig", load_dit, dit_state_dict(), DIT,
           overrides={"depthh": 3})
    expect(CheckpointError, "does not look like an AutoencoderKL checkpoint", load_vae, dit_state_dict())
    expect(CheckpointError, "does not look like an original PixArt checkpoint", load_pixart, dit_state_dict())
    expect(CheckpointError, "does not look like an SD3 MM-DiT checkpoint", load_mmdit, dit_state_dict())
    expect(CheckpointError, "does not look like a T5 encoder", load_t5, dit_state_dict())


# --------------------------------------------------------------------------------------------
# Sharded checkpoints
# --------------------------------------------------------------------------------------------

def shard_folder(work, name, weight_map, shards=("a.safetensors",)):
    folder = work / "shards" / name
    folder.mkdir(parents=True)
    for shard in shards:
        save_file({"w": torch.ones(2)}, str(folder / shard))
    text = weight_map if isinstance(weight_map, str) else json.dumps({"weight_map": weight_map})
    (folder / "model.safetensors.index.json").write_text(text)
    (work / "outside.safetensors").exists() or save_file({"w": torch.ones(2)}, str(work / "outside.safetensors"))
    return folder


SHARD_ROWS = rows("shard indices", [
    (["a.safetensors"], ConfigError, "its 'weight_map' must be an object {tensor name: shard file}, not list"),
    ("{}", ConfigError, "its 'weight_map' must be an object"),
    ("{not json", ConfigError, "is not valid JSON"),
    ("[1, 2]", ConfigError, "holds a JSON list, not an object"),
    ({"w": 3}, ConfigError, "its 'weight_map' must be an object"),
    ({"w": "../../outside.safetensors"}, ConfigError, "a path outside"),
    ({"w": "/etc/passwd"}, ConfigError, "a path outside"),
    ({"w": "b.safetensors"}, CheckpointError, "lists shard b.safetensors, which is missing"),
    ({"w": "a.safetensors", "v": "a.safetensors"}, CheckpointError, "1 keys listed in model.safetensors.index.json are in no shard"),
])


@pytest.mark.parametrize("index", range(len(SHARD_ROWS)))
def test_bad_shard_index(work, index):
    weight_map, error, fragment = SHARD_ROWS[index]
    folder = shard_folder(work, f"s{index}", weight_map)
    e = expect(error, fragment, read_state_dict, folder)
    assert "model.safetensors.index.json" in str(e)


# --------------------------------------------------------------------------------------------
# Config files: invalid JSON, missing fields, another model's folder
# --------------------------------------------------------------------------------------------

DIT_CONFIG = {"_class_name": "DiTTransformer2DModel", "num_attention_heads": 2, "attention_head_dim": 16,
              "in_channels": 4, "out_channels": 8, "num_layers": 2, "sample_size": 8, "patch_size": 2,
              "num_embeds_ada_norm": 10}


def config_folder(work, name, text, file="config.json"):
    folder = work / "configs" / name
    folder.mkdir(parents=True)
    (folder / file).write_text(text if isinstance(text, str) else json.dumps(text))
    return folder


def without(d, key):
    return {k: v for k, v in d.items() if k != key}


CONFIG_ROWS = rows("config files", [
    ("dit", "{\"num_layers\": 2,", ConfigError, "config.json is not valid JSON (Expecting"),
    ("dit", "[1, 2, 3]", ConfigError, "config.json holds a JSON list, not an object"),
    ("dit", "\xff\xfe", ConfigError, "config.json is not valid JSON"),
    ("dit", without(DIT_CONFIG, "num_layers"), ConfigError, "config.json has no 'num_layers' field"),
    ("dit", without(DIT_CONFIG, "attention_head_dim"), ConfigError, "has no 'attention_head_dim' field"),
    ("dit", {**DIT_CONFIG, "num_attention_heads": "two"}, ConfigError, "has a field of the wrong type or value"),
    ("dit", {**DIT_CONFIG, "norm_type": "ada_norm_single"}, ConfigError, "config.json: norm_type='ada_norm_single'"),
    ("dit", {**DIT_CONFIG, "_class_name": "AutoencoderKL"}, ConfigError,
     "describes a model of class AutoencoderKL, not a DiT transformer"),
    ("dit", {**DIT_CONFIG, "_class_name": "SD3Transformer2DModel"}, ConfigError, "not a DiT transformer"),
    ("pixart", {"_class_name": "DiTTransformer2DModel", "caption_channels": 16}, ConfigError,
     "describes a model of class DiTTransformer2DModel, not a PixArt transformer"),
    ("pixart", {"_class_name": "PixArtTransformer2DModel"}, ConfigError, "config.json: config.json has no caption_channels"),
    ("pixart", "{,}", ConfigError, "is not valid JSON"),
    ("mmdit", {"_class_name": "PixArtTransformer2DModel"}, ConfigError, "not an SD3 MM-DiT"),
    ("mmdit", {"_class_name": "SD3Transformer2DModel", "caption_projection_dim": 16, "num_attention_heads": 2,
               "attention_head_dim": 8}, ConfigError, "config.json has no pos_embed_max_size"),
    ("vae", {"_class_name": "UNet2DConditionModel"}, ConfigError, "describes a UNet2DConditionModel, not an AutoencoderKL"),
    ("vae", {"_class_name": "AutoencoderKL", "block_out_channels": [8, 12]}, ConfigError,
     "block_out_channels [8, 12] are not multiples"),
    ("vae", "not json at all", ConfigError, "is not valid JSON"),
    ("t5", {"model_type": "bert"}, CheckpointError, "describes a 'bert' model, not a T5 encoder"),
    ("t5", {"model_type": "t5", "feed_forward_proj": "gated-gelu", "vocab_size": 600}, ConfigError, "config.json has no 'd_model' field"),
    ("t5", "{\"model_type\": ", ConfigError, "is not valid JSON"),
])


def _load_config_folder(kind, folder):
    return {"dit": load_dit, "pixart": load_pixart, "mmdit": load_mmdit, "vae": load_vae, "t5": load_t5}[kind](folder)


@pytest.mark.parametrize("index", range(len(CONFIG_ROWS)))
def test_bad_config_file_names_it(work, index):
    kind, text, error, fragment = CONFIG_ROWS[index]
    folder = config_folder(work, f"c{index}", text)
    e = expect(error, fragment, _load_config_folder, kind, folder)
    assert str(folder) in str(e)


def test_vae_folder_given_to_load_dit(work):
    folder = config_folder(work, "a_vae", {"_class_name": "AutoencoderKL", "latent_channels": 4})
    expect(ConfigError, "describes a model of class AutoencoderKL, not a DiT transformer", load_dit, folder)


# --------------------------------------------------------------------------------------------
# Hunyuan-DiT files: weights, transformer/config.json, pipeline folders (diffusers and original)
# --------------------------------------------------------------------------------------------

HY_CONFIG = {"_class_name": "HunyuanDiT2DModel", "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4,
             "patch_size": 2, "hidden_size": 16, "num_layers": 4, "mlp_ratio": 2.0, "cross_attention_dim": 12,
             "cross_attention_dim_t5": 16, "pooled_projection_dim": 20}


def hunyuan_state_dict():
    return {k: v.clone() for k, v in randomize(HunyuanDiT(HUNYUAN), 0).state_dict().items()}


HUNYUAN_CONFIG_ROWS = rows("Hunyuan-DiT config files", [
    ("{\"num_layers\": 4,", ConfigError, "config.json is not valid JSON"),
    ("[1, 2]", ConfigError, "config.json holds a JSON list, not an object"),
    ({**HY_CONFIG, "_class_name": "PixArtTransformer2DModel"}, ConfigError,
     "describes a model of class PixArtTransformer2DModel, not a Hunyuan-DiT transformer (HunyuanDiT2DModel)"),
    ({**HY_CONFIG, "_class_name": "SD3Transformer2DModel"}, ConfigError, "not a Hunyuan-DiT transformer"),
    (without(HY_CONFIG, "in_channels"), ConfigError, "config.json has no in_channels / patch_size"),
    ({**HY_CONFIG, "num_attention_heads": "two"}, ConfigError, "num_attention_heads='two': must be a positive integer"),
    ({**HY_CONFIG, "patch_size": 0}, ConfigError, "patch_size=0: must be a positive integer (the releases: 2)"),
    ({**HY_CONFIG, "num_layers": 5}, ConfigError, "num_layers=5: Hunyuan-DiT's long skips need an even depth"),
    ({**HY_CONFIG, "attention_head_dim": 6, "hidden_size": 12}, ConfigError,
     "attention_head_dim=6: 2-D RoPE needs a multiple of 4"),
    ({**HY_CONFIG, "hidden_size": 100}, ConfigError, "hidden_size 100 != heads x head_dim 16"),
    ({**HY_CONFIG, "norm_type": "rms_norm"}, ConfigError, "the releases use 'gelu-approximate' and 'layer_norm'"),
    ({**HY_CONFIG, "mlp_ratio": "4"}, ConfigError, "HunyuanConfig.mlp_ratio = '4' (not a float)"),
    ({**HY_CONFIG, "use_style_cond_and_image_meta_size": "yes"}, ConfigError,
     "HunyuanConfig.size_cond = 'yes' (not a bool)"),
])


@pytest.mark.parametrize("index", range(len(HUNYUAN_CONFIG_ROWS)))
def test_bad_hunyuan_config_names_it(work, index):
    text, error, fragment = HUNYUAN_CONFIG_ROWS[index]
    folder = config_folder(work, f"hy{index}", text)
    e = expect(error, fragment, load_hunyuan, folder)
    assert str(folder) in str(e)


def _hy_file(folder, name, content):
    """An original t2i/ folder whose model/ holds `name` (bytes, or a maker of what torch.save writes)."""
    (folder / "model").mkdir(parents=True)
    if isinstance(content, bytes):
        (folder / "model" / name).write_bytes(content)
    elif content is not None:
        torch.save(content(), folder / "model" / name)
    return folder


HUNYUAN_FILE_ROWS = rows("Hunyuan-DiT weight files", [
    # (file in t2i/model/, its content, load_key, error, fragment)
    ("pytorch_model_ema.pt", b"<!DOCTYPE html><html>Sign in</html>", "ema", CheckpointError,
     "pytorch_model_ema.pt is a web page"),
    ("pytorch_model_ema.pt", b"", "ema", CheckpointError, "pytorch_model_ema.pt is empty (0 bytes)"),
    ("pytorch_model_ema.pt", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", "ema",
     CheckpointError, "Git LFS pointer"),
    ("pytorch_model_module.pt", hunyuan_state_dict, "ema", CheckpointError,
     "it has ['pytorch_model_module.pt'] (choose with load_key=)"),
    ("pytorch_model_ema.pt", lambda: {"module": hunyuan_state_dict()}, "ema", CheckpointError,
     "wraps ['module'], not 'ema': pick one of them (the loader's load_key=)"),
    ("pytorch_model_distill.pt", lambda: dit_state_dict(), "distill", CheckpointError,
     "does not look like a Hunyuan-DiT checkpoint: no"),
    ("pytorch_model_ema.pt", hunyuan_state_dict, "best", ValueError, "load_key must be one of ('ema', 'module', "
     "'distill')"),
])


@pytest.mark.parametrize("index", range(len(HUNYUAN_FILE_ROWS)))
def test_bad_hunyuan_weight_file(work, index):
    name, content, load_key, error, fragment = HUNYUAN_FILE_ROWS[index]
    folder = _hy_file(work / "hy_files" / f"f{index}", name, content)
    e = expect(error, fragment, load_hunyuan, folder, load_key=load_key)
    if load_key != "best":
        assert str(folder) in str(e) or "state dict" in str(e)           # the file (or folder) is named


def test_hunyuan_diffusers_state_dict_needs_its_config():
    sd = {"blocks.0.attn1.to_q.weight": torch.zeros(2, 2)}
    expect(CheckpointError, "a diffusers Hunyuan-DiT state dict without its config.json", load_hunyuan, sd)


def _write(folder, files):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text if isinstance(text, str) else json.dumps(text))
    return folder


HY_INDEX = {"_class_name": "HunyuanDiTPipeline"}
HUNYUAN_FOLDER_ROWS = rows("Hunyuan-DiT pipeline folders", [
    ({"model_index.json": "{broken"}, {}, ConfigError, "model_index.json is not valid JSON"),
    ({"model_index.json": [1]}, {}, ConfigError, "model_index.json holds a JSON list"),
    ({"model_index.json": {"_class_name": "PixArtSigmaPipeline"}}, {}, CheckpointError,
     "names a PixArtSigmaPipeline, not one of HunyuanDiTPipeline"),
    ({"model_index.json": HY_INDEX}, {}, MissingPartError,
     "no transformer/config.json, vae/config.json, text_encoder/config.json, tokenizer/tokenizer_config.json, "
     "text_encoder_2/config.json, tokenizer_2/tokenizer_config.json in"),
    ({"model_index.json": HY_INDEX, "transformer/config.json": HY_CONFIG, "vae/config.json": {},
      "text_encoder/config.json": {}, "tokenizer/tokenizer_config.json": {}, "tokenizer_2/tokenizer_config.json": {}},
     {}, MissingPartError, "no text_encoder_2/config.json in"),
    ({"model_index.json": HY_INDEX, "transformer/config.json": "{", "vae/config.json": {},
      "text_encoder/config.json": {}, "tokenizer/tokenizer_config.json": {}, "text_encoder_2/config.json": {},
      "tokenizer_2/tokenizer_config.json": {}}, {}, ConfigError, "transformer/config.json is not valid JSON"),
    ({"model/": ""}, {}, MissingPartError, "no clip_text_encoder/, tokenizer/, mt5/, sdxl-vae-fp16-fix/ in"),
    ({"t2i/model/": "", "t2i/mt5/": ""}, {}, MissingPartError, "no clip_text_encoder/, tokenizer/, sdxl-vae-fp16-fix/"),
    ({"nothing.txt": ""}, {}, MissingPartError, "no model_index.json (not a diffusers pipeline folder)"),
    ({}, dict(follow="comfy"), InputError, "follow must be 'official' or 'diffusers', not 'comfy'"),
    ({}, dict(sampler="euler"), InputError, "sampler must be one of ddpm, ddim, dpmms (the official --sampler)"),
    ({}, dict(load_key="best"), InputError, "load_key must be None or one of ('ema', 'module', 'distill')"),
    ({}, dict(load_key=""), InputError, "not ''"),
    ({}, dict(keep_text_encoders="no"), InputError, "keep_text_encoders must be True or False, got 'no'"),
    ({}, dict(sampling="official"), InputError, "sampling must be a HunyuanSampling or None, not str"),
])


@pytest.mark.parametrize("index", range(len(HUNYUAN_FOLDER_ROWS)))
def test_bad_hunyuan_pipeline_folder(work, index):
    files, kwargs, error, fragment = HUNYUAN_FOLDER_ROWS[index]
    folder = _write(work / "hy_pipelines" / f"p{index}", files)
    folder.mkdir(parents=True, exist_ok=True)
    expect(error, fragment, HunyuanPipeline.from_pretrained, folder, **kwargs)


def test_hunyuan_text_folders_are_named(work):
    t2i = _write(work / "hy_text" / "t2i", {"mt5/": ""})
    expect(MissingPartError, "no clip_text_encoder/, tokenizer/ in", HunyuanTextEncoders.from_original, t2i)
    root = _write(work / "hy_text" / "root", {"text_encoder/config.json": {}, "tokenizer/tokenizer_config.json": {}})
    expect(MissingPartError, "no text_encoder_2/config.json, tokenizer_2/tokenizer_config.json in",
           HunyuanTextEncoders.from_pretrained, root)


PIPELINE_FOLDER_ROWS = rows("pipeline folders", [
    ("model_index.json", "{broken", lambda f: PixArtPipeline.from_pretrained(f), ConfigError,
     "model_index.json is not valid JSON"),
    ("model_index.json", {"_class_name": "DiTPipeline"}, lambda f: PixArtPipeline.from_pretrained(f), CheckpointError,
     "names a DiTPipeline, not one of PixArtAlphaPipeline"),
    ("model_index.json", {"_class_name": "StableDiffusion3Pipeline"}, lambda f: DiTPipeline.from_pretrained(f),
     MissingPartError, "no transformer/config.json, vae/config.json, scheduler/scheduler_config.json"),
    ("scheduler/scheduler_config.json", "{oops", lambda f: PipelineFolder(f).scheduler_config(), ConfigError,
     "scheduler_config.json is not valid JSON"),
    ("scheduler/scheduler_config.json", "3", lambda f: PipelineFolder(f).scheduler_config(), ConfigError,
     "holds a JSON int, not an object"),
    ("tokenizer/tokenizer_config.json", "{oops", lambda f: load_t5_tokenizer(f), ConfigError,
     "tokenizer_config.json is not valid JSON"),
    ("nothing.txt", "", lambda f: PipelineFolder(f).model_index(), MissingPartError, "no model_index.json"),
])


@pytest.mark.parametrize("index", range(len(PIPELINE_FOLDER_ROWS)))
def test_bad_pipeline_folder(work, index):
    file, text, load, error, fragment = PIPELINE_FOLDER_ROWS[index]
    folder = work / "pipelines" / f"p{index}"
    (folder / file).parent.mkdir(parents=True)
    (folder / file).write_text(text if isinstance(text, str) else json.dumps(text))
    expect(error, fragment, load, folder)


def test_unknown_scheduler_is_named():
    from minidit.pipelines.pixart import sampling_from_scheduler_config
    expect(ValueError, "scheduler 'EulerAncestralDiscreteScheduler'", sampling_from_scheduler_config,
           {"_class_name": "EulerAncestralDiscreteScheduler"})


# --------------------------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------------------------

def clip_folder(work, name, vocab, merges="#version: 0.2\n", config=None):
    folder = work / "clip_tok" / name
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab))
    (folder / "merges.txt").write_text(merges)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return folder


GOOD_VOCAB = {t: i for i, t in enumerate(list(bytes_to_unicode().values()) + list(CLIP_SPECIALS))}
TOKENIZER_FILE_ROWS = rows("tokenizer files", [
    ("clip", dict(vocab="{\"a\": 1,"), ConfigError, "vocab.json is not valid JSON"),
    ("clip", dict(vocab=["a", "b"]), ConfigError, "vocab.json holds a JSON list"),
    ("clip", dict(vocab={"a": "1"}), ConfigError, "its values must be integer ids"),
    ("clip", dict(vocab={"a": 0}), ConfigError, "the CLIP vocabulary has no ['<|startoftext|>', '<|endoftext|>'"),
    ("clip", dict(vocab=GOOD_VOCAB, merges="a b c\n"), ConfigError, "merges.txt is not a BPE merges file"),
    ("clip", dict(vocab=GOOD_VOCAB, config="{"), ConfigError, "tokenizer_config.json is not valid JSON"),
    ("clip", dict(vocab=GOOD_VOCAB, config={"model_max_length": "long"}), ConfigError,
     "model_max_length must be a positive number, not 'long'"),
    ("clip", dict(vocab=GOOD_VOCAB, config={"model_max_length": 0}), ConfigError, "not 0"),
    ("spiece", b"\x01\x02garbage\x00\xff" * 20, CheckpointError, "is not a readable sentencepiece model"),
    ("spiece", b"", CheckpointError, "is empty (0 bytes)"),
    ("spiece", b"just some text", CheckpointError, "is a text file"),
    ("spiece", None, CheckpointError, "has no spiece.model"),
])


@pytest.mark.parametrize("index", range(len(TOKENIZER_FILE_ROWS)))
def test_bad_tokenizer_file(work, index):
    kind, spec, error, fragment = TOKENIZER_FILE_ROWS[index]
    if kind == "clip":
        folder = clip_folder(work, f"t{index}", **spec)
        e = expect(error, fragment, load_clip_tokenizer, folder)
    else:
        folder = work / "spiece_bad" / f"t{index}"
        folder.mkdir(parents=True)
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))
        if spec is not None:
            (folder / "spiece.model").write_bytes(spec)
        e = expect(error, fragment, load_t5_tokenizer, folder)
    assert str(folder) in str(e)


# --------------------------------------------------------------------------------------------
# The command line: one or two lines, exit status 2, never a traceback; checked before any load
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_dirs(work):
    """weights folders: one with a text file named like DiT's checkpoint beside a VAE folder (the
    original layout), one likewise for PixArt-α, and an empty one."""
    root = work / "cli"
    dit = root / "DiT"
    (dit / "sd-vae-ft-mse").mkdir(parents=True)
    (dit / "sd-vae-ft-mse" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    (dit / "DiT-XL-2-256x256.pt").write_text("this is not a checkpoint\n")
    pixart = root / "pixart-alpha"
    for sub in ("t5-v1_1-xxl", "sd-vae-ft-ema"):
        (pixart / sub).mkdir(parents=True)
        (pixart / sub / "config.json").write_text("{}")
    (pixart / "PixArt-XL-2-512x512.pth").write_text("<html>please log in</html>")
    # Hunyuan-DiT: another pipeline's folder, an original layout without its text stack, one whose
    # weight file is a web page
    (root / "hy-pixart").mkdir()
    (root / "hy-pixart" / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline"}))
    (root / "hy-partial" / "t2i" / "model").mkdir(parents=True)
    for sub in ("model", "clip_text_encoder", "tokenizer", "mt5", "sdxl-vae-fp16-fix"):
        (root / "hy-html" / "t2i" / sub).mkdir(parents=True)
    (root / "hy-html" / "t2i" / "model" / "pytorch_model_ema.pt").write_text("<!DOCTYPE html><html>log in</html>")
    (root / "empty").mkdir()
    (root / "out").mkdir()
    return root


def G(model, *argv):
    return ["generate", "--model", model, *argv]


DIT_OK = ("--weights", "{empty}", "--class", "1", "--out", "{out}/x.png")
HY_OK = ("--weights", "{empty}", "--prompt", "一只可爱的猫", "--out", "{out}/x.png")
CLI_ROWS = rows("command line", [
    # argv, fragment, the exception `--debug` shows (None: the family prints and returns 2)
    (G("dit-xl-2-256", *DIT_OK, "--steps", "0"), "--steps must be between 1 and 1000, got 0", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--steps", "-5"), "got -5", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--steps", "5000"), "got 5000", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--guidance", "nan"), "--guidance must be a finite number, got nan", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--guidance", "inf"), "got inf", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--guidance", "-1"), "--guidance must be >= 0, got -1.0", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--seed", str(2**70)), "--seed must be between 0 and 18446744073709551615", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--seed", "-1"), "got -1", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--device", "tpu"), "--device 'tpu' is not a device torch knows: use cpu", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--device", "xpu"), "--device xpu: minidit runs on cpu, cuda or mps, not xpu", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--device", "gpu0"), "is not a device torch knows", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--device", "cuda"), "torch sees no CUDA device here", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--device", "cuda:7"), "torch sees no CUDA device here", InputError),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1", "--out", "{out}/missing_dir/x.png"),
     "the folder {out}/missing_dir does not exist; create it first", InputError),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1", "--out", "{out}"), "is a folder: give a file name",
     InputError),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1", "--out", "{out}/x.txt"),
     "has no image extension PIL can write (.txt)", InputError),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1", "--out", "{out}/x"), "(none)", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--height", "0"), "--height must be at least 1, got 0", InputError),
    (G("dit-xl-2-256", *DIT_OK, "--width", "-8"), "--width must be at least 1, got -8", InputError),
    (G("dit-xl-2-256", "--weights", "{nowhere}", "--class", "1", "--out", "{out}/missing_dir/x.png"),
     "does not exist; create it first", InputError),                  # --out is checked before --weights
    (G("dit-xl-2-256", *DIT_OK, "--prompt", "a cat"), "DiT is class-conditional: pass --class", None),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "notaclass", "--out", "{out}/x.png"),
     "'notaclass' is not an ImageNet class name", None),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1000", "--out", "{out}/x.png"),
     "class id 1000 is out of range", None),
    (G("dit-xl-2-256", "--weights", "{empty}", "--class", "1.7", "--out", "{out}/x.png"),
     "'1.7' is not an ImageNet class name", None),
    (G("dit-xl-2-256", *DIT_OK, "--height", "128"), "makes 256x256 images only", None),
    (G("dit-xl-2-256", "--weights", "{empty}", "--out", "{out}/x.png"), "pass --class", None),
    (G("dit-xl-2-256", "--weights", "{root}/DiT", "--class", "1", "--out", "{out}/x.png"),
     "DiT-XL-2-256x256.pt is a text file", None),
    (G("dit-xl-2-256", "--weights", "{nowhere}", "--class", "1", "--out", "{out}/x.png"), "does not exist", None),
    (G("pixart-alpha-512", "--weights", "{root}/pixart-alpha", "--prompt", "a cat", "--out", "{out}/x.png"),
     "PixArt-XL-2-512x512.pth is a web page", None),
    (G("pixart-sigma-1024", "--weights", "{empty}", "--out", "{out}/x.png"), 'pass --prompt "..."', None),
    (G("pixart-sigma-1024", "--weights", "{empty}", "--class", "3", "--out", "{out}/x.png"),
     "PixArt is text-conditional: pass --prompt, not --class", None),
    (G("pixart-sigma-1024", "--weights", "{empty}", "--prompt", "x", "--out", "{out}/x.png", "--guidance", "-0.5"),
     "--guidance must be >= 0", InputError),
    (G("sd3.5-medium", "--weights", "{empty}", "--prompt", "x", "--out", "{out}/x.png", "--height", "1000"),
     "--height 1000: SD3 sizes are multiples of 16", None),
    (G("sd3.5-medium", "--weights", "{empty}", "--prompt", "x", "--out", "{out}/x.png", "--steps", "0"),
     "--steps must be between 1 and 1000", InputError),
    (G("sd3.5-medium", "--weights", "{empty}", "--out", "{out}/x.png"), 'pass --prompt "..."', None),
    (G("sd3.5-medium", "--weights", "{empty}", "--prompt", "x", "--out", "{out}/x.png"),
     "neither sd3.5_medium.safetensors with a text_encoders/ folder", None),
    (G("hunyuan-dit-v1.2", *HY_OK, "--steps", "0"), "--steps must be between 1 and 1000, got 0", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--steps", "1001"), "got 1001", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--guidance", "nan"), "--guidance must be a finite number, got nan", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--guidance", "-2"), "--guidance must be >= 0, got -2.0", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--width", "0"), "--width must be at least 1, got 0", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--seed", "-1"), "--seed must be between 0 and", InputError),
    (G("hunyuan-dit-v1.2", *HY_OK, "--device", "tpu"), "--device 'tpu' is not a device torch knows", InputError),
    (G("hunyuan-dit-v1.2", "--weights", "{empty}", "--prompt", "猫", "--out", "{out}/new_folder/x.png"),
     "the folder {out}/new_folder does not exist", InputError),
    (G("hunyuan-dit-v1.1", *HY_OK, "--height", "8"), "--height 8: Hunyuan-DiT sizes are at least 16", None),
    (G("hunyuan-dit-v1.2", "--weights", "{empty}", "--out", "{out}/x.png"), 'pass --prompt "..."', None),
    (G("hunyuan-dit-v1.2", "--weights", "{empty}", "--class", "3", "--out", "{out}/x.png"),
     "Hunyuan-DiT is text-conditional: pass --prompt, not --class", None),
    (G("hunyuan-dit-v1.2", *HY_OK, "--sampler", "euler"), "invalid choice: 'euler'", None),
    (G("hunyuan-dit-v1.2", *HY_OK), "neither a diffusers Hunyuan-DiT folder (model_index.json) nor the original", None),
    (G("hunyuan-dit-v1.2", "--weights", "{nowhere}", "--prompt", "猫", "--out", "{out}/x.png"), "does not exist",
     None),
    (G("hunyuan-dit-v1.2", "--weights", "{root}/hy-pixart", "--prompt", "猫", "--out", "{out}/x.png"),
     "names a PixArtSigmaPipeline, not one of HunyuanDiTPipeline", None),
    (G("hunyuan-dit-v1.2", "--weights", "{root}/hy-partial", "--prompt", "猫", "--out", "{out}/x.png"),
     "no clip_text_encoder/, tokenizer/, mt5/, sdxl-vae-fp16-fix/ in {root}/hy-partial/t2i", None),
    (G("hunyuan-dit-v1.2", "--weights", "{root}/hy-html", "--prompt", "猫", "--out", "{out}/x.png"),
     "pytorch_model_ema.pt is a web page", None),
    (G("hunyuan-dit-v1.2-distilled", "--weights", "{root}/hy-html", "--prompt", "猫", "--out", "{out}/x.png"),
     "no pytorch_model_distill.pt in {root}/hy-html/t2i", None),
    (G("dit-xl-2-256", *DIT_OK, "--steps", "2.5"), "invalid int value: '2.5'", None),
    (G("sd4-ultra"), "invalid choice: 'sd4-ultra'", None),
    (["sample", "--steps", "0", "--out", "{out}/d.png"], "--steps must be between 1 and 1000, got 0", None),
    (["sample", "--steps", "1001", "--out", "{out}/d.png"], "got 1001", None),
    (["sample", "--guidance", "nan", "--out", "{out}/d.png"], "--guidance must be a finite number, got nan", None),
    (["sample", "--guidance", "-1", "--out", "{out}/d.png"], "--guidance must be >= 0", None),
    (["sample", "--count", "0", "--out", "{out}/d.png"], "--count must be at least 1, got 0", None),
    (["sample", "--seed", str(2**70), "--out", "{out}/d.png"], "--seed must be between 0 and", None),
    (["sample", "--classes", "12", "--out", "{out}/d.png"], "--classes must be comma-separated digits 0..9", None),
    (["sample", "--classes", "a,b", "--out", "{out}/d.png"], "got 'a,b'", None),
    (["sample", "--out", "{out}/new_folder/d.png"], "the folder {out}/new_folder does not exist", None),
    (["sample", "--out", "{out}"], "is a folder", None),
    (["sample", "--out", "{out}/d.txt"], "has no image extension", None),
])


def _argv(argv, root):
    fill = dict(root=root, empty=root / "empty", out=root / "out", nowhere=root / "nowhere")
    return [a.format(**fill) for a in argv]


def _never_called(pipe, *args, **kwargs):
    raise ComputeSpent("the pipeline was called although the command line should have been refused")


@pytest.mark.parametrize("argv,fragment,raises", CLI_ROWS)
def test_cli_refuses_in_one_or_two_lines(cli_dirs, capsys, monkeypatch, argv, fragment, raises):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # the same rows on a machine with a GPU
    argv, fragment = _argv(argv, cli_dirs), fragment.format(root=cli_dirs, out=cli_dirs / "out")
    if "--model" in argv and argv[argv.index("--model") + 1].startswith("hunyuan"):
        monkeypatch.setattr(HunyuanPipeline, "__call__", _never_called)  # a Hunyuan row never reaches the call
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (cli_dirs / "out" / "x.png").exists() and not (cli_dirs / "out" / "new_folder").exists()
    if raises is not None:                                             # --debug shows the error itself
        with pytest.raises(raises, match="must|device|folder|extension|create"):
            cli.main(["--debug", *argv])


def test_cli_unexpected_error_is_one_line_with_the_debug_hint(monkeypatch, capsys, cli_dirs):
    from minidit.pipelines import dit_cli
    monkeypatch.setattr(dit_cli, "generate", lambda args, entry, kw: {}["boom"])
    argv = _argv(G("dit-xl-2-256", *DIT_OK), cli_dirs)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "error: KeyError: 'boom'" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(KeyError):
        cli.main([*argv, "--debug"])                                  # after the command works as well


# --------------------------------------------------------------------------------------------
# Property-based: the argument checks accept exactly their documented ranges
# --------------------------------------------------------------------------------------------

FAST = settings(max_examples=200, deadline=None)


@FAST
@given(st.integers(-10**30, 10**30))
def test_steps_accept_exactly_1_to_1000(n):
    if 1 <= n <= 1000:
        assert check_steps(n) == n
    else:
        with pytest.raises(InputError, match=f"got {n}"):
            check_steps(n)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not float(x).is_integer()))
def test_steps_refuse_every_non_integer_float(x):
    with pytest.raises(InputError, match="must be an integer"):
        check_steps(x)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_guidance_accepts_exactly_finite_non_negative(g):
    if math.isfinite(g) and g >= 0:
        assert check_guidance(g) == g                                 # used as given, never swapped
    else:
        with pytest.raises(InputError, match="guidance_scale must be"):
            check_guidance(g)


@FAST
@given(st.integers(-4096, 4096), st.integers(-4096, 4096))
def test_sizes_accept_exactly_positive_multiples(h, w):
    if h >= 1 and w >= 1 and h % 16 == 0 and w % 16 == 0:
        assert check_size(h, w, 16) == (h, w)
    else:
        with pytest.raises(InputError):
            check_size(h, w, 16)


@FAST
@given(st.integers(-3000, 3000))
def test_class_ids_accept_exactly_the_model_classes(n):
    if 0 <= n < 1000:
        assert class_ids(n) == [n] == class_ids(str(n))
    else:
        with pytest.raises(InputError, match="out of range"):
            class_ids(n)


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(-50, 0), st.integers(1001, 10**6), st.floats(0.1, 50).filter(lambda x: x != int(x))),
       st.one_of(st.floats(-1e6, -1e-9), st.just(NAN), st.just(INF)))
def test_dit_pipeline_refuses_bad_ranges_before_compute(dit, steps, guidance):
    with pytest.raises(InputError, match="num_inference_steps"):
        dit([1], num_inference_steps=steps, progress=False)
    with pytest.raises(InputError, match="guidance_scale"):
        dit([1], num_inference_steps=2, guidance_scale=guidance, progress=False)


def test_row_count():
    """The number of table rows (the README quotes it); property tests and single checks come on top."""
    counts = {section: len(table) for section, table in ROWS.items()}
    print(counts, sum(counts.values()))
    assert sum(counts.values()) >= 150, counts


@settings(max_examples=40, deadline=None)
@given(st.integers(-2048, 2048), st.integers(-2048, 2048))
def test_sd3_pipeline_sizes_before_compute(sd3, height, width):
    """Any size that is not a positive multiple of 16 is refused before a network runs; the others pass
    the checks and reach the text encoders (which refuse to run here: ComputeSpent)."""
    good = height >= 1 and width >= 1 and height % 16 == 0 and width % 16 == 0
    with pytest.raises(ComputeSpent if good else InputError):
        sd3("a cat", height=height, width=width, num_inference_steps=2, progress=False)
