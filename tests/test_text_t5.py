"""T5 v1.1 / mT5 encoder: parity with transformers' T5EncoderModel / MT5EncoderModel through every
file layout the loader reads, the relative-position buckets, the fp16 policy, and the full-size
key/shape contract of every preset."""
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from minidit.attention import attention_backend
from minidit.text import t5
from weights_loader import CheckpointError, load_t5
from weights_loader.io import build_on_meta
from weights_loader.t5 import detect_t5_config, t5_config_from_transformers, t5_from_transformers

from helpers import BF16, EXACT, FP16, FP32, assert_key_contract, assert_parity, require

transformers = require("transformers")

# d_kv * heads (64) != d_model (48) and a short max_distance, so a 40-token prompt reaches the
# logarithmic buckets and the last bucket.
TINY = dict(vocab_size=200, d_model=48, d_kv=16, d_ff=72, num_layers=3, num_heads=4,
            relative_attention_max_distance=20, feed_forward_proj="gated-gelu")


def _ids(vocab, B=2, L=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 25:] = 0                                           # the second prompt is padded
    ids[1, 25:] = 0
    return ids, mask


@pytest.fixture(scope="session")
def t5_folders(tmp_path_factory):
    """transformers T5 and mT5 encoders (random weights) saved as transformers writes them."""
    torch.manual_seed(0)
    hf_t5 = transformers.T5EncoderModel(transformers.T5Config(**TINY)).eval()
    hf_mt5 = transformers.MT5EncoderModel(transformers.MT5Config(**{**TINY, "relative_attention_max_distance": 128})).eval()
    root = tmp_path_factory.mktemp("t5")
    hf_t5.save_pretrained(root / "t5")
    hf_t5.save_pretrained(root / "t5_sharded", max_shard_size="40KB")
    hf_mt5.save_pretrained(root / "mt5")
    return hf_t5, hf_mt5, root


def _compare(hf, ours, ids, mask):
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, mask, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == hf.config.num_layers + 1
    assert_parity(out.last_hidden_state, ref.last_hidden_state, tol=FP32, what="last_hidden_state")
    assert_parity(out.hidden_states[-2], ref.hidden_states[-2], tol=FP32, what="hidden_states[-2]")
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_parity(a, b, tol=FP32, what=f"hidden_states[{i}]")
    assert out.pooler_output is None


# --------------------------------------------------------------------------------------------
# Relative position buckets
# --------------------------------------------------------------------------------------------

def test_relative_position_bucket_hand_derived():
    # 32 buckets, bidirectional: 16 per direction; offsets 0..7 exact; j > i adds 16.
    rel = torch.tensor([0, -1, -7, 1, 7, -8, 8, -127, 127, -128, 128, -1000, 1000])
    # n = 8: 8 + floor(log(8/8) / log(128/8) * 8) = 8; n = 127: 8 + floor(log(15.875)/log(16) * 8) = 15;
    # n >= 128 saturates at 15.
    expected = torch.tensor([0, 1, 7, 17, 23, 8, 24, 15, 31, 15, 31, 15, 31])
    assert torch.equal(t5.relative_position_bucket(rel), expected)


def test_relative_position_bucket_matches_transformers():
    rel = torch.arange(-300, 301)[None, :] - torch.arange(0, 5)[:, None]
    hf_bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    for bidirectional in (True, False):
        for buckets, distance in [(32, 128), (32, 20), (16, 64)]:
            assert torch.equal(t5.relative_position_bucket(rel, bidirectional, buckets, distance),
                               hf_bucket(rel, bidirectional, buckets, distance))


# --------------------------------------------------------------------------------------------
# Parity through the loader
# --------------------------------------------------------------------------------------------

def test_t5_folder_parity_with_and_without_mask(t5_folders):
    hf_t5, _, root = t5_folders
    ours = load_t5(root / "t5")
    assert ours.config.relative_attention_max_distance == 20 and ours.config.d_kv == 16
    ids, mask = _ids(TINY["vocab_size"])
    _compare(hf_t5, ours, ids, mask)                           # PixArt: with the padding mask
    _compare(hf_t5, ours, ids, None)                           # SD3: no mask, padding attended
    with attention_backend("manual"):
        _compare(hf_t5, ours, ids, mask)


def test_mask_changes_the_output(t5_folders):
    # Why PixArt and SD3 differ: with the mask, padding tokens are invisible to the real ones.
    ours = load_t5(t5_folders[2] / "t5")
    ids, mask = _ids(TINY["vocab_size"])
    with torch.no_grad():
        a = ours(ids, mask).last_hidden_state[1, :25]
        b = ours(ids).last_hidden_state[1, :25]
        c = ours(ids[1:, :25]).last_hidden_state[0]            # the prompt alone, unpadded
    assert_parity(a, c, tol=FP32, what="masked padded prompt vs the prompt alone")
    assert (a - b).abs().max() > 1e-2


def test_sharded_folder_and_pipeline_root(t5_folders, tmp_path):
    hf_t5, _, root = t5_folders
    assert (root / "t5_sharded" / "model.safetensors.index.json").is_file()
    ids, mask = _ids(TINY["vocab_size"])
    _compare(hf_t5, load_t5(root / "t5_sharded"), ids, mask)
    # An SD3-like pipeline root: T5 sits in text_encoder_3/ next to a CLIP in text_encoder/.
    pipe = tmp_path / "pipe"
    hf_t5.save_pretrained(pipe / "text_encoder_3")
    (pipe / "text_encoder").mkdir()
    (pipe / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    (pipe / "model_index.json").write_text("{}")
    _compare(hf_t5, load_t5(pipe), ids, mask)
    _compare(hf_t5, load_t5(pipe, component="text_encoder_3"), ids, mask)
    with pytest.raises(CheckpointError, match="text_encoder_2"):
        load_t5(pipe, component="text_encoder_2")


def test_pytorch_bin_shards_as_pixart_alpha_ships_t5(t5_folders, tmp_path):
    """PixArt-α's t5-v1_1-xxl/ folder holds pytorch_model-0000{1,2}-of-00002.bin and
    pytorch_model.bin.index.json (docs/checkpoints.md#t5-v11-and-mt5); transformers 5 no longer writes .bin files, so
    the layout is written here by hand. The shards are read with torch.load(weights_only=True)."""
    hf_t5, _, root = t5_folders
    sd = hf_t5.state_dict()
    keys = sorted(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
    for name, names in shards.items():
        torch.save({k: sd[k].clone() for k in names}, tmp_path / name)
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    shutil.copy(root / "t5" / "config.json", tmp_path)
    _compare(hf_t5, load_t5(tmp_path), *_ids(TINY["vocab_size"]))


def test_mt5_folder_parity(t5_folders, tmp_path):
    _, hf_mt5, root = t5_folders
    _compare(hf_mt5, load_t5(root / "mt5"), *_ids(TINY["vocab_size"]))
    # Hunyuan-DiT's t2i/mt5/config.json was written by transformers 4.10: no dense_act_fn, no
    # relative_attention_max_distance, architectures MT5ForConditionalGeneration.
    cfg = json.loads((root / "mt5" / "config.json").read_text())
    for key in ("dense_act_fn", "relative_attention_max_distance", "is_gated_act"):
        cfg.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, architectures=["MT5ForConditionalGeneration"])))
    shutil.copy(root / "mt5" / "model.safetensors", tmp_path)
    _compare(hf_mt5, load_t5(tmp_path), *_ids(TINY["vocab_size"]))


def test_sd3_single_file_with_and_without_prefix(t5_folders, tmp_path):
    """SD3's t5xxl_fp16.safetensors: fp16, config-less, `encoder.embed_tokens.weight` instead of
    `shared.weight`; also inside a whole SD3 file under text_encoders.t5xxl.transformer."""
    _, hf_mt5, _ = t5_folders
    hf = transformers.MT5EncoderModel(hf_mt5.config).eval()
    hf.load_state_dict(hf_mt5.state_dict())
    for p in hf.parameters():                                  # fp16-representable weights: the file is exact
        p.data = p.data.half().float()
    sd = {k: v.half() for k, v in hf.state_dict().items() if k != "shared.weight"}
    assert "encoder.embed_tokens.weight" in sd
    save_file(sd, tmp_path / "t5xxl_fp16.safetensors")
    ids, mask = _ids(TINY["vocab_size"])
    _compare(hf, load_t5(tmp_path / "t5xxl_fp16.safetensors"), ids, mask)
    whole = {f"text_encoders.t5xxl.transformer.{k}": v for k, v in sd.items()}
    whole["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"] = torch.ones(4)
    whole["model.diffusion_model.x_embedder.proj.weight"] = torch.ones(4)
    save_file(whole, tmp_path / "sd3_incl_t5.safetensors")
    _compare(hf, load_t5(tmp_path / "sd3_incl_t5.safetensors"), ids, mask)


def test_full_t5_checkpoint_keeps_the_encoder(t5_folders):
    hf_t5 = t5_folders[0]
    full = transformers.T5ForConditionalGeneration(transformers.T5Config(**TINY, decoder_start_token_id=0)).eval()
    full.encoder.load_state_dict(hf_t5.encoder.state_dict())
    full.shared.weight.data.copy_(hf_t5.shared.weight.data)
    sd = full.state_dict()
    assert any(k.startswith("decoder.") for k in sd)
    ours = load_t5(sd, t5.T5Config(**TINY))
    _compare(hf_t5, ours, *_ids(TINY["vocab_size"]))


def test_loader_errors(t5_folders):
    sd = dict(load_t5(t5_folders[2] / "t5").state_dict())
    bad = dict(sd)
    bad["encoder.embed_tokens.weight"] = bad["shared.weight"] + 1
    with pytest.raises(CheckpointError, match="tied"):
        load_t5(bad)
    del sd["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        load_t5(sd)
    with pytest.raises(CheckpointError, match="not look like a T5"):
        load_t5({"embeddings.word_embeddings.weight": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match="token ids"):
        load_t5(t5_folders[2] / "t5")(torch.tensor([[1, 2, 999]]))


# --------------------------------------------------------------------------------------------
# fp16 policy
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def overflowing_t5(t5_folders, tmp_path_factory):
    """A tiny T5 whose first feed-forward output exceeds fp16's range (max 65504), as T5 v1.1-XXL's
    activations do: wo of block 0 scaled up. The final RMSNorm brings the output back to O(1)."""
    hf = transformers.T5EncoderModel(t5_folders[0].config).eval()
    hf.load_state_dict(t5_folders[0].state_dict())
    with torch.no_grad():
        hf.encoder.block[0].layer[1].DenseReluDense.wo.weight.mul_(1e5)
    folder = tmp_path_factory.mktemp("t5_overflow")
    hf.save_pretrained(folder)
    return hf, folder


def test_fp16_overflow_is_real_and_the_guard_works(overflowing_t5):
    hf, folder = overflowing_t5
    ids, mask = _ids(TINY["vocab_size"])
    ref32 = load_t5(folder)
    with torch.no_grad():
        out32 = ref32(ids, mask, output_hidden_states=True)
    peak = max(h.abs().max().item() for h in out32.hidden_states[1:-1])
    assert peak > 2 * 65504, f"the test must provoke an overflow (residual peak {peak:.0f})"
    assert torch.isfinite(out32.last_hidden_state).all()

    naive = load_t5(folder)
    naive.half()                                               # everything fp16: the bug users hit
    with torch.no_grad():
        bad = naive(ids, mask).last_hidden_state
    assert not torch.isfinite(bad).all(), "plain fp16 should overflow (inf/NaN) on this model"

    guarded = load_t5(folder, dtype=torch.float16)             # minidit's policy: wo stays fp32
    wo = guarded.encoder.block[0].layer[1].DenseReluDense.wo.weight
    assert wo.dtype == torch.float32 and guarded.shared.weight.dtype == torch.float16
    with torch.no_grad():
        good = guarded(ids, mask).last_hidden_state
    assert torch.isfinite(good).all()
    assert_parity(good.float(), out32.last_hidden_state, tol=FP16, what="guarded fp16 vs fp32")

    # transformers applies the same guard (_keep_in_fp32_modules = ["wo"]): same numbers.
    hf16 = transformers.T5EncoderModel.from_pretrained(folder, dtype=torch.float16).eval()
    assert hf16.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    with torch.no_grad():
        ref16 = hf16(input_ids=ids, attention_mask=mask).last_hidden_state
    assert_parity(good.float(), ref16.float(), tol=FP16, what="guarded fp16 vs transformers' fp16")

    # cast_t5 applies the same policy to a model already in memory; bf16 needs no guard.
    cast = t5.cast_t5(load_t5(folder), torch.float16)
    with torch.no_grad():
        assert_parity(cast(ids, mask).last_hidden_state, good, tol=EXACT, what="cast_t5 vs load_t5(dtype=float16)")
        b16 = load_t5(folder, dtype=torch.bfloat16)(ids, mask).last_hidden_state
    assert torch.isfinite(b16).all()
    assert_parity(b16.float(), out32.last_hidden_state, tol=BF16, what="bf16 vs fp32")


# --------------------------------------------------------------------------------------------
# Full-size contract (meta device: no memory, no weights)
# --------------------------------------------------------------------------------------------

FULL_SIZE = {
    "t5-v1_1-small": ("T5", dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6)),
    "t5-v1_1-base": ("T5", dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)),
    "t5-v1_1-xxl": ("T5", dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)),
    "mt5-base": ("MT5", dict(vocab_size=250112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)),
    "mt5-xl": ("MT5", dict(vocab_size=250112, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_heads=32)),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_key_and_shape_contract(name):
    kind, kwargs = FULL_SIZE[name]
    config = getattr(transformers, f"{kind}Config")(**{"vocab_size": 32128, **kwargs, "feed_forward_proj": "gated-gelu"})
    with torch.device("meta"):
        hf = getattr(transformers, f"{kind}EncoderModel")(config)
    ours = build_on_meta(t5.T5EncoderModel, t5.PRESETS[name]).state_dict()
    assert_key_contract(ours, t5_from_transformers(hf.state_dict()), f"{name} vs transformers after mapping")
    assert t5_config_from_transformers(config.to_dict()) == t5.PRESETS[name]
    assert detect_t5_config(hf.state_dict()) == t5.PRESETS[name]
