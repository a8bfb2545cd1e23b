"""Tier 6: SD3's released text encoders, when a user has them.

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_text.py -m slow

The folder holds (directly or under `text_encoders/`) `clip_l.safetensors`, `clip_g.safetensors`
and/or `t5xxl_fp16.safetensors` from `stabilityai/stable-diffusion-3-medium` (README, "Official
checkpoints"). The oracle is transformers' CLIPTextModel(WithProjection) / T5EncoderModel holding
the same tensors. CLIP is compared in fp32; T5-XXL (4.7 B parameters) in bf16, which needs ~20 GB
of RAM for the two copies. Real vocabularies and MiniLM's real weights are tested in CI already
(test_text_tokenizers.py, test_text_bert.py).
"""
import os
from pathlib import Path

import pytest
import torch

from weights_loader import load_clip, load_t5
from weights_loader.io import read_state_dict

from helpers import BF16, FP32_OTHER_KERNEL, assert_parity, require

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def _file(name):
    for path in (Path(WEIGHTS or "."), Path(WEIGHTS or ".") / "text_encoders"):
        if WEIGHTS and (path / name).is_file():
            return path / name
    pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name} (or text_encoders/{name}) to run this test")


def _prompt_ids(eos):
    # "a photo of an astronaut riding a horse on the moon" in CLIP's vocabulary, padded with EOS.
    ids = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 518, 3293, 49407]
    return torch.tensor([ids + [eos] * (77 - len(ids))])


@pytest.mark.parametrize("name", ["clip_l.safetensors", "clip_g.safetensors"])
def test_sd3_clip_matches_transformers(name):
    transformers = require("transformers")
    path = _file(name)
    ours = load_clip(path)
    c = ours.config
    config = transformers.CLIPTextConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        max_position_embeddings=c.max_position_embeddings, hidden_act=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
        projection_dim=c.projection_dim or c.hidden_size, eos_token_id=c.eos_token_id)
    sd = {k.removeprefix("text_model."): v.float() for k, v in read_state_dict(path).items()}
    sd.pop("embeddings.position_ids", None)
    projection = sd.pop("text_projection.weight", None)
    ref = transformers.CLIPTextModel(config).eval()
    ref.load_state_dict(sd)
    ids = _prompt_ids(c.eos_token_id)
    with torch.no_grad():
        expected = ref(input_ids=ids, output_hidden_states=True)
        out = ours(ids, output_hidden_states=True)
    assert_parity(out.hidden_states[-2], expected.hidden_states[-2], tol=FP32_OTHER_KERNEL,
                  what=f"{name} hidden_states[-2]")                                        # SD3's sequence
    assert_parity(out.pooler_output, expected.pooler_output, tol=FP32_OTHER_KERNEL, what=f"{name} pooler_output")
    if projection is not None:
        assert_parity(out.text_embeds, expected.pooler_output @ projection.T, tol=FP32_OTHER_KERNEL,
                      what=f"{name} text_embeds")


def test_sd3_t5xxl_matches_transformers():
    transformers = require("transformers")
    path = _file("t5xxl_fp16.safetensors")
    ours = load_t5(path, dtype=torch.bfloat16)
    c = ours.config
    config = transformers.T5Config(vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff,
                                   num_layers=c.num_layers, num_heads=c.num_heads, feed_forward_proj="gated-gelu",
                                   relative_attention_num_buckets=c.relative_attention_num_buckets)
    with torch.device("meta"):
        ref = transformers.T5EncoderModel(config)
    sd = {k: v.to(torch.bfloat16) for k, v in ours.state_dict().items()}
    sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
    ref.load_state_dict(sd, assign=True)
    ref.eval()
    ids = torch.tensor([[3, 9, 1202, 13, 46, 28864, 7494, 3, 9, 4952, 30, 8, 8114, 1] + [0] * 63])
    with torch.no_grad():
        expected = ref(input_ids=ids).last_hidden_state.float()           # SD3: no attention mask
        out = ours(ids).last_hidden_state.float()
    assert torch.isfinite(out).all()
    assert_parity(out, expected, tol=BF16, what="T5-XXL bf16 vs transformers' bf16")
