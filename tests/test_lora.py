"""LoRA: minidit's adapters against PEFT and diffusers (both ways), merge / unmerge, parameter counts,
bad files. The oracle model is diffusers' PixArtTransformer2DModel (tiny, random, saved with
save_pretrained and loaded through weights_loader); diffusers 0.42.1 gives PixArt no LoRA loader of its
own, so its generic `PeftAdapterMixin` (the `load_lora_adapter` / `save_lora_adapter` that SD3's
transformer has) is mixed into the PixArt class here; PEFT's `LoraConfig` builds the adapters."""
import json

import pytest
import torch
from torch import nn

from minidit.errors import InputError
from minidit.lora import (LoRALinear, SplitLinear, add_lora, load_lora, lora_layers, lora_state_dict, merge_lora,
                          remove_lora, save_lora, unmerge_lora)
from minidit.pixart import PRESETS, PixArt
from weights_loader import CheckpointError, load_pixart
from weights_loader.lora import layer_map, load_lora_diffusers, save_lora_diffusers, save_lora_peft

from helpers import FP32, FP32_ELEMENTWISE, assert_parity, randomize, require
from helpers.layouts.pixart import original_to_diffusers

diffusers = require("diffusers")
peft = require("peft")
from diffusers.loaders.peft import PeftAdapterMixin  # noqa: E402

torch.set_num_threads(1)

SIGMA_LIKE = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=16, caption_channels=32, sample_size=16, patch_size=2,
                  interpolation_scale=0.5, use_additional_conditions=False)
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_out", "linear_1"]


class PixArtWithAdapters(PeftAdapterMixin, diffusers.PixArtTransformer2DModel):
    """diffusers' PixArt transformer with diffusers' own LoRA loading / saving mixed in."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    ref = randomize(diffusers.PixArtTransformer2DModel(**SIGMA_LIKE), seed=0,
                    scale=lambda name: 0.3 if "scale_shift_table" in name else 0.1)
    path = tmp_path_factory.mktemp("pixart")
    ref.save_pretrained(path)
    return path


def _oracle(folder):
    model = PixArtWithAdapters(**SIGMA_LIKE)
    model.load_state_dict(diffusers.PixArtTransformer2DModel.from_pretrained(folder).state_dict())
    return model.eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 9, 32, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 4:] = 0
    return x, torch.tensor([999.0, 37.5]), y, mask


def _ours(model):
    x, t, y, mask = _inputs()
    with torch.no_grad():
        return model(x, t, y, mask)


def _theirs(model):
    x, t, y, mask = _inputs()
    with torch.no_grad():
        return model(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask).sample


def _randomize_adapters(model, seed=3, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * scale)   # B = 0 would hide bugs


# ------------------------------------------------------------------------------------------------
# the layer itself, against its equation
# ------------------------------------------------------------------------------------------------


def test_lora_linear_is_the_equation_and_starts_as_the_base():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, rank=3, alpha=6.0).eval()
    x = torch.randn(5, 7, 12)
    assert torch.equal(layer(x), base(x))                                  # B = 0 at init: the base model
    assert layer.lora_A.abs().min() > 0 and not layer.lora_B.any()
    nn.init.normal_(layer.lora_B)
    A, B = layer.lora_A.detach().double(), layer.lora_B.detach().double()
    expected = x.double() @ base.weight.double().T + base.bias.double() + (6.0 / 3) * (x.double() @ A.T @ B.T)
    assert_parity(layer(x).double(), expected, tol=FP32_ELEMENTWISE * 10, what="W x + b + (alpha/r) B A x")
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


def test_dropout_acts_on_the_lora_input_only_and_not_in_eval():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), rank=4, alpha=4.0, dropout=0.5)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(64, 16)
    torch.manual_seed(5)
    train_out = layer.train()(x)
    torch.manual_seed(5)
    kept = nn.functional.dropout(torch.ones_like(x), 0.5, training=True)
    expected = layer.base(x) + layer.scale * ((x * kept) @ layer.lora_A.T @ layer.lora_B.T)
    assert_parity(train_out, expected, tol=FP32, what="dropout on the LoRA input (the base path sees x)")
    eval_out = layer.eval()(x)
    assert_parity(eval_out, layer.base(x) + layer.scale * (x @ layer.lora_A.T @ layer.lora_B.T), tol=FP32,
                  what="no dropout in eval mode")


def test_merge_is_exact_and_unmerge_restores(folder):
    model = load_pixart(folder)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    base_out = _ours(model)
    add_lora(model, ["attn.qkv", "attn.proj", "cross_attn.kv_linear", "mlp.fc1"], rank=4, alpha=8.0,
             split={"cross_attn.kv_linear": 2})
    _randomize_adapters(model)
    adapted = _ours(model)
    assert (adapted - base_out).abs().max() > 1e-2 * base_out.abs().max()   # the adapters do something
    merge_lora(model)
    assert all(layer.merged for layer in lora_layers(model).values())
    assert_parity(_ours(model), adapted, tol=FP32, what="merged forward vs adapter forward")
    unmerge_lora(model)
    assert_parity(_ours(model), adapted, tol=FP32, what="unmerged forward vs adapter forward")
    remove_lora(model, merge=False)                       # plain Linears again, fused layers fused again
    assert not lora_layers(model) and not any(isinstance(m, SplitLinear) for m in model.modules())
    restored = model.state_dict()
    assert restored.keys() == original.keys()
    for k, v in original.items():
        assert_parity(restored[k], v, tol=FP32_ELEMENTWISE, what=f"{k} after merge + unmerge")
    assert_parity(_ours(model), base_out, tol=FP32, what="the base model after remove_lora")


def test_remove_lora_with_merge_keeps_the_adapted_function(folder):
    model = load_pixart(folder)
    add_lora(model, r"blocks\.\d+\.(attn\.qkv|mlp\.fc2)", rank=2, alpha=3.0)
    _randomize_adapters(model)
    adapted = _ours(model)
    remove_lora(model)
    assert type(model.blocks[0].attn.qkv) is nn.Linear
    assert_parity(_ours(model), adapted, tol=FP32, what="merged into plain Linears")


def test_only_adapters_train_and_the_file_holds_only_them(folder, tmp_path):
    model = load_pixart(folder)
    names = add_lora(model, ["attn.proj"], rank=4, alpha=4.0)
    assert names == ["blocks.0.attn.proj", "blocks.1.attn.proj"]
    names += add_lora(model, ["attn.qkv.parts.2"], rank=2, alpha=1.0, split={"attn.qkv": 3})     # v only
    assert names[2:] == ["blocks.0.attn.qkv.parts.2", "blocks.1.attn.qkv.parts.2"]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(f"{n}.{ab}" for n in names for ab in ("lora_A", "lora_B"))
    _randomize_adapters(model)
    save_lora(model, tmp_path / "a.safetensors")
    fresh = load_pixart(folder)
    assert load_lora(fresh, tmp_path / "a.safetensors") == sorted(names)      # the split is in the file
    for k, v in lora_state_dict(model).items():
        assert torch.equal(lora_state_dict(fresh)[k], v)
    assert torch.equal(_ours(fresh), _ours(model))


def test_parameter_count_of_rank_64_on_pixart_xl():
    """The docstring's arithmetic: PixArt-XL/2, rank 64 on attention and MLP, counted on the meta device."""
    with torch.device("meta"):
        model = PixArt(PRESETS["PixArt-Sigma-XL-2-1024-MS"])
    total = sum(p.numel() for p in model.parameters())
    add_lora(model, ["attn.qkv", "attn.proj", "cross_attn.q_linear", "cross_attn.kv_linear", "cross_attn.proj"],
             rank=64, split={"attn.qkv": 3, "cross_attn.kv_linear": 2})
    attention = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert attention == 28 * 8 * 64 * (1152 + 1152) == 33_030_144
    add_lora(model, ["mlp.fc1", "mlp.fc2"], rank=64)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 53_673_984
    assert 610e6 < total < 612e6


# ------------------------------------------------------------------------------------------------
# the diffusers <-> minidit name map
# ------------------------------------------------------------------------------------------------


def test_layer_map_follows_the_documented_rename_rules(folder):
    """Read off weights_loader's rename; checked against the rules written out independently in tests/helpers."""
    model = load_pixart(folder)
    tagged = {k: torch.full((max(v.shape[:1]), 1), float(i)) for i, (k, v) in enumerate(model.state_dict().items())}
    tagged.pop("y_embedder.y_embedding")
    names = list(model.state_dict())
    renamed = original_to_diffusers({**tagged, "pos_embed": torch.zeros(1), "y_embedder.y_embedding": None},
                                    model.config.depth)
    expected = {}
    for dkey, t in renamed.items():
        if dkey.endswith(".weight"):
            expected.setdefault(names[int(t[0, 0])].removesuffix(".weight"), []).append(dkey.removesuffix(".weight"))
    expected.pop("x_embedder.proj")                                  # a Conv2d: no LoRA on it
    assert layer_map(model) == expected


# ------------------------------------------------------------------------------------------------
# (a) minidit -> diffusers / PEFT
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_minidit_adapters_load_in_diffusers(folder, tmp_path, prefix):
    model = load_pixart(folder)
    add_lora(model, ["attn.qkv", "cross_attn.q_linear", "mlp.fc1", "final_layer.linear"], rank=4, alpha=8.0)
    add_lora(model, ["cross_attn.kv_linear.parts.1"], rank=2, alpha=5.0, split={"cross_attn.kv_linear": 2})
    add_lora(model, ["t_block.1"], rank=3, alpha=3.0)
    _randomize_adapters(model)
    path = save_lora_diffusers(model, tmp_path, prefix=prefix)
    assert path.name == "pytorch_lora_weights.safetensors"
    oracle = _oracle(folder)
    oracle.load_lora_adapter(str(tmp_path), weight_name=path.name, prefix=prefix.rstrip(".") or None,
                             adapter_name="minidit")
    config = oracle.peft_config["minidit"]
    assert (config.r, config.lora_alpha) == (4, 8.0)
    expected = _theirs(oracle)
    assert_parity(_ours(model), expected, tol=FP32, what="minidit adapters vs the same file in diffusers")
    base = _theirs(_oracle(folder))
    assert (expected - base).abs().max() > 1e-2 * base.abs().max()


def test_minidit_adapters_load_with_peft_model_from_pretrained(folder, tmp_path):
    """PEFT's own folder layout, read by PeftModel.from_pretrained (how PixArt-Σ's LoRA guide loads adapters)."""
    model = load_pixart(folder)
    add_lora(model, ["attn.qkv", "cross_attn.proj", "mlp.fc2"], rank=4, alpha=2.0)
    add_lora(model, ["attn.proj"], rank=2, alpha=6.0)
    _randomize_adapters(model)
    save_lora_peft(model, tmp_path)
    oracle = peft.PeftModel.from_pretrained(diffusers.PixArtTransformer2DModel.from_pretrained(folder), str(tmp_path))
    expected, base = _theirs(oracle.eval()), _theirs(_oracle(folder))
    assert (expected - base).abs().max() > 1e-2 * base.abs().max()
    assert_parity(_ours(model), expected, tol=FP32, what="minidit adapters vs PeftModel.from_pretrained")


# ------------------------------------------------------------------------------------------------
# (b) PEFT / diffusers -> minidit
# ------------------------------------------------------------------------------------------------


def _peft_adapted(folder, **config):
    oracle = _oracle(folder)
    oracle.add_adapter(peft.LoraConfig(init_lora_weights=False, **config))       # random A and B
    return oracle


@pytest.mark.parametrize("config", [
    dict(r=4, lora_alpha=8, target_modules=TARGETS),
    dict(r=4, lora_alpha=6, target_modules=["to_q", "to_v", "ff.net.2"], rank_pattern={"to_v": 2},
         alpha_pattern={"ff.net.2": 3}),
], ids=["all-layers", "q-v-only-with-patterns"])
def test_peft_adapters_load_into_minidit(folder, tmp_path, config):
    oracle = _peft_adapted(folder, **config)
    expected = _theirs(oracle)
    oracle.save_lora_adapter(str(tmp_path))                      # diffusers' model-level file + metadata
    model = load_pixart(folder)
    load_lora_diffusers(model, tmp_path)
    assert_parity(_ours(model), expected, tol=FP32, what="a diffusers-saved adapter in minidit")
    # the state dict alone (no metadata): diffusers' rule alpha = r; PEFT's own tensors
    state = peft.get_peft_model_state_dict(oracle)
    plain = load_pixart(folder)
    load_lora_diffusers(plain, {"transformer." + k: v for k, v in state.items()})
    scale_one = _oracle(folder)
    scale_one.load_lora_adapter(state, prefix=None)
    assert_parity(_ours(plain), _theirs(scale_one), tol=FP32, what="a bare PEFT state dict (alpha = r)")


def test_peft_folder_layout_loads_into_minidit(folder, tmp_path):
    """PeftModel.save_pretrained: adapter_model.safetensors (base_model.model.*) + adapter_config.json."""
    oracle = _peft_adapted(folder, r=3, lora_alpha=5, target_modules=["to_k", "to_out.0", "linear_2"])
    expected = _theirs(oracle)
    state = peft.get_peft_model_state_dict(oracle)
    from safetensors.torch import save_file
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps(oracle.peft_config["default"].to_dict(), default=list))
    model = load_pixart(folder)
    load_lora_diffusers(model, tmp_path)
    assert_parity(_ours(model), expected, tol=FP32, what="a PEFT folder in minidit")


def test_round_trip_keeps_the_tensors(folder, tmp_path):
    oracle = _peft_adapted(folder, r=4, lora_alpha=8, target_modules=TARGETS)
    oracle.save_lora_adapter(str(tmp_path / "in"))
    model = load_pixart(folder)
    load_lora_diffusers(model, tmp_path / "in")
    path = save_lora_diffusers(model, tmp_path / "out", prefix="")
    from safetensors.torch import load_file
    theirs, ours = load_file(str(tmp_path / "in" / path.name)), load_file(str(path))
    assert theirs.keys() == ours.keys()
    for k in theirs:
        assert torch.equal(theirs[k], ours[k]), k


# ------------------------------------------------------------------------------------------------
# (d) bad input
# ------------------------------------------------------------------------------------------------


def _bad(folder, sd):
    model = load_pixart(folder)
    with pytest.raises(CheckpointError) as e:
        load_lora_diffusers(model, sd)
    assert not lora_layers(model)
    return str(e.value)


def test_bad_lora_files_are_refused_by_name(folder, tmp_path):
    A, B = torch.zeros(4, 16), torch.zeros(16, 4)
    good = {"transformer_blocks.0.attn1.to_q.lora_A.weight": A, "transformer_blocks.0.attn1.to_q.lora_B.weight": B}
    msg = _bad(folder, {**good, "transformer_blocks.9.attn1.to_q.lora_A.weight": A,
                        "transformer_blocks.9.attn1.to_q.lora_B.weight": B})
    assert "not Linear layers of this PixArt model" in msg and "transformer_blocks.9.attn1.to_q" in msg
    msg = _bad(folder, {"transformer_blocks.0.attn1.to_q.lora_A.weight": A,
                        "transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(16, 3)})
    assert "disagree on the rank" in msg and "transformer_blocks.0.attn1.to_q" in msg
    msg = _bad(folder, {"transformer_blocks.0.attn1.to_q.lora_A.weight": A})
    assert "lacks transformer_blocks.0.attn1.to_q.lora_B.weight" in msg
    msg = _bad(folder, {"transformer_blocks.0.ff.net.0.proj.lora_A.weight": A,
                        "transformer_blocks.0.ff.net.0.proj.lora_B.weight": B})      # fc1 is 16 -> 64
    assert "blocks.0.mlp.fc1 is a 16 -> 64 layer" in msg and "transformer_blocks.0.ff.net.0.proj" in msg
    msg = _bad(folder, {"lora_unet_blocks_0_attn1_to_q.lora_down.weight": A})
    assert "kohya" in msg
    msg = _bad(folder, {**good, "transformer_blocks.0.attn1.to_q.lora_magnitude_vector": torch.ones(16)})
    assert "not lora_A / lora_B weights" in msg and "lora_magnitude_vector" in msg
    msg = _bad(folder, {"pos_embed.proj.lora_A.weight": torch.zeros(4, 4, 2, 2), "pos_embed.proj.lora_B.weight": B})
    assert "pos_embed.proj" in msg
    (tmp_path / "empty").mkdir()
    assert "neither pytorch_lora_weights.safetensors" in _bad(folder, tmp_path / "empty")
    from safetensors.torch import save_file
    save_file(good, str(tmp_path / "cfg.safetensors"), metadata={"lora_adapter_metadata": json.dumps({"r": 8})})
    assert "says r=8" in _bad(folder, tmp_path / "cfg.safetensors")
    save_file(good, str(tmp_path / "rs.safetensors"),
              metadata={"lora_adapter_metadata": json.dumps({"r": 4, "use_rslora": True})})
    assert "rsLoRA" in _bad(folder, tmp_path / "rs.safetensors")


def test_bad_arguments_are_refused(folder, tmp_path):
    model = load_pixart(folder)
    with pytest.raises(InputError, match="matches no nn.Linear"):
        add_lora(model, ["attn.nope"], rank=4)
    with pytest.raises(InputError, match="integer rank > 0"):
        add_lora(model, ["attn.proj"], rank=0)
    with pytest.raises(InputError, match="no LoRA adapters to save"):
        save_lora(model, tmp_path / "x.safetensors")
    add_lora(model, ["attn.proj"], rank=4)
    with pytest.raises(InputError, match="matches no nn.Linear"):
        add_lora(model, ["attn.proj"], rank=4)                             # already adapted
    save_lora(model, tmp_path / "x.safetensors")
    other = load_pixart(folder)
    add_lora(other, ["attn.proj"], rank=2)
    with pytest.raises(InputError, match="attn.proj"):
        load_lora(other, tmp_path / "x.safetensors")                       # those layers already have adapters
    path = save_lora_diffusers(model, tmp_path / "d")
    with pytest.raises(InputError, match="not a minidit LoRA file"):
        load_lora(load_pixart(folder), path)
