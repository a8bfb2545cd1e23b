"""MM-DiT (SD3 / SD3.5): module parity with diffusers' SD3Transformer2DModel (tiny random, written by
save_pretrained), the official key layout at full size, config detection and the model's own rules."""
import pytest
import torch

from minidit.mmdit import PRESETS, SD3_MEDIUM, SD35_LARGE, SD35_MEDIUM, MMDiT, MMDiTConfig
from weights_loader import CheckpointError, load_mmdit
from weights_loader.mmdit import detect_mmdit_config, mmdit_config_from_diffusers, mmdit_from_diffusers

from helpers import FP32, assert_key_contract, assert_parity, require

diffusers = require("diffusers")

# Tiny SD3-like transformers: 4 heads x 8, 3 layers (the last one pre_only), 16 latent channels as SD3.
TINY = dict(sample_size=16, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
            joint_attention_dim=24, caption_projection_dim=32, pooled_projection_dim=20, out_channels=16,
            pos_embed_max_size=12)
VARIANTS = {"sd3": {}, "sd3.5-large": {"qk_norm": "rms_norm"},
            "sd3.5-medium": {"qk_norm": "rms_norm", "dual_attention_layers": (0, 1)}}


def tiny_diffusers(variant, seed=0):
    model = diffusers.SD3Transformer2DModel(**TINY, **VARIANTS[variant]).eval()
    # every weight random, also the adaLN / output layers diffusers initialises to zero
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + hash(name) % 1000)) * 0.2)
    return model


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, tmp_path_factory):
    ref = tiny_diffusers(request.param)
    folder = tmp_path_factory.mktemp(f"sd3_{request.param}")
    ref.save_pretrained(folder / "transformer")
    return request.param, ref, load_mmdit(folder)


def inputs(B=2, h=8, w=6, L=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 16, h, w, generator=g), torch.tensor([999.0, 250.5])[:B],
            torch.randn(B, 20, generator=g), torch.randn(B, L, 24, generator=g))


def test_matches_diffusers(pair):
    variant, ref, ours = pair
    assert ours.config.qk_norm == (None if variant == "sd3" else "rms")
    assert ours.config.x_block_self_attn_layers == VARIANTS[variant].get("dual_attention_layers", ())
    for h, w in [(8, 6), (12, 12), (4, 10)]:          # square, non-square, centre crops of the 12 x 12 table
        x, t, y, ctx = inputs(h=h, w=w)
        with torch.no_grad():
            expected = ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
            got = ours(x, t, y=y, context=ctx)
        assert expected.abs().max() > 1                                   # a non-trivial output
        assert_parity(got, expected, tol=FP32, what=f"{variant} at {h}x{w} latents")


def test_skip_layers_match_diffusers(pair):
    """Skip-layer guidance leaves layers out; diffusers' `skip_layers` argument does the same."""
    variant, ref, ours = pair
    x, t, y, ctx = inputs()
    with torch.no_grad():
        expected = ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t,
                       skip_layers=[1]).sample
        got = ours(x, t, y=y, context=ctx, skip_layers=(1,))
        full = ours(x, t, y=y, context=ctx)
    assert_parity(got, expected, tol=FP32, what=f"{variant} skipping layer 1")
    assert (got - full).abs().max() > 1e-2


def test_official_layout_round_trip(pair, tmp_path):
    """The same weights as an official single file (model.diffusion_model.*, plus a VAE part that is
    ignored) load to the same model, with the config detected from the tensors."""
    variant, ref, ours = pair
    sd = {f"model.diffusion_model.{k}": v for k, v in ours.state_dict().items()}
    sd["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)
    from safetensors.torch import save_file
    save_file(sd, tmp_path / "sd3_tiny.safetensors")
    with pytest.raises(CheckpointError, match="64 x depth"):           # tiny: not the official 64-d heads
        load_mmdit(tmp_path / "sd3_tiny.safetensors")
    again = load_mmdit(tmp_path / "sd3_tiny.safetensors", config=ours.config)
    x, t, y, ctx = inputs()
    with torch.no_grad():
        assert torch.equal(again(x, t, y=y, context=ctx), ours(x, t, y=y, context=ctx))


@pytest.mark.parametrize("name,config,dual", [("sd3-medium", SD3_MEDIUM, ()), ("sd3.5-large", SD35_LARGE, ()),
                                              ("sd3.5-medium", SD35_MEDIUM, tuple(range(13)))])
def test_full_size_key_contract_and_detection(name, config, dual):
    """Tier 3: diffusers' full-size config of each release, built on meta, renamed to official keys,
    has exactly minidit's keys and shapes; and the official rules read the preset back off them."""
    hf = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=config.depth, attention_head_dim=64,
              num_attention_heads=config.depth, joint_attention_dim=4096, caption_projection_dim=64 * config.depth,
              pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=config.pos_embed_max_size,
              qk_norm="rms_norm" if config.qk_norm else None, dual_attention_layers=dual)
    with torch.device("meta"):
        ref = diffusers.SD3Transformer2DModel(**hf)
        ours = MMDiT(config)
    assert mmdit_config_from_diffusers(dict(ref.config)) == config
    renamed = mmdit_from_diffusers(ref.state_dict(), config)
    assert_key_contract({k: tuple(v.shape) for k, v in ours.state_dict().items()},
                        {k: tuple(v.shape) for k, v in renamed.items()}, what=name)
    assert detect_mmdit_config(ours.state_dict()) == config
    assert PRESETS[name] == config


def test_parameter_counts_of_the_releases():
    """Counted on meta (hand-checked: 2.03 B SD3-medium, 8.06 B SD3.5-large, 2.24 B SD3.5-medium, without
    the stored position table)."""
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in MMDiT(c).parameters()) for n, c in PRESETS.items()}
    assert round(counts["sd3-medium"] / 1e9, 2) == 2.03
    assert round(counts["sd3.5-large"] / 1e9, 2) == 8.06 == round(counts["sd3.5-large-turbo"] / 1e9, 2)
    assert round(counts["sd3.5-medium"] / 1e9, 2) == 2.24


def test_bad_inputs():
    model = MMDiT(MMDiTConfig(depth=2, hidden_size=32, num_heads=4, pos_embed_max_size=4, adm_in_channels=20,
                              context_dim=24))
    x, t, y, ctx = inputs(h=10, w=8)                                       # a 5 x 4 token grid
    with pytest.raises(ValueError, match="at most 64x64 pixels"):          # 4 x 4 patches of 2 x 8 px
        model(x, t, y=y, context=ctx)
    with pytest.raises(ValueError, match="context"):
        model(x[..., :4, :4], t, y=y)
    with pytest.raises(ValueError, match="x_block_self_attn_layers"):
        MMDiT(MMDiTConfig(depth=2, hidden_size=32, num_heads=4, x_block_self_attn_layers=(2,)))
    # the last layer's image stream may have attn2 (only its context block is pre_only), as in diffusers
    MMDiT(MMDiTConfig(depth=2, hidden_size=32, num_heads=4, x_block_self_attn_layers=(1,)))
    with pytest.raises(ValueError, match="skip_layers"):
        model(x[..., :4, :4], t, y=y, context=ctx, skip_layers=(7,))
    with pytest.raises(CheckpointError, match="pos_embed_max_size"):
        mmdit_config_from_diffusers({"num_attention_heads": 4, "attention_head_dim": 8, "caption_projection_dim": 32})


def test_fp16_official_file_is_cast_as_asked(pair, tmp_path):
    """The released single files are float16: loading casts each tensor to the dtype asked for (as the
    official loader upcasts), exactly the float16 values."""
    _, _, ours = pair
    from safetensors.torch import save_file
    half = {f"model.diffusion_model.{k}": v.half() for k, v in ours.state_dict().items()}
    save_file(half, tmp_path / "sd3_fp16.safetensors")
    loaded = load_mmdit(tmp_path / "sd3_fp16.safetensors", config=ours.config)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, half[f"model.diffusion_model.{k}"].float()), k
    as_bf16 = load_mmdit(tmp_path / "sd3_fp16.safetensors", config=ours.config, dtype=torch.bfloat16)
    assert next(as_bf16.parameters()).dtype == torch.bfloat16


def test_chunked_mlp_is_the_same_computation(pair, monkeypatch):
    """The MLP runs on MLP_CHUNK tokens at a time; with chunks smaller than the token count (5 of 48
    image tokens, the last one shorter) the output still matches diffusers, which runs it whole."""
    import minidit.mmdit
    variant, ref, ours = pair
    monkeypatch.setattr(minidit.mmdit, "MLP_CHUNK", 5)
    x, t, y, ctx = inputs()
    with torch.no_grad():
        expected = ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
        got = ours(x, t, y=y, context=ctx)
    assert_parity(got, expected, tol=FP32, what=f"{variant} with 5-token MLP chunks")
