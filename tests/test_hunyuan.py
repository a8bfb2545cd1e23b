"""Hunyuan-DiT: 2-D RoPE against the official formula and diffusers, the transformer against diffusers'
HunyuanDiT2DModel (tiny, random, both versions), the original .pt layout, and the full-size contracts on meta."""
import numpy as np
import pytest
import torch

from helpers import EXACT, FP32, FP32_ELEMENTWISE, assert_key_contract, assert_parity, randomize, require
from helpers.layouts.hunyuan import documented_original_keys, original_to_diffusers
from minidit.embed import apply_rope, get_2d_rope, rope_crop, rope_positions
from minidit.hunyuan import PRESETS, HunyuanConfig, HunyuanDiT
from weights_loader import CheckpointError, load_hunyuan
from weights_loader.hunyuan import detect_hunyuan_config, hunyuan_from_diffusers

diffusers = require("diffusers")

# Tiny Hunyuan-like transformers: 2 heads x 8, 6 layers (skips 0, 1 -> 5, 4), CLIP width 12, "mT5" width 16.
TINY = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2, sample_size=8, hidden_size=16,
            num_layers=6, mlp_ratio=2.5, cross_attention_dim=12, cross_attention_dim_t5=16, pooled_projection_dim=20,
            text_len=5, text_len_t5=7)
VERSIONS = {"v1.2": False, "v1.1": True}
SIZES = {"square": (8, 8), "wide": (6, 10), "tall": (10, 4)}


def tiny_diffusers(size_cond, seed=0):
    torch.manual_seed(seed)
    model = diffusers.HunyuanDiT2DModel(**TINY, use_style_cond_and_image_meta_size=size_cond).eval()
    return randomize(model, seed + 1, 0.3)


def inputs(H, W, size_cond, B=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, 5, dtype=torch.long)
    mask[1, 3:] = 0                                         # a short second prompt: padded positions
    mask_t5 = torch.ones(B, 7, dtype=torch.long)
    mask_t5[0, 4:] = 0
    kw = dict(encoder_hidden_states=torch.randn(B, 5, 12, generator=g), text_embedding_mask=mask,
              encoder_hidden_states_t5=torch.randn(B, 7, 16, generator=g), text_embedding_mask_t5=mask_t5)
    if size_cond:
        kw["image_meta_size"] = torch.tensor([[H * 8, W * 8, W * 8, H * 8, 0, 0]] * B, dtype=torch.float32)
        kw["style"] = torch.zeros(B, dtype=torch.long)
    return torch.randn(B, 4, H, W, generator=g), torch.tensor([999.0, 321.0]), kw


# ---------------------------------------------------------------------------------------------- RoPE

@pytest.mark.parametrize("th, tw", [(64, 64), (40, 64), (64, 40), (80, 48), (7, 3), (1, 5)])
def test_rope_positions_follow_the_official_formula(th, tw):
    """The official grid is np.linspace(start, stop, n, endpoint=False) = start + (stop - start) * arange(n) / n."""
    (top, left), (bottom, right) = rope_crop(th, tw)
    for start, stop, n in ((top, bottom, th), (left, right, tw)):
        ours = rope_positions(start, stop, n)
        assert_parity(ours, torch.from_numpy(np.linspace(start, stop, n, endpoint=False, dtype=np.float32)), tol=EXACT)
        assert_parity(ours, (start + (stop - start) * torch.arange(n, dtype=torch.float64) / n).float(), tol=EXACT)
    assert max(bottom - top, right - left) == 32                 # the longer side fills the 32-token (512 px) box


def test_rope_grid_at_1024_is_the_base_512_grid():
    """At 1024^2 (64 x 64 tokens) the positions are 0, 0.5, ..., 31.5 on both axes (hand-derived)."""
    cos, sin = get_2d_rope(88, 64, 64)
    half = torch.arange(64) * 0.5
    w_pos, h_pos = half.repeat(64), half.repeat_interleave(64)                 # row-major tokens
    freqs = 1.0 / 10000 ** (torch.arange(0, 44, 2, dtype=torch.float32) / 44)
    expected = torch.cat([torch.outer(w_pos, freqs), torch.outer(h_pos, freqs)], dim=1).repeat_interleave(2, dim=1)
    assert_parity(cos, expected.cos(), tol=FP32_ELEMENTWISE)
    assert_parity(sin, expected.sin(), tol=FP32_ELEMENTWISE)


@pytest.mark.parametrize("th, tw", [(64, 64), (40, 64), (64, 40), (80, 48), (6, 10)])
def test_rope_crop_and_tables_against_diffusers(th, tw):
    """diffusers' crop region is the official one; its tables equal ours for square grids, and for
    non-square grids they equal ours only under convention="diffusers" (its squeezed linspace)."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid
    region = get_resize_crop_region_for_grid((th, tw), 32)
    assert rope_crop(th, tw) == region
    theirs = get_2d_rotary_pos_embed(88, region, (th, tw), use_real=True)
    for convention, should_match in (("diffusers", True), ("official", th == tw)):
        ours = get_2d_rope(88, th, tw, convention=convention)
        if should_match:
            assert_parity(ours[0], theirs[0], tol=FP32_ELEMENTWISE, what=f"cos {convention}")
            assert_parity(ours[1], theirs[1], tol=FP32_ELEMENTWISE, what=f"sin {convention}")
        else:                   # the shorter side starts at crop > 0: the diffusers grid is squeezed
            assert (ours[0] - theirs[0]).abs().max() > 1e-2


def test_diffusers_grid_deviation_is_where_the_crop_starts():
    """Hand-derived: with start s > 0 diffusers ends at stop*(n-1)/n instead of s + (stop-s)*(n-1)/n."""
    (top, _), (bottom, _) = rope_crop(48, 80)                    # 768 x 1280: rows 6 .. 25 of the box
    assert (top, bottom) == (6, 25)                               # 32 * 48/80 = 19.2 -> 19 rows, centred
    official, theirs = rope_positions(top, bottom, 48), rope_positions(top, bottom, 48, "diffusers")
    assert official[-1].item() == pytest.approx(6 + 19 * 47 / 48) and theirs[-1].item() == pytest.approx(25 * 47 / 48)
    assert (official - theirs).abs().max().item() == pytest.approx(6 / 48, rel=1e-5)     # 0.125 at the last row


def test_apply_rope_against_diffusers():
    from diffusers.models.embeddings import apply_rotary_emb
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 24, 88, generator=g)
    cos, sin = get_2d_rope(88, 4, 6)
    assert_parity(apply_rope(x, cos, sin), apply_rotary_emb(x, (cos, sin), use_real=True, use_real_unbind_dim=-1))


def test_rope_scores_depend_only_on_the_offset():
    """RoPE's point: q_i · k_j after rotation depends on the positions only through i - j."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(88, generator=g), torch.randn(88, generator=g)
    cos, sin = get_2d_rope(88, 8, 8, base_size=None)                       # positions 0..7 on both axes
    score = lambda i, j: (apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j])).item()   # noqa: E731
    # token (r, c) is r*8 + c: (1,2)-(0,0) and (5,6)-(4,4) have the same offset (1, 2)
    assert score(1 * 8 + 2, 0) == pytest.approx(score(5 * 8 + 6, 4 * 8 + 4), rel=1e-4, abs=1e-4)
    assert score(1 * 8 + 2, 0) != pytest.approx(score(2 * 8 + 1, 0), rel=1e-3)


# ---------------------------------------------------------------------------------------------- transformer

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", SIZES)
def test_tiny_transformer_against_diffusers(tmp_path, version, size):
    """Same weights through save_pretrained, same RoPE tables -> the same output."""
    size_cond = VERSIONS[version]
    reference = tiny_diffusers(size_cond)
    reference.save_pretrained(tmp_path / "transformer")
    ours = load_hunyuan(tmp_path / "transformer")
    assert ours.config.size_cond == size_cond and ours.config.depth == 6
    H, W = SIZES[size]
    x, t, kw = inputs(H, W, size_cond)
    cos, sin = get_2d_rope(8, H // 2, W // 2)
    with torch.no_grad():
        expected = reference(x, t, **kw, image_rotary_emb=(cos, sin), return_dict=False)[0]
        actual = ours(x, t, **kw, cos_cis_img=cos, sin_cis_img=sin)
    assert expected.abs().max() > 0.1
    assert_parity(actual, expected, tol=FP32, what=f"{version} {size}")


def test_default_rope_is_the_official_grid(tmp_path):
    """Without tables, forward builds the base-512 grid itself."""
    model = load_hunyuan_from(tmp_path, size_cond=False)
    x, t, kw = inputs(6, 10, False)
    cos, sin = get_2d_rope(8, 3, 5)
    with torch.no_grad():
        assert_parity(model(x, t, **kw), model(x, t, **kw, cos_cis_img=cos, sin_cis_img=sin), tol=EXACT)


def load_hunyuan_from(tmp_path, size_cond):
    tiny_diffusers(size_cond).save_pretrained(tmp_path / "t")
    return load_hunyuan(tmp_path / "t")


@pytest.mark.parametrize("version", VERSIONS)
def test_original_layout_against_diffusers(tmp_path, version):
    """A random state dict in the documented original layout: minidit reads the .pt, diffusers gets the
    converter's renaming of the same tensors; the outputs agree. Also as a DeepSpeed file and a t2i/ folder."""
    size_cond = VERSIONS[version]
    shapes = documented_original_keys(depth=6, D=16, hd=8, mlp=40, text=12, t5=16, text_len=5, t5_len=7,
                                      size_cond=size_cond)
    shapes = {k: ((4 * 16, 20 + (6 * 256 + 16 if size_cond else 0)) if k == "extra_embedder.0.weight" else
                  (20, 16) if k == "pooler.c_proj.weight" else (20,) if k == "pooler.c_proj.bias" else v)
              for k, v in shapes.items()}                       # the tiny pooler outputs 20, not 1024
    g = torch.Generator().manual_seed(5)
    sd = {k: torch.randn(s, generator=g) * 0.3 for k, s in shapes.items()}
    for k in sd:
        if k.endswith("norm.weight") or k.endswith(("norm1.weight", "norm2.weight", "norm3.weight")):
            sd[k] = 1 + sd[k] * 0.3
    (tmp_path / "t2i" / "model").mkdir(parents=True)
    torch.save(sd, tmp_path / "t2i" / "model" / "pytorch_model_ema.pt")
    torch.save({"module": sd, "ema": {k: v * 0.9 for k, v in sd.items()}}, tmp_path / "ds_model_states.pt")
    reference = diffusers.HunyuanDiT2DModel(**TINY, use_style_cond_and_image_meta_size=size_cond).eval()
    reference.load_state_dict(original_to_diffusers(sd, 6), strict=True)
    x, t, kw = inputs(6, 10, size_cond)
    cos, sin = get_2d_rope(8, 3, 5)
    with torch.no_grad():
        expected = reference(x, t, **kw, image_rotary_emb=(cos, sin), return_dict=False)[0]
        for source, key in ((tmp_path / "t2i" / "model" / "pytorch_model_ema.pt", "ema"), (tmp_path, "ema"),
                            (tmp_path / "t2i", "ema"), (tmp_path / "ds_model_states.pt", "module")):
            ours = load_hunyuan(source, load_key=key)
            assert_parity(ours(x, t, **kw, cos_cis_img=cos, sin_cis_img=sin), expected, tol=FP32, what=str(source))
    assert ours.config.size_cond == size_cond and ours.config.pooled_dim == 20


def test_load_key_errors(tmp_path):
    torch.save({"module": {"a": torch.zeros(1)}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="wraps \\['module'\\], not 'ema'.*load_key"):
        load_hunyuan(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no pytorch_model_distill.pt"):
        load_hunyuan(tmp_path, load_key="distill")
    with pytest.raises(ValueError, match="load_key must be one of"):
        load_hunyuan(tmp_path, load_key="best")


def test_odd_depth_is_refused():
    with pytest.raises(ValueError, match="even depth"):
        HunyuanDiT(HunyuanConfig(depth=5, hidden_size=16, num_heads=2))


# ---------------------------------------------------------------------------------------------- full size on meta

@pytest.mark.parametrize("name", ["hunyuan-dit-v1.2", "hunyuan-dit-v1.1"])
def test_full_size_key_contracts(name):
    """The full-size model's keys and shapes are the documented original list; a full-size diffusers model,
    renamed by the loader, has the same; the config read off the keys is the preset."""
    config = PRESETS[name]
    with torch.device("meta"):
        ours = HunyuanDiT(config)
        theirs = diffusers.HunyuanDiT2DModel(num_attention_heads=16, attention_head_dim=88, in_channels=4, patch_size=2,
                                             sample_size=128, hidden_size=1408, num_layers=40, mlp_ratio=4.3637,
                                             use_style_cond_and_image_meta_size=config.size_cond)
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert_key_contract(own, documented_original_keys(size_cond=config.size_cond), what=name)
    renamed = hunyuan_from_diffusers(theirs.state_dict(), config)
    assert_key_contract(own, {k: tuple(v.shape) for k, v in renamed.items()}, what=f"{name} from diffusers")
    assert detect_hunyuan_config(ours.state_dict()) == config
    assert ours.state_dict()["extra_embedder.0.weight"].shape[1] == (3968 if config.size_cond else 1024)


def test_parameter_counts_of_the_releases():
    """Hand-checked from the key list: 1.500 B (v1.2) and 1.517 B (v1.0/1.1: + style and the size inputs)."""
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in HunyuanDiT(c).parameters()) for n, c in PRESETS.items()}
    assert round(counts["hunyuan-dit-v1.2"] / 1e9, 3) == 1.500
    assert round(counts["hunyuan-dit-v1.1"] / 1e9, 3) == 1.517
