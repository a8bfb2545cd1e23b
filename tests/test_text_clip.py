"""CLIP text tower: parity with transformers' CLIPTextModel / CLIPTextModelWithProjection and with
open_clip's own TextTransformer (the OpenCLIP-native layout), through every layout the loader
reads; SD3's uses (penultimate states, unprojected CLIP-L pooled, projected bigG); the full-size
key/shape contract of CLIP-L and bigG."""
import pytest
import torch
from safetensors.torch import save_file

from minidit.attention import attention_backend
from minidit.text import clip
from weights_loader import CheckpointError, load_clip
from weights_loader.clip import clip_config_from_transformers, clip_from_transformers, detect_clip_config
from weights_loader.io import build_on_meta

from helpers import FP32, assert_key_contract, assert_parity, perturb, require
from helpers.text import open_clip_text_transformer

transformers = require("transformers")

VOCAB, BOS, EOS = 300, 298, 299
TINY = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=77, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)


def _ids():
    """Two 77-token prompts: CLIP-L style (padded with EOS) and bigG style (padded with 0)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, BOS, (2, 77), generator=g)
    ids[:, 0] = BOS
    ids[0, 10:] = EOS                          # pooled at the FIRST EOS (position 10)
    ids[1, 40], ids[1, 41:] = EOS, 0
    return ids


def _tiny_minidit_config(hidden_act, projection_dim):
    return clip.CLIPTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                               num_attention_heads=4, hidden_act=hidden_act, eos_token_id=EOS,
                               projection_dim=projection_dim)


@pytest.fixture(scope="session")
def clip_folders(tmp_path_factory):
    torch.manual_seed(0)
    plain = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY, hidden_act="quick_gelu")).eval()
    proj = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(**TINY, hidden_act="gelu", projection_dim=24)).eval()
    root = tmp_path_factory.mktemp("clip")
    plain.save_pretrained(root / "pipe" / "text_encoder")       # an SD3-like root with two CLIPs
    proj.save_pretrained(root / "pipe" / "text_encoder_2")
    (root / "pipe" / "model_index.json").write_text("{}")
    return plain, proj, root


def _compare(ours, ids, ref_last, ref_hidden, ref_pooled, ref_embeds=None, mask=None):
    with torch.no_grad():
        out = ours(ids, mask, output_hidden_states=True)
    assert_parity(out.last_hidden_state, ref_last, tol=FP32, what="last_hidden_state")
    assert len(out.hidden_states) == len(ref_hidden)
    assert_parity(out.hidden_states[-2], ref_hidden[-2], tol=FP32, what="hidden_states[-2]")   # SD3's sequence
    for i, (a, b) in enumerate(zip(out.hidden_states, ref_hidden)):
        assert_parity(a, b, tol=FP32, what=f"hidden_states[{i}]")
    assert_parity(out.pooler_output, ref_pooled, tol=FP32, what="pooler_output")
    if ref_embeds is None:
        assert out.text_embeds is None
    else:
        assert_parity(out.text_embeds, ref_embeds, tol=FP32, what="text_embeds")


def _hf(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True)


def test_clip_text_model_folder(clip_folders):
    """transformers 5 CLIPTextModel: keys without `text_model.`, no projection (CLIP-L as SD3 uses it)."""
    plain, _, root = clip_folders
    ours = load_clip(root / "pipe" / "text_encoder")
    assert ours.config.projection_dim is None and ours.config.hidden_act == "quick_gelu"
    ids = _ids()
    ref = _hf(plain, ids)
    _compare(ours, ids, ref.last_hidden_state, ref.hidden_states, ref.pooler_output)
    mask = (torch.arange(77)[None] <= torch.tensor([[10], [40]])).long()
    ref = _hf(plain, ids, mask)
    _compare(ours, ids, ref.last_hidden_state, ref.hidden_states, ref.pooler_output, mask=mask)
    with attention_backend("manual"):
        _compare(ours, ids, ref.last_hidden_state, ref.hidden_states, ref.pooler_output, mask=mask)


def test_clip_with_projection_from_a_pipeline_root(clip_folders):
    """bigG as SD3 uses it: text_encoder_2/, projected pooled output (text_embeds)."""
    _, proj, root = clip_folders
    with pytest.raises(CheckpointError, match="component="):
        load_clip(root / "pipe")                               # two CLIPs: which one?
    ours = load_clip(root / "pipe", component="text_encoder_2")
    assert ours.config.projection_dim == 24 and ours.config.hidden_act == "gelu"
    ids = _ids()
    ref = _hf(proj, ids)
    with torch.no_grad():
        pooled = proj.text_model(input_ids=ids).pooler_output
    _compare(ours, ids, ref.last_hidden_state, ref.hidden_states, pooled, ref.text_embeds)


def test_full_clip_model_folder_with_legacy_eos(tmp_path):
    """openai/clip-vit-large-patch14 is a whole CLIPModel (text + vision) whose config says
    eos_token_id=2: the text half is loaded, pooling stays at the real EOS (argmax of the ids)."""
    torch.manual_seed(0)
    text = {**TINY, "eos_token_id": 2, "bos_token_id": 0, "pad_token_id": 1, "projection_dim": 24}
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    full = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision,
                                                          projection_dim=24)).eval()
    full.save_pretrained(tmp_path / "clip")
    ours = load_clip(tmp_path / "clip")
    assert ours.config.eos_token_id == VOCAB - 1 and ours.config.projection_dim == 24
    ids = _ids()
    with torch.no_grad():
        ref = full.text_model(input_ids=ids, output_hidden_states=True)
        embeds = full.text_projection(ref.pooler_output)
    _compare(ours, ids, ref.last_hidden_state, ref.hidden_states, ref.pooler_output, embeds)


def test_sd3_single_files(clip_folders, tmp_path):
    """clip_l / clip_g single files (text_model.* keys, no config), alone and inside a whole SD3 file."""
    plain, proj, _ = clip_folders
    l_sd = {f"text_model.{k}": v for k, v in plain.state_dict().items()}
    g_sd = proj.state_dict()
    save_file(l_sd, tmp_path / "clip_l.safetensors")
    whole = {**{f"text_encoders.clip_l.transformer.{k}": v for k, v in l_sd.items()},
             **{f"text_encoders.clip_g.transformer.{k}": v for k, v in g_sd.items()},
             "text_encoders.t5xxl.transformer.shared.weight": torch.zeros(2, 2)}
    save_file(whole, tmp_path / "sd3_incl_clips.safetensors")
    ids = _ids()
    ref_l, ref_g = _hf(plain, ids), _hf(proj, ids)
    with torch.no_grad():
        pooled_g = proj.text_model(input_ids=ids).pooler_output
    config_l, config_g = _tiny_minidit_config("quick_gelu", None), _tiny_minidit_config("gelu", 24)
    ours = load_clip(tmp_path / "clip_l.safetensors", config_l)
    _compare(ours, ids, ref_l.last_hidden_state, ref_l.hidden_states, ref_l.pooler_output)
    with pytest.raises(CheckpointError, match="several"):
        load_clip(tmp_path / "sd3_incl_clips.safetensors", config_l)
    ours = load_clip(tmp_path / "sd3_incl_clips.safetensors", config_g, component="clip_g")
    _compare(ours, ids, ref_g.last_hidden_state, ref_g.hidden_states, pooled_g, ref_g.text_embeds)
    # Loading CLIP-L's file into a config with a projection is a loud error, not a silent init.
    with pytest.raises(CheckpointError, match="missing keys: text_projection.weight"):
        load_clip(tmp_path / "clip_l.safetensors", _tiny_minidit_config("quick_gelu", 24))


def test_openclip_native_layout_against_open_clip():
    """OpenCLIP's own TextTransformer (fused in_proj, c_fc/c_proj, a (D, P) text_projection) with
    random weights, saved as SDXL stores it, loaded through the key map: same numbers."""
    TextTransformer = open_clip_text_transformer()
    torch.manual_seed(0)
    ref = TextTransformer(context_length=77, vocab_size=VOCAB, width=32, heads=4, layers=3, mlp_ratio=1.5,
                          output_dim=24, act_layer=torch.nn.GELU, pool_type="argmax", output_tokens=True).eval()
    perturb(ref, seed=None, scale=0.02)                          # no zero biases / unit norms left
    sd = {f"conditioner.embedders.1.model.{k}": v for k, v in ref.state_dict().items()}
    sd["conditioner.embedders.1.model.logit_scale"] = torch.tensor(4.6)
    ours = load_clip(sd, _tiny_minidit_config("gelu", 24))
    ids = _ids()
    with torch.no_grad():
        pooled_proj, tokens = ref(ids)
        blocks = ref.forward_intermediates(ids, output_fmt="NLC")["text_intermediates"]
        out = ours(ids, output_hidden_states=True)
    assert_parity(out.last_hidden_state, tokens, tol=FP32, what="last_hidden_state vs open_clip tokens")
    assert_parity(out.text_embeds, pooled_proj, tol=FP32, what="text_embeds vs open_clip pooled")
    assert len(blocks) == 3
    for i, (a, b) in enumerate(zip(out.hidden_states[1:], blocks)):
        assert_parity(a, b, tol=FP32, what=f"block {i} output vs open_clip")
    bad = dict(sd)
    bad["conditioner.embedders.1.model.transformer.resblocks.0.attn.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="attn.extra"):
        load_clip(bad, _tiny_minidit_config("gelu", 24))


def test_pooling_needs_an_eos():
    model = clip.CLIPTextModel(_tiny_minidit_config("gelu", None)).eval()
    ids = _ids()
    ids[1, 40] = 5
    with pytest.raises(ValueError, match=r"rows \[1\].*no EOS"):
        model(ids)


FULL_SIZE = {
    "clip-vit-large-patch14": dict(projection_dim=768),        # transformers' CLIPTextConfig defaults = CLIP-L
    "openclip-vit-bigG-14": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                 num_attention_heads=20, hidden_act="gelu", projection_dim=1280),
    "openclip-vit-h-14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, hidden_act="gelu", projection_dim=1024),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_key_and_shape_contract(name):
    config = transformers.CLIPTextConfig(**{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                                            "num_attention_heads": 12, **FULL_SIZE[name]})
    with torch.device("meta"):
        hf = transformers.CLIPTextModelWithProjection(config)
    sd = clip_from_transformers(hf.state_dict())
    ours = build_on_meta(clip.CLIPTextModel, clip.PRESETS[name]).state_dict()
    assert_key_contract(ours, sd, f"{name} vs transformers after mapping")
    assert clip_config_from_transformers(config.to_dict(), True) == clip.PRESETS[name]
    assert detect_clip_config(sd) == clip.PRESETS[name]
