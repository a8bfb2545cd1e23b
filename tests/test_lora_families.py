"""LoRA files for SD3 (MM-DiT) and Hunyuan-DiT, both ways: minidit's adapters saved in the diffusers
layout give diffusers' output after its own loader reads them, and PEFT adapters made on diffusers'
model give the same output in minidit. SD3 goes through StableDiffusion3Pipeline's own LoRA
classmethods (`lora_state_dict` + `load_lora_into_transformer`: what `load_lora_weights` does for the
transformer; `save_lora_weights`); Hunyuan-DiT's transformer (0.42.1) has no LoRA loader, so diffusers'
`PeftAdapterMixin` is mixed in here as for PixArt in tests/test_lora.py.
The layers with diffusers' (scale, shift) row order (`norm_out.linear`) are among the adapted ones."""
import pytest
import torch

from minidit.embed import get_2d_rope
from minidit.lora import add_lora, lora_layers
from weights_loader import load_hunyuan, load_mmdit
from weights_loader.lora import layer_map, load_lora_diffusers, save_lora_diffusers, swapped_layers

from helpers import FP32, assert_parity, randomize, require

diffusers = require("diffusers")
peft = require("peft")
from diffusers.loaders.peft import PeftAdapterMixin  # noqa: E402

torch.set_num_threads(1)

SD3 = dict(sample_size=16, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
           joint_attention_dim=24, caption_projection_dim=32, pooled_projection_dim=20, out_channels=16,
           pos_embed_max_size=12, qk_norm="rms_norm", dual_attention_layers=(0,))
HUNYUAN = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2, sample_size=8, hidden_size=16,
               num_layers=6, mlp_ratio=2.5, cross_attention_dim=12, cross_attention_dim_t5=16, pooled_projection_dim=20,
               text_len=5, text_len_t5=7, use_style_cond_and_image_meta_size=False)


class HunyuanWithAdapters(PeftAdapterMixin, diffusers.HunyuanDiT2DModel):
    """diffusers' Hunyuan-DiT transformer with diffusers' own LoRA loading / saving mixed in."""


def _sd3_inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 16, 8, 6, generator=g), torch.tensor([999.0, 250.5]), torch.randn(2, 20, generator=g),
            torch.randn(2, 7, 24, generator=g))


def _hunyuan_inputs():
    g = torch.Generator().manual_seed(3)
    mask, mask_t5 = torch.ones(2, 5, dtype=torch.long), torch.ones(2, 7, dtype=torch.long)
    mask[1, 3:], mask_t5[0, 4:] = 0, 0
    kw = dict(encoder_hidden_states=torch.randn(2, 5, 12, generator=g), text_embedding_mask=mask,
              encoder_hidden_states_t5=torch.randn(2, 7, 16, generator=g), text_embedding_mask_t5=mask_t5)
    cos, sin = get_2d_rope(8, 4, 4)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([999.0, 321.0]), kw, cos, sin


class SD3Case:
    targets = ["attn.qkv", "attn2.qkv", "context_block.attn.proj", "mlp.fc1", "final_layer.adaLN_modulation.1",
               "final_layer.linear"]
    peft_targets = ["to_q", "add_k_proj", "to_out.0", "ff.net.2", "norm_out.linear", "norm1_context.linear"]

    def build(self, folder):
        ref = diffusers.SD3Transformer2DModel(**SD3)
        randomize(ref, seed=0, scale=0.2).save_pretrained(folder)
        return self.oracle(folder)

    def oracle(self, folder):
        return diffusers.SD3Transformer2DModel.from_pretrained(folder).eval()

    def load_file(self, oracle, path):
        """What StableDiffusion3Pipeline.load_lora_weights does for the transformer."""
        pipe = diffusers.StableDiffusion3Pipeline
        state_dict, metadata = pipe.lora_state_dict(str(path), return_lora_metadata=True)
        pipe.load_lora_into_transformer(state_dict, transformer=oracle, metadata=metadata)

    def save_file(self, oracle, folder):
        """StableDiffusion3Pipeline.save_lora_weights: the pipeline-level file, with the metadata."""
        diffusers.StableDiffusion3Pipeline.save_lora_weights(
            folder, transformer_lora_layers=peft.get_peft_model_state_dict(oracle),
            transformer_lora_adapter_metadata=oracle.peft_config["default"].to_dict())

    def ours(self, folder):
        return load_mmdit(folder)

    def run_ours(self, model):
        x, t, y, ctx = _sd3_inputs()
        with torch.no_grad():
            return model(x, t, y=y, context=ctx)

    def run_theirs(self, model):
        x, t, y, ctx = _sd3_inputs()
        with torch.no_grad():
            return model(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample


class HunyuanCase(SD3Case):
    targets = ["attn1.Wqkv", "attn2.kv_proj", "attn2.q_proj", "mlp.fc2", "skip_linear", "final_layer.adaLN_modulation.1"]
    peft_targets = ["to_q", "to_v", "to_out.0", "ff.net.0.proj", "skip_linear", "norm_out.linear"]

    def build(self, folder):
        torch.manual_seed(0)
        randomize(diffusers.HunyuanDiT2DModel(**HUNYUAN), seed=1, scale=0.3).save_pretrained(folder)
        return self.oracle(folder)

    def oracle(self, folder):
        model = HunyuanWithAdapters(**HUNYUAN)
        model.load_state_dict(diffusers.HunyuanDiT2DModel.from_pretrained(folder).state_dict())
        return model.eval()

    def ours(self, folder):
        return load_hunyuan(folder)

    def load_file(self, oracle, path):
        oracle.load_lora_adapter(str(path.parent), weight_name=path.name, prefix="transformer")

    def save_file(self, oracle, folder):
        oracle.save_lora_adapter(str(folder))                   # the model-level file

    def run_ours(self, model):
        x, t, kw, cos, sin = _hunyuan_inputs()
        with torch.no_grad():
            return model(x, t, **kw, cos_cis_img=cos, sin_cis_img=sin)

    def run_theirs(self, model):
        x, t, kw, cos, sin = _hunyuan_inputs()
        with torch.no_grad():
            return model(x, t, **kw, image_rotary_emb=(cos, sin), return_dict=False)[0]


CASES = {"sd3": SD3Case(), "hunyuan": HunyuanCase()}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    CASES[request.param].build(folder)
    return CASES[request.param], folder


def test_the_layer_map_sees_the_swapped_rows(case):
    c, folder = case
    model = c.ours(folder)
    assert "final_layer.adaLN_modulation.1" in swapped_layers(model)
    names = layer_map(model)
    assert names["final_layer.adaLN_modulation.1"] == ["norm_out.linear"]
    fused = {name: parts for name, parts in names.items() if len(parts) > 1}
    assert fused and all(len(parts) in (2, 3) for parts in fused.values())


def test_minidit_adapters_load_in_diffusers(case, tmp_path):
    c, folder = case
    model = c.ours(folder)
    add_lora(model, c.targets, rank=3, alpha=5.0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.2)
    path = save_lora_diffusers(model, tmp_path)
    oracle = c.oracle(folder)
    base = c.run_theirs(oracle)
    c.load_file(oracle, path)
    expected = c.run_theirs(oracle)
    assert (expected - base).abs().max() > 1e-2 * base.abs().max()
    assert_parity(c.run_ours(model), expected, tol=FP32, what="minidit adapters vs the same file in diffusers")


def test_peft_adapters_load_into_minidit(case, tmp_path):
    c, folder = case
    oracle = c.oracle(folder)
    oracle.add_adapter(peft.LoraConfig(r=4, lora_alpha=6, target_modules=c.peft_targets, init_lora_weights=False))
    expected = c.run_theirs(oracle)
    c.save_file(oracle, tmp_path)
    model = c.ours(folder)
    load_lora_diffusers(model, tmp_path)
    assert_parity(c.run_ours(model), expected, tol=FP32, what="a diffusers-saved adapter in minidit")
