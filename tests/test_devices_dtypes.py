"""GPU readiness, checked on the CPU: every model runs in bfloat16 end to end, and every forward runs on
the `meta` device at the full released size.

* bfloat16: a float32 tensor made inside a forward (timestep embedding, position table, mask, bias)
  that meets a bfloat16 weight raises a dtype error; the outputs must also stay close to float32.
* meta: a tensor created inside a forward without `device=` lands on the CPU and cannot meet a meta
  tensor, just as it could not meet a CUDA one. A full-size run on meta (no memory, no arithmetic)
  therefore finds the CPU-only assumptions a GPU user would hit, and checks every shape on the way.
"""
import pytest
import torch

from minidit.dit import CHECKPOINTS as DIT_CHECKPOINTS
from minidit.dit import DiT, DiTConfig
from minidit.hunyuan import PRESETS as HUNYUAN_PRESETS
from minidit.hunyuan import HunyuanConfig, HunyuanDiT
from minidit.mmdit import PRESETS as MMDIT_PRESETS
from minidit.mmdit import MMDiT, MMDiTConfig
from minidit.pipelines.dit import DiTPipeline
from minidit.pipelines.pixart import PixArtPipeline
from minidit.pixart import PIXART_SIGMA_1024_KV_COMPRESS, PRESETS, KVCompressConfig, PixArt, PixArtConfig
from minidit.text.bert import BERT_TINY, HUNYUAN_BERT, BertModel
from minidit.text.clip import CLIP_L, CLIP_TINY, CLIPTextModel
from minidit.text.t5 import T5_TINY, T5_V1_1_XXL, T5EncoderModel, cast_t5
from minidit.vae import SDXL_VAE, AutoencoderKL, VAEConfig

from helpers import perturb

TINY_VAE = VAEConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, norm_num_groups=8)


def perturbed(model):
    """Random non-zero weights everywhere (DiT/PixArt start with zero outputs), float32, eval mode."""
    torch.manual_seed(0)                     # the inputs drawn after the weights continue this stream
    return perturb(model, seed=None, scale=0.05)


def tiny_pixart():
    return perturbed(PixArt(PixArtConfig(input_size=8, hidden_size=48, num_heads=2, depth=2, caption_channels=32,
                                         model_max_length=6, micro_condition=True, qk_norm=True,
                                         kv_compress_config=KVCompressConfig("conv", 2, (1,)))))


def ids_and_mask(vocab, eos=None):
    ids = torch.randint(3, vocab - 1, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    if eos is not None:
        ids[0, -1], ids[1, 3] = eos, eos
    return ids, mask


def _dit():
    m = perturbed(DiT(DiTConfig(input_size=8, hidden_size=64, depth=2, num_heads=4, num_classes=10)))
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 500]), torch.tensor([1, 10])
    return m, lambda m: m.forward_with_cfg(x.to(m.x_embedder.proj.weight.dtype), t, y, 4.0)


def _pixart():
    m = tiny_pixart()
    x, t, cap = torch.randn(2, 4, 8, 12), torch.tensor([3.5, 500.0]), torch.randn(2, 6, 32)
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0]])
    micro = dict(img_hw=torch.tensor([[64.0, 96.0]]), aspect_ratio=torch.tensor([[64 / 96]]))
    return m, lambda m: m(x.to(m.t_block[1].weight.dtype), t, cap.to(m.t_block[1].weight.dtype), mask, **micro)


def _vae():
    m = perturbed(AutoencoderKL(TINY_VAE))
    image = torch.rand(1, 3, 16, 24) * 2 - 1
    return m, lambda m: m.decode(m.encode(image.to(m.encoder.conv_in.weight.dtype)).mode(), tile=2, overlap=1)


def _t5():
    ids, mask = ids_and_mask(T5_TINY.vocab_size)
    return perturbed(T5EncoderModel(T5_TINY)), lambda m: m(ids, mask).last_hidden_state


def _clip():
    ids, mask = ids_and_mask(1000, eos=CLIP_TINY.eos_token_id)
    return perturbed(CLIPTextModel(CLIP_TINY)), lambda m: m(ids, mask).text_embeds


def _bert():
    ids, mask = ids_and_mask(BERT_TINY.vocab_size)
    return perturbed(BertModel(BERT_TINY)), lambda m: m(ids, mask).pooler_output


def _mmdit():
    m = perturbed(MMDiT(MMDiTConfig(depth=3, hidden_size=32, num_heads=4, pos_embed_max_size=8, adm_in_channels=12,
                                    context_dim=20, qk_norm="rms", x_block_self_attn_layers=(0,))))
    g = torch.Generator().manual_seed(0)
    x, y, ctx = torch.randn(2, 16, 8, 6, generator=g), torch.randn(2, 12, generator=g), torch.randn(2, 5, 20, generator=g)
    t = torch.tensor([900.0, 30.0])

    def run(m):
        d = m.context_embedder.weight.dtype
        return m(x.to(d), t, y=y.to(d), context=ctx.to(d))
    return m, run


def _hunyuan():
    m = perturbed(HunyuanDiT(HunyuanConfig(hidden_size=32, depth=4, num_heads=2, text_states_dim=12,
                                           text_states_dim_t5=16, text_len=5, text_len_t5=7, pooled_dim=20,
                                           size_cond=True)))
    g = torch.Generator().manual_seed(0)
    x, clip, t5 = torch.randn(2, 4, 8, 6, generator=g), torch.randn(2, 5, 12, generator=g), torch.randn(2, 7, 16, generator=g)
    mask, mask_t5 = torch.tensor([[1] * 5, [1, 1, 0, 0, 0]]), torch.ones(2, 7, dtype=torch.long)
    size, style, t = torch.tensor([[64.0, 48, 48, 64, 0, 0]] * 2), torch.zeros(2, dtype=torch.long), torch.tensor([900.0, 30])

    def run(m):
        d = m.x_embedder.proj.weight.dtype
        return m(x.to(d), t, clip.to(d), mask, t5.to(d), mask_t5, image_meta_size=size, style=style)
    return m, run


@pytest.mark.parametrize("build", [_dit, _pixart, _mmdit, _hunyuan, _vae, _t5, _clip, _bert],
                         ids=["dit", "pixart", "mmdit", "hunyuan", "vae", "t5", "clip", "bert"])
def test_every_model_runs_in_bfloat16(build):
    model, run = build()
    with torch.no_grad():
        ref = run(model).float()
        low = model.to(torch.bfloat16) if not isinstance(model, T5EncoderModel) else cast_t5(model, torch.bfloat16)
        out = run(low)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert torch.isfinite(out).all()
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 0.05, f"bfloat16 is {err:.3f} (relative) away from float32"


class WordTokenizer:
    """A stand-in for T5's tokenizer: one id per word + </s> (1), padded with 0."""

    def __call__(self, texts, max_length):
        ids, mask = torch.zeros(len(texts), max_length, dtype=torch.long), torch.zeros(len(texts), max_length)
        for i, text in enumerate(texts):
            words = [3 + sum(map(ord, w)) % 400 for w in text.split()][: max_length - 1] + [1]
            ids[i, :len(words)], mask[i, :len(words)] = torch.tensor(words), 1
        return {"input_ids": ids, "attention_mask": mask.long()}


def test_pipelines_run_in_bfloat16():
    """The samplers keep the latents in float32 and hand each model its own dtype."""
    dit = perturbed(DiT(DiTConfig(input_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=10)))
    vae = perturbed(AutoencoderKL(TINY_VAE)).to(torch.bfloat16)
    pipe = DiTPipeline(dit.to(torch.bfloat16), vae)
    latents = pipe([3, 7], num_inference_steps=3, output_type="latent", progress=False)
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
    images = pipe([3, 7], num_inference_steps=3, output_type="pt", progress=False)
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()

    pixart = perturbed(PixArt(PixArtConfig(input_size=4, hidden_size=48, num_heads=2, depth=1,
                                           caption_channels=T5_TINY.d_model, model_max_length=8)))
    t5 = cast_t5(perturbed(T5EncoderModel(T5_TINY)), torch.bfloat16)
    pipe = PixArtPipeline(pixart.to(torch.bfloat16), vae, WordTokenizer(), t5)
    images = pipe("a red cube", height=8, width=8, num_inference_steps=3, use_resolution_binning=False,
                  output_type="pt", progress=False)
    assert images.shape == (1, 3, 8, 8) and torch.isfinite(images).all()


# --------------------------------------------------------------------------------------------
# Full size on the meta device
# --------------------------------------------------------------------------------------------

def meta(shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def test_dit_xl2_512_on_meta():
    with torch.device("meta"):
        model = DiT(DIT_CHECKPOINTS["DiT-XL-2-512x512"])
    x, t, y = meta((2, 4, 64, 64)), meta((2,), torch.long), meta((2,), torch.long)
    assert model(x, t, y).shape == (2, 8, 64, 64)
    assert model.forward_with_cfg(x, t, y, 4.0).shape == (2, 8, 64, 64)


@pytest.mark.parametrize("config,latent", [
    (PRESETS["PixArt-Sigma-XL-2-2K-MS"], (256, 256)),
    (PRESETS["PixArt-XL-2-1024-MS"], (112, 144)),              # α: micro-conditions, a non-square bucket
    (PIXART_SIGMA_1024_KV_COMPRESS, (128, 96)),
])
def test_pixart_full_size_on_meta(config, latent):
    with torch.device("meta"):
        model = PixArt(config)
    B, L = 2, config.model_max_length
    x, t = meta((B, 4, *latent)), meta((B,))
    y, mask = meta((B, L, config.caption_channels)), meta((B, L), torch.long)
    micro = dict(img_hw=meta((1, 2)), aspect_ratio=meta((1, 1))) if config.micro_condition else {}
    assert model(x, t, y, mask, **micro).shape == (B, 8, *latent)


@pytest.mark.parametrize("name", ["sd3-medium", "sd3.5-large", "sd3.5-medium"])
def test_mmdit_full_size_on_meta(name):
    with torch.device("meta"):
        model = MMDiT(MMDIT_PRESETS[name])
    x, t = meta((2, 16, 128, 96)), meta((2,))                       # 1024 x 768, CFG batch
    out = model(x, t, y=meta((2, 2048)), context=meta((2, 154, 4096)), skip_layers=(7,))
    assert out.shape == (2, 16, 128, 96)


@pytest.mark.parametrize("name", ["hunyuan-dit-v1.2", "hunyuan-dit-v1.1"])
def test_hunyuan_full_size_on_meta(name):
    with torch.device("meta"):
        model = HunyuanDiT(HUNYUAN_PRESETS[name])
    B = 2
    size = dict(image_meta_size=meta((B, 6)), style=meta((B,), torch.long)) if model.config.size_cond else {}
    out = model(meta((B, 4, 160, 96)), meta((B,)), meta((B, 77, 1024)), meta((B, 77), torch.long),
                meta((B, 256, 2048)), meta((B, 256), torch.long), **size)           # 768 x 1280, CFG batch
    assert out.shape == (B, 8, 160, 96)


def test_sdxl_vae_decode_1024_on_meta():
    with torch.device("meta"):
        vae = AutoencoderKL(SDXL_VAE)
    assert vae.decode(meta((1, 4, 128, 128))).shape == (1, 3, 1024, 1024)
    assert vae.decode(meta((1, 4, 128, 160)), tile=64, overlap=16).shape == (1, 3, 1024, 1280)
    assert vae.encode(meta((1, 3, 256, 256))).mean.shape == (1, 4, 32, 32)


@pytest.mark.parametrize("cls,config,L,width", [(T5EncoderModel, T5_V1_1_XXL, 300, 4096),
                                                (CLIPTextModel, CLIP_L, 77, 768),
                                                (BertModel, HUNYUAN_BERT, 77, 1024)],
                         ids=["t5-xxl", "clip-l", "hunyuan-bert"])
def test_text_encoders_full_size_on_meta(cls, config, L, width):
    with torch.device("meta"):
        model = cls(config)
    out = model(meta((2, L), torch.long), meta((2, L), torch.long), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, L, width) and out.hidden_states[-2].shape == (2, L, width)

