"""SD3's three-encoder text conditioning (minidit/pipelines/sd3_text.py) on a tiny random SD3 text
stack written by diffusers (tests/helpers/sd3_text.py): parity with diffusers'
`StableDiffusion3Pipeline.encode_prompt` (t5_length="diffusers": prompt + negative, batches, images per
prompt, several max_sequence_length, no guidance, T5 dropped, long prompts), the official length against
a transcription of the reference's recipe written out here (Stability-AI/sd3.5 `other_impls.py`
SDTokenizer / T5XXLTokenizer, `sd3_infer.py get_cond`), SD3's single files, the staged lifetime, the
fp16 guard, and the errors."""
import shutil
import warnings
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from minidit.pipelines.common import Staged
from minidit.pipelines.sd3_text import SD3TextEncoders, assemble_context
from weights_loader import MissingPartError, load_clip, load_clip_tokenizer, load_t5
from weights_loader import io as weights_io

from helpers import EXACT, FP16, FP32, assert_parity, require
from helpers.sd3_text import BOS, EOS, G_WIDTH, L_WIDTH, T5_WIDTH, build_text_stack, minidit_clip_config

require("diffusers")
require("transformers")

PROMPTS = ["a red cube", "a photo of an astronaut riding a horse on the moon"]
# 19 CLIP tokens, but 122 T5 tokens (EOS included) with the tiny sentencepiece model: past the official 77
LONG_T5 = ("wonderful elephants wandering through golden savannah grasslands beneath towering thunderclouds, "
           "photographed with extraordinary clarity")
LONG_CLIP = " ".join(["a red cube on a photo of the moon"] * 9)         # 83 CLIP tokens


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("sd3_text")
    pipe = build_text_stack(work / "pipe", work)
    return pipe, work / "pipe"


def ours(folder, **kw):
    return SD3TextEncoders.from_pretrained(folder, context_width=T5_WIDTH, **kw)


def diffusers_encode(pipe, prompt, negative_prompt="", *, n=1, guided=True, max_sequence_length=256):
    with torch.no_grad():
        return pipe.encode_prompt(prompt, None, None, device="cpu", num_images_per_prompt=n,
                                  do_classifier_free_guidance=guided, negative_prompt=negative_prompt,
                                  max_sequence_length=max_sequence_length)


def assert_like_diffusers(e, ref, guided=True):
    cond, uncond, pooled, uncond_pooled = ref
    assert_parity(e.cond, cond, tol=FP32, what="context")
    assert_parity(e.cond_pooled, pooled, tol=FP32, what="pooled")
    assert e.cond_mask is None and e.uncond_mask is None                 # SD3 has no masks
    if guided:
        assert_parity(e.uncond, uncond, tol=FP32, what="negative context")
        assert_parity(e.uncond_pooled, uncond_pooled, tol=FP32, what="negative pooled")
    else:
        assert e.uncond is None and uncond is None


# --------------------------------------------------------------------------------------------
# t5_length="diffusers": diffusers' encode_prompt
# --------------------------------------------------------------------------------------------

def test_prompt_and_negative_like_diffusers(stack):
    pipe, folder = stack
    e = ours(folder).encode("a red cube", "blurry, low quality", t5_length="diffusers")
    assert e.cond.shape == (1, 77 + 256, T5_WIDTH) and e.cond_pooled.shape == (1, L_WIDTH + G_WIDTH)
    assert_like_diffusers(e, diffusers_encode(pipe, "a red cube", "blurry, low quality"))


@pytest.mark.parametrize("max_sequence_length", [20, 100, 512])
def test_batch_images_per_prompt_and_lengths_like_diffusers(stack, max_sequence_length):
    pipe, folder = stack
    prompts, negatives = [PROMPTS[1], LONG_T5], ["", "ugly"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = ours(folder).encode(prompts, negatives, num_images_per_prompt=2, t5_length="diffusers",
                                max_sequence_length=max_sequence_length)
    cut = [str(w.message) for w in caught if "T5 reads" in str(w.message)]
    assert len(cut) == (2 if max_sequence_length == 20 else 1 if max_sequence_length == 100 else 0)   # 34, 122 tokens
    assert e.cond.shape == (4, 77 + max_sequence_length, T5_WIDTH)
    assert_like_diffusers(e, diffusers_encode(pipe, prompts, negatives, n=2, max_sequence_length=max_sequence_length))


def test_without_guidance_like_diffusers(stack):
    pipe, folder = stack
    e = ours(folder).encode(PROMPTS, guided=False, t5_length="diffusers")
    assert not e.guided
    assert_like_diffusers(e, diffusers_encode(pipe, PROMPTS, guided=False), guided=False)


def test_long_clip_prompt_is_cut_with_a_warning_like_diffusers(stack):
    pipe, folder = stack
    with pytest.warns(UserWarning) as caught:
        e = ours(folder).encode(LONG_CLIP, t5_length="diffusers")
    assert sorted(str(w.message).split(";")[0] for w in caught) == [
        "CLIP reads 77 tokens: prompt 0 has 83", "T5 reads 256 tokens (max_sequence_length): prompt 0 has 271"]
    assert_like_diffusers(e, diffusers_encode(pipe, LONG_CLIP))


def test_t5_dropped_zeros_like_diffusers(stack):
    pipe, folder = stack
    from diffusers import StableDiffusion3Pipeline
    no_t5 = StableDiffusion3Pipeline(**{**pipe.components, "text_encoder_3": None, "tokenizer_3": None})
    text = ours(folder, drop_t5=True)
    assert text.t5 is None and text.tokenizer_t5 is None
    e = text.encode(PROMPTS, "ugly", t5_length="diffusers")
    assert e.cond.shape == (2, 77 + 256, T5_WIDTH)
    assert_like_diffusers(e, diffusers_encode(no_t5, PROMPTS, "ugly"))
    # The official length: 77 zero tokens; the CLIP part is what it is with T5.
    official, with_t5 = text.encode(PROMPTS, "ugly"), ours(folder).encode(PROMPTS, "ugly")
    assert official.cond.shape == (2, 77 + 77, T5_WIDTH)
    assert torch.equal(official.cond[:, 77:], torch.zeros(2, 77, T5_WIDTH))
    assert_parity(official.cond[:, :77], with_t5.cond[:, :77], tol=EXACT, what="CLIP part")
    assert_parity(official.uncond_pooled, with_t5.uncond_pooled, tol=EXACT, what="pooled")


# --------------------------------------------------------------------------------------------
# t5_length="official": the reference's recipe, written out by hand
# --------------------------------------------------------------------------------------------

def official_get_cond(pipe, text: str, t5_min_length: int = 77):
    """One prompt as SD3's reference encodes it (batch 1), with transformers' models and tokenizers:
    words split on spaces and tokenized one by one (SDTokenizer); CLIP-L [BOS] ... [EOS] padded with
    EOS to 77, bigG padded with 0; T5 on text[:226], pieces + [EOS], padded with 0 to `t5_min_length`
    (77 in the reference), no maximum; hidden_states[-2] of both CLIPs; pooled = the final-LayerNorm'd
    state at argmax(ids), projected for bigG only; T5's last state without a mask (get_cond)."""
    words = [w for w in text.replace("\n", " ").split(" ") if w]
    clip = [t for w in words for t in pipe.tokenizer(w)["input_ids"][1:-1]]
    assert len(clip) <= 75, "the transcription covers prompts that fit one 77-token chunk"
    l_ids = torch.tensor([[BOS] + clip + [EOS] + [EOS] * (75 - len(clip))])
    g_ids = torch.tensor([[BOS] + clip + [EOS] + [0] * (75 - len(clip))])
    t5_words = [w for w in text[:226].replace("\n", " ").split(" ") if w]
    t5 = [t for w in t5_words for t in pipe.tokenizer_3(w)["input_ids"][:-1]] + [1]
    t5_ids = torch.tensor([t5 + [0] * max(0, t5_min_length - len(t5))])
    with torch.no_grad():
        l = pipe.text_encoder(l_ids, output_hidden_states=True)
        g = pipe.text_encoder_2(g_ids, output_hidden_states=True)
        t5_out = pipe.text_encoder_3(t5_ids).last_hidden_state
        l_pooled = l.last_hidden_state[0, l_ids[0].argmax()][None]
        g_pooled = pipe.text_encoder_2.text_projection(g.last_hidden_state[0, g_ids[0].argmax()][None])
    lg = torch.cat([l.hidden_states[-2], g.hidden_states[-2]], dim=-1)
    lg = F.pad(lg, (0, T5_WIDTH - lg.shape[-1]))                        # 4096 - 2048 in the reference
    return torch.cat([lg, t5_out], dim=-2), torch.cat([l_pooled, g_pooled], dim=-1)


def test_official_matches_the_reference_recipe(stack):
    pipe, folder = stack
    e = ours(folder).encode(PROMPTS)                                   # t5_length="official" is the default
    assert e.cond.shape == (2, 77 + 77, T5_WIDTH)                      # 34 and 10 T5 tokens: padded to 77
    neg, neg_pooled = official_get_cond(pipe, "")
    for i, prompt in enumerate(PROMPTS):
        cond, pooled = official_get_cond(pipe, prompt)
        assert_parity(e.cond[i:i + 1], cond, tol=FP32, what=f"context {i}")
        assert_parity(e.cond_pooled[i:i + 1], pooled, tol=FP32, what=f"pooled {i}")
        assert_parity(e.uncond[i:i + 1], neg, tol=FP32, what="negative context (T5(''))")
        assert_parity(e.uncond_pooled[i:i + 1], neg_pooled, tol=FP32, what="negative pooled")


def test_official_t5_length_grows_past_77_tokens(stack):
    pipe, folder = stack
    text = ours(folder)
    e = text.encode(LONG_T5, guided=False)
    cond, pooled = official_get_cond(pipe, LONG_T5)
    assert cond.shape[1] == 77 + 122                                    # 121 pieces + EOS, no maximum
    assert_parity(e.cond, cond, tol=FP32, what="context")
    assert_parity(e.cond_pooled, pooled, tol=FP32, what="pooled")
    # With guidance every row of the call (here T5("")) is padded to the longest row (module docstring).
    e = text.encode([PROMPTS[0], LONG_T5], "")
    assert e.cond.shape == e.uncond.shape == (2, 77 + 122, T5_WIDTH)
    assert_parity(e.cond[1:], cond, tol=FP32, what="the long prompt")
    assert_parity(e.cond[:1], official_get_cond(pipe, PROMPTS[0], 122)[0], tol=FP32, what="the short prompt, padded")
    assert_parity(e.uncond[:1], official_get_cond(pipe, "", 122)[0], tol=FP32, what="T5(''), padded")


def test_official_t5_reads_the_first_226_characters(stack):
    pipe, folder = stack
    prompt = "cat " * 75                                               # 300 characters, 77 CLIP tokens
    with pytest.warns(UserWarning, match=r"first 226 characters .* prompt 0 has 300"):
        e = ours(folder).encode(prompt, guided=False)
    cond, pooled = official_get_cond(pipe, prompt)
    assert cond.shape[1] == 77 + 228
    assert_parity(e.cond, cond, tol=FP32, what="context")
    assert_parity(e.cond_pooled, pooled, tol=FP32, what="pooled")


def test_assemble_context_hand_derived():
    l, g, t5 = torch.full((1, 77, 2), 1.0), torch.full((1, 77, 3), 2.0), torch.full((1, 4, 8), 3.0)
    expected = torch.zeros(1, 81, 8)
    expected[:, :77, :2], expected[:, :77, 2:5], expected[:, 77:] = 1.0, 2.0, 3.0
    assert_parity(assemble_context(l, g, t5), expected, tol=EXACT, what="context")


# --------------------------------------------------------------------------------------------
# Single files, lifetime, dtypes
# --------------------------------------------------------------------------------------------

def test_sd3_single_files_and_a_whole_file(stack, tmp_path):
    """text_encoders/clip_l.safetensors (with a projection that must NOT be applied), clip_g, T5 in
    float16 with only encoder.embed_tokens.weight; then all three inside one file, prefixed."""
    pipe, folder = stack
    l_sd = dict(pipe.text_encoder.state_dict())
    l_sd["text_projection.weight"] = torch.randn(L_WIDTH, L_WIDTH)        # OpenAI's projection is in the file
    g_sd = dict(pipe.text_encoder_2.state_dict())
    t5_sd = {k: v.half() for k, v in pipe.text_encoder_3.state_dict().items() if k != "shared.weight"}
    files = {"clip_l": l_sd, "clip_g": g_sd, "t5xxl": t5_sd}
    for name, sd in files.items():
        save_file(sd, tmp_path / f"{name}.safetensors")
    whole = tmp_path / "sd3_incl_clips_t5xxlfp16.safetensors"
    save_file({f"text_encoders.{n}.transformer.{k}": v for n, sd in files.items() for k, v in sd.items()}, whole)
    configs = dict(clip_l_config=minidit_clip_config(L_WIDTH, "quick_gelu"),
                   clip_g_config=minidit_clip_config(G_WIDTH, "gelu"), context_width=T5_WIDTH)
    ref = diffusers_encode(pipe, PROMPTS, "ugly")
    for paths in ([tmp_path / f"{n}.safetensors" for n in files], [whole] * 3):
        text = SD3TextEncoders.from_files(*paths, tokenizers=folder, **configs)
        assert_like_diffusers(text.encode(PROMPTS, "ugly", t5_length="diffusers"), ref)
    no_t5 = SD3TextEncoders.from_files(*paths[:2], tokenizers=folder, **configs)
    assert no_t5.t5 is None and no_t5.encode("a cat").cond.shape == (1, 77 + 77, T5_WIDTH)


def test_a_whole_file_is_read_one_encoder_at_a_time(stack, tmp_path, monkeypatch):
    """SD3's `*_incl_clips_t5xxlfp16` file also holds the MM-DiT and the VAE: each encoder reads its own
    tensors from it, once, and nothing else (a 16 GB file is never read whole). Spy: every dict the
    safetensors reader returns."""
    pipe, folder = stack
    parts = {"clip_l": pipe.text_encoder.state_dict(), "clip_g": pipe.text_encoder_2.state_dict(),
             "t5xxl": {k: v for k, v in pipe.text_encoder_3.state_dict().items() if k != "shared.weight"}}
    whole = {f"text_encoders.{n}.transformer.{k}": v for n, sd in parts.items() for k, v in sd.items()}
    whole["model.diffusion_model.x_embedder.proj.weight"] = torch.ones(4)      # the other components
    whole["first_stage_model.decoder.conv_in.weight"] = torch.ones(4)
    path = tmp_path / "sd3_incl_clips_t5xxlfp16.safetensors"
    save_file(whole, path)
    reads, real = [], weights_io._read_safetensors

    def spy(*args, **kwargs):
        sd = real(*args, **kwargs)
        reads.append(sorted(sd))
        return sd
    monkeypatch.setattr(weights_io, "_read_safetensors", spy)
    text = SD3TextEncoders.from_files(path, path, path, tokenizers=folder, context_width=T5_WIDTH,
                                      clip_l_config=minidit_clip_config(L_WIDTH, "quick_gelu"),
                                      clip_g_config=minidit_clip_config(G_WIDTH, "gelu"))
    assert_like_diffusers(text.encode(PROMPTS, "ugly", t5_length="diffusers"), diffusers_encode(pipe, PROMPTS, "ugly"))
    assert reads == [sorted(f"text_encoders.{n}.transformer.{k}" for k in parts[n]) for n in parts]


def test_staged_lifetime_one_encoder_at_a_time(stack):
    _, folder = stack
    loads = []
    text = None

    def loader(name, load):
        def load_it():
            alive = [n for n in ("clip_l", "clip_g", "t5") if getattr(text, n).module is not None]
            loads.append((name, alive))
            return load()
        return load_it
    tok = dict(tokenizer_l=load_clip_tokenizer(folder, component="tokenizer", pad_token="<|endoftext|>"),
               tokenizer_g=load_clip_tokenizer(folder, component="tokenizer_2", pad_token="!"),
               tokenizer_t5=SD3TextEncoders.from_pretrained(folder, context_width=T5_WIDTH).tokenizer_t5)
    models = dict(clip_l=loader("clip_l", lambda: load_clip(folder, component="text_encoder")),
                  clip_g=loader("clip_g", lambda: load_clip(folder, component="text_encoder_2")),
                  t5=loader("t5", lambda: load_t5(folder)))
    text = SD3TextEncoders(**models, **tok, keep=False, context_width=T5_WIDTH)
    for _ in range(2):
        text.encode(PROMPTS)
    assert loads == [("clip_l", []), ("clip_g", []), ("t5", [])] * 2          # loaded in turn, each freed after
    assert all(getattr(text, n).module is None for n in ("clip_l", "clip_g", "t5"))
    loads.clear()
    text = SD3TextEncoders(**models, **tok, keep=True, context_width=T5_WIDTH)
    first, second = text.encode(PROMPTS), text.encode(PROMPTS)
    assert [n for n, _ in loads] == ["clip_l", "clip_g", "t5"]                 # kept: loaded once
    assert_parity(first.cond, second.cond, tol=EXACT, what="the same encoders")
    assert isinstance(text.t5, Staged) and text.t5.module is not None


def test_fp16_t5_is_guarded_and_dtypes_are_explicit(stack):
    pipe, folder = stack
    t5 = load_t5(folder).half()                                    # a plain .half(): wo in float16
    text = SD3TextEncoders.from_pretrained(folder, context_width=T5_WIDTH)
    text.t5 = Staged(t5)
    e = text.encode(PROMPTS, t5_length="diffusers", dtype=torch.bfloat16)
    assert t5.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32     # guard_fp16
    assert e.cond.dtype == e.cond_pooled.dtype == e.uncond.dtype == torch.bfloat16
    ref = diffusers_encode(pipe, PROMPTS)
    assert_parity(e.cond.float(), ref[0], tol=FP16, what="fp16 T5 + bf16 output vs float32")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

def test_bad_input_errors(stack, tmp_path):
    _, folder = stack
    text = ours(folder)
    with pytest.raises(ValueError, match="2 negative prompts for 1 prompts"):
        text.encode("a cat", ["", ""])
    with pytest.raises(ValueError, match="t5_length must be one of"):
        text.encode("a cat", t5_length="longest")
    with pytest.raises(ValueError, match=r"max_sequence_length must lie in \[1, 512\]"):
        text.encode("a cat", t5_length="diffusers", max_sequence_length=513)
    with pytest.raises(ValueError, match="pass t5_length='diffusers' with it"):
        text.encode("a cat", max_sequence_length=256)
    with pytest.raises(ValueError, match="no prompt given"):
        text.encode([])
    with pytest.raises(TypeError, match="prompt must be a string or a list of strings"):
        text.encode(["a cat", 3])
    with pytest.raises(ValueError, match="num_images_per_prompt must be at least 1"):
        text.encode("a cat", num_images_per_prompt=0)
    with pytest.raises(ValueError, match="T5's width is 96, the context width 4096"):
        SD3TextEncoders.from_pretrained(folder).encode("a cat")
    kw = dict(clip_l=load_clip(folder, component="text_encoder"), clip_g=load_clip(folder, component="text_encoder_2"),
              t5=None, tokenizer_l=text.tokenizer_l, tokenizer_g=text.tokenizer_g, context_width=T5_WIDTH)
    with pytest.raises(ValueError, match=r"pads CLIP-L's tokens with EOS.*pad_token='<\|endoftext\|>'"):
        SD3TextEncoders(**{**kw, "tokenizer_l": text.tokenizer_g})
    with pytest.raises(ValueError, match=r"pads bigG's tokens with id 0.*pad_token='!'"):
        SD3TextEncoders(**{**kw, "tokenizer_g": text.tokenizer_l})
    with pytest.raises(ValueError, match="T5 needs its tokenizer"):
        SD3TextEncoders(**{**kw, "t5": kw["clip_l"]})
    g_sd = load_clip(folder, component="text_encoder_2").state_dict()
    no_projection = load_clip({k: v for k, v in g_sd.items() if k != "text_projection.weight"},
                              replace(minidit_clip_config(G_WIDTH, "gelu"), projection_dim=None))
    with pytest.raises(ValueError, match="no text_projection"):
        SD3TextEncoders(**{**kw, "clip_g": no_projection}).encode("a cat")
    partial = tmp_path / "no_t5"
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("text_encoder_3", "tokenizer_3"))
    with pytest.raises(MissingPartError, match="text_encoder_3/config.json.*drop_t5=True"):
        ours(partial)
    assert ours(partial, drop_t5=True).encode("a cat").cond.shape == (1, 154, T5_WIDTH)
    with pytest.raises(FileNotFoundError, match="clip_l: .* is not a file.*text_encoders/clip_l.safetensors"):
        SD3TextEncoders.from_files(tmp_path / "clip_l.safetensors", tmp_path / "clip_g.safetensors", tokenizers=folder)
