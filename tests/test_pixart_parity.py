"""PixArt loading and parity: diffusers' PixArtTransformer2DModel (random weights, saved with
save_pretrained) vs minidit through weights_loader; key/shape contracts at full size; original .pth."""
import json

import pytest
import torch

from minidit.pixart import PRESETS, PixArt, PixArtConfig
from weights_loader import CheckpointError, load_pixart
from weights_loader.pixart import pixart_config_from_diffusers, pixart_from_diffusers

from oracles import require

diffusers = require("diffusers")

# Tiny configs (docs/testing.md#tiny-oracles-what-makes-them-work-offline). α-like: sample_size 128
# with use_additional_conditions and interpolation_scale left unset (diffusers' defaults ->
# micro-conditions on, pe 2). Σ-like: explicit.
ALPHA_LIKE = dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=24, caption_channels=32, sample_size=128, patch_size=2)
SIGMA_LIKE = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=16, caption_channels=32, sample_size=16, patch_size=2,
                  interpolation_scale=0.5, use_additional_conditions=False)


def randomize(model, seed=0):
    """Non-trivial weights everywhere (diffusers' default init is random too, but make sure no table,
    adaLN or output layer is zero, so the comparison cannot pass trivially)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "scale_shift_table" in name else 0.1))
    return model.eval()


@pytest.fixture(scope="session")
def diffusers_models(tmp_path_factory):
    out = {}
    for name, kw in [("alpha", ALPHA_LIKE), ("sigma", SIGMA_LIKE)]:
        ref = randomize(diffusers.PixArtTransformer2DModel(**kw))
        folder = tmp_path_factory.mktemp(name)
        ref.save_pretrained(folder)
        out[name] = (ref, folder)
    return out


def _inputs(H, W, B=2, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, 4, H, W, generator=g), torch.randn(B, L, 32, generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 4:] = 0                                                    # second caption: 4 real tokens
    t = torch.tensor([999.0, 37.5])[:B]
    return x, t, y, mask


@pytest.mark.parametrize("which", ["alpha", "sigma"])
@pytest.mark.parametrize("H,W", [(8, 8), (8, 12), (16, 6)])
def test_same_output_as_diffusers(diffusers_models, which, H, W):
    ref, folder = diffusers_models[which]
    model = load_pixart(folder)
    x, t, y, mask = _inputs(H, W)
    hw, ar = torch.tensor([[H * 8.0, W * 8.0]] * 2), torch.tensor([[H / W]] * 2)
    with torch.no_grad():
        expected = ref(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask,
                       added_cond_kwargs={"resolution": hw, "aspect_ratio": ar}).sample
        got = model(x, t, y, mask, img_hw=hw, aspect_ratio=ar)
    assert expected.abs().max() > 0.5                                  # a real signal, not zeros
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_diffusers_config_traps_are_reproduced(diffusers_models):
    alpha = load_pixart(diffusers_models["alpha"][1]).config
    sigma = load_pixart(diffusers_models["sigma"][1]).config
    assert (alpha.micro_condition, alpha.pe_interpolation, alpha.input_size) == (True, 2.0, 128)
    assert (sigma.micro_condition, sigma.pe_interpolation, sigma.input_size) == (False, 0.5, 16)
    # the translation follows what diffusers itself builds from the same config (full size, meta)
    for cfg in [{"sample_size": 128}, {"sample_size": 128, "use_additional_conditions": False},
                {"sample_size": 256}, {"sample_size": 32, "interpolation_scale": 0.5}, {"sample_size": 64}]:
        with torch.device("meta"):
            ref = diffusers.PixArtTransformer2DModel(caption_channels=4096, **cfg)
        ours = pixart_config_from_diffusers(dict(ref.config))
        assert ours.micro_condition == ref.use_additional_conditions, cfg
        assert ours.pe_interpolation == ref.pos_embed.interpolation_scale, cfg
        assert ours.base_size == ref.pos_embed.base_size, cfg


def test_diffusers_folder_has_no_null_caption(diffusers_models, tmp_path):
    model = load_pixart(diffusers_models["sigma"][1])
    assert not model.y_embedder.has_null_caption
    with pytest.raises(RuntimeError, match="null caption"):
        model.y_embedder.null_caption()
    # from a pipeline root the caption length comes from the pipeline class
    root = tmp_path / "pipe"
    (root / "transformer").mkdir(parents=True)
    for f in diffusers_models["sigma"][1].iterdir():
        (root / "transformer" / f.name).write_bytes(f.read_bytes())
    (root / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline"}))
    assert load_pixart(root).config.model_max_length == 300


# ---------------------------------------------------------------------------------------------
# Full-size key/shape contracts (meta device, no memory)
# ---------------------------------------------------------------------------------------------


def documented_original_keys(c: PixArtConfig) -> dict:
    """The original .pth layout, with shapes, as listed in docs/checkpoints.md#pixart-original-checkpoint-pth."""
    D, p, C = c.hidden_size, c.patch_size, c.in_channels
    keys = {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,),
            "pos_embed": (1, c.base_size**2, D),
            "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
            "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
            "t_block.1.weight": (6 * D, D), "t_block.1.bias": (6 * D,),
            "y_embedder.y_proj.fc1.weight": (D, c.caption_channels), "y_embedder.y_proj.fc1.bias": (D,),
            "y_embedder.y_proj.fc2.weight": (D, D), "y_embedder.y_proj.fc2.bias": (D,),
            "y_embedder.y_embedding": (c.model_max_length, c.caption_channels),
            "final_layer.linear.weight": (p * p * 2 * C, D), "final_layer.linear.bias": (p * p * 2 * C,),
            "final_layer.scale_shift_table": (2, D)}
    if c.micro_condition:
        for e in ("csize_embedder", "ar_embedder"):
            keys.update({f"{e}.mlp.0.weight": (D // 3, 256), f"{e}.mlp.0.bias": (D // 3,),
                         f"{e}.mlp.2.weight": (D // 3, D // 3), f"{e}.mlp.2.bias": (D // 3,)})
    for i in range(c.depth):
        b = f"blocks.{i}."
        keys[b + "scale_shift_table"] = (6, D)
        for name, (out_f, in_f) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "cross_attn.q_linear": (D, D),
                                    "cross_attn.kv_linear": (2 * D, D), "cross_attn.proj": (D, D),
                                    "mlp.fc1": (4 * D, D), "mlp.fc2": (D, 4 * D)}.items():
            keys[b + name + ".weight"], keys[b + name + ".bias"] = (out_f, in_f), (out_f,)
    return keys


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_keys_match_the_documented_original_layout(name):
    with torch.device("meta"):
        model = PixArt(PRESETS[name])
    expected = documented_original_keys(PRESETS[name])
    expected.pop("pos_embed")                                          # the one recomputed key
    assert _shapes(model.state_dict()) == expected


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_keys_match_diffusers_after_mapping(name):
    c = PRESETS[name]
    with torch.device("meta"):       # the config the official converters write for this checkpoint
        ref = diffusers.PixArtTransformer2DModel(
            sample_size=c.input_size, interpolation_scale=c.pe_interpolation, caption_channels=4096,
            use_additional_conditions=c.micro_condition)
        ours = PixArt(c)
    assert pixart_config_from_diffusers(dict(ref.config), c.model_max_length) == c
    mapped = pixart_from_diffusers(ref.state_dict(), c.depth)
    expected = _shapes(ours.state_dict())
    expected.pop("y_embedder.y_embedding")                             # diffusers does not store it
    assert _shapes(mapped) == expected


# ---------------------------------------------------------------------------------------------
# Original .pth layout: random weights, written from the documented key list, loaded strictly
# ---------------------------------------------------------------------------------------------

ORIG = PixArtConfig(input_size=16, hidden_size=144, depth=2, num_heads=2, caption_channels=32,
                    pe_interpolation=2.0, model_max_length=11, micro_condition=True)


def original_to_diffusers(sd, depth):
    """The rename rules of docs/checkpoints.md#pixart-diffusers-layout-and-rename-rules, written out
    independently of weights_loader."""
    sd, out = dict(sd), {}
    rules = {"x_embedder.proj": "pos_embed.proj", "y_embedder.y_proj.fc1": "caption_projection.linear_1",
             "y_embedder.y_proj.fc2": "caption_projection.linear_2",
             "t_embedder.mlp.0": "adaln_single.emb.timestep_embedder.linear_1",
             "t_embedder.mlp.2": "adaln_single.emb.timestep_embedder.linear_2",
             "csize_embedder.mlp.0": "adaln_single.emb.resolution_embedder.linear_1",
             "csize_embedder.mlp.2": "adaln_single.emb.resolution_embedder.linear_2",
             "ar_embedder.mlp.0": "adaln_single.emb.aspect_ratio_embedder.linear_1",
             "ar_embedder.mlp.2": "adaln_single.emb.aspect_ratio_embedder.linear_2",
             "t_block.1": "adaln_single.linear", "final_layer.linear": "proj_out"}
    for i in range(depth):
        rules.update({f"blocks.{i}.attn.proj": f"transformer_blocks.{i}.attn1.to_out.0",
                      f"blocks.{i}.cross_attn.q_linear": f"transformer_blocks.{i}.attn2.to_q",
                      f"blocks.{i}.cross_attn.proj": f"transformer_blocks.{i}.attn2.to_out.0",
                      f"blocks.{i}.mlp.fc1": f"transformer_blocks.{i}.ff.net.0.proj",
                      f"blocks.{i}.mlp.fc2": f"transformer_blocks.{i}.ff.net.2"})
        out[f"transformer_blocks.{i}.scale_shift_table"] = sd.pop(f"blocks.{i}.scale_shift_table")
        for kind in ("weight", "bias"):
            q, k, v = sd.pop(f"blocks.{i}.attn.qkv.{kind}").chunk(3, dim=0)
            k2, v2 = sd.pop(f"blocks.{i}.cross_attn.kv_linear.{kind}").chunk(2, dim=0)
            for n, t in [("attn1.to_q", q), ("attn1.to_k", k), ("attn1.to_v", v), ("attn2.to_k", k2),
                         ("attn2.to_v", v2)]:
                out[f"transformer_blocks.{i}.{n}.{kind}"] = t
    for src, dst in rules.items():
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")
    out["scale_shift_table"] = sd.pop("final_layer.scale_shift_table")
    sd.pop("pos_embed"), sd.pop("y_embedder.y_embedding")
    assert not sd, sorted(sd)
    return out


@pytest.fixture(scope="module")
def original_file(tmp_path_factory):
    from diffusers.models.embeddings import get_2d_sincos_pos_embed
    g = torch.Generator().manual_seed(3)
    sd = {k: torch.randn(shape, generator=g) * 0.1 for k, shape in documented_original_keys(ORIG).items()}
    sd["pos_embed"] = get_2d_sincos_pos_embed(144, 8, base_size=8, interpolation_scale=2.0).float()[None]
    path = tmp_path_factory.mktemp("orig") / "PixArt-tiny.pth"
    torch.save({"state_dict": sd}, path)                               # the released files' wrapper
    return path, sd


def test_original_pth_loads_strictly_with_detected_config(original_file):
    path, sd = original_file
    model = load_pixart(path)
    assert model.config == ORIG                                        # detected from the tensors alone
    assert model.y_embedder.has_null_caption
    torch.testing.assert_close(model.y_embedder.y_embedding, sd["y_embedder.y_embedding"])
    # the same weights in diffusers (mapped by the documented rules) give the same output
    with torch.device("meta"):
        ref = diffusers.PixArtTransformer2DModel(
            num_attention_heads=2, attention_head_dim=72, num_layers=2, cross_attention_dim=144,
            caption_channels=32, sample_size=16, interpolation_scale=2, use_additional_conditions=True)
    ref.load_state_dict(original_to_diffusers(sd, 2), strict=True, assign=True)
    ref.pos_embed.pos_embed = torch.zeros(1, 64, 144)                  # non-persistent; recomputed off-size
    x, t, y, mask = _inputs(8, 12, L=11)
    hw, ar = torch.tensor([[64.0, 96.0]] * 2), torch.tensor([[8 / 12]] * 2)
    with torch.no_grad():
        expected = ref.eval()(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask,
                              added_cond_kwargs={"resolution": hw, "aspect_ratio": ar}).sample
        got = model(x, t, y, mask, img_hw=hw, aspect_ratio=ar)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_original_pth_errors(original_file, tmp_path):
    path, sd = original_file
    with pytest.raises(CheckpointError, match="wrong preset"):
        load_pixart(path, config=PixArtConfig(**{**ORIG.__dict__, "pe_interpolation": 1.0}))
    no_pos = {k: v for k, v in sd.items() if k != "pos_embed"}
    with pytest.raises(CheckpointError, match="no pos_embed"):
        load_pixart(no_pos)
    assert load_pixart(no_pos, config=ORIG).config == ORIG            # a preset supplies the resolution
    broken = dict(sd)
    del broken["blocks.1.cross_attn.kv_linear.bias"]
    with pytest.raises(CheckpointError, match="missing keys: blocks.1.cross_attn.kv_linear.bias"):
        load_pixart(broken)
    with pytest.raises(CheckpointError, match="config.json"):
        load_pixart(original_to_diffusers(sd, 2))
