"""minidit/flops.py against an independent count: torch.utils.flop_counter.FlopCounterMode on the REAL
modules, full size, built on the meta device (shapes only: no memory, no time), for every preset of
every family at two sizes, the text encoders and the VAE decoders. The counter adds up 2 x M x N x K for
every matmul / addmm / bmm / SDPA and 2 x outputs x fan-in for every convolution; the formulas count
the same operations (norms, softmax, RoPE, sin-cos tables: neither), so the two must agree exactly
(tolerance 1e-9 relative, i.e. none). Plus the published anchors: DiT's Table 1 Gflops (MACs)."""
import pytest
import torch

from minidit import flops as FL
from minidit import plan as P
from minidit import plan_models as M
from minidit.dit import DIT_XL_2
from minidit.errors import InputError
from minidit.pixart import PIXART_SIGMA_1024_KV_COMPRESS, PIXART_SIGMA_1024_MS
from minidit.text.bert import HUNYUAN_BERT, BertModel
from minidit.text.clip import CLIP_L, OPENCLIP_BIGG, CLIPTextModel
from minidit.text.t5 import MT5_XL, T5_V1_1_XXL, T5EncoderModel
from minidit.vae import SD3_VAE, SD_VAE, AutoencoderKL

torch.set_num_threads(1)
# the planner's names for the families (minidit/plan_models.py builds and counts each on meta)
KIND = {"DiT": "dit", "PixArt": "pixart", "MM-DiT": "sd3", "Hunyuan-DiT": "hunyuan", "STDiT": "stdit",
        "STDiT3": "stdit3", "Latte": "latte"}
# (height, width, latent frames) per family: a square and a non-square size; videos at two frame counts
SIZES = {"image": ((256, 256, 1), (768, 512, 1)), "STDiT": ((256, 256, 16), (512, 384, 8)),
         "STDiT3": ((256, 256, 5), (480, 848, 15)), "Latte": ((256, 256, 16), (512, 384, 1))}


def meta(*shape):
    return torch.empty(*shape, device="meta")


def counted(family, c, H, W, F) -> float:
    """torch's count of one forward of ONE sample of the real module (`plan_models.denoiser_flops`: the
    module under FlopCounterMode on meta inputs), with the model's own caption length."""
    L = FL.SD3_TEXT_TOKENS if family == "MM-DiT" else 120 if family == "Latte" else getattr(c, "model_max_length", 0)
    return M.denoiser_flops(KIND[family], c, H // 8, W // 8, 1, L, F)


PRESETS = FL.presets()


@pytest.mark.parametrize("family, name, config", PRESETS, ids=[f"{f}:{n}" for f, n, _ in PRESETS])
def test_every_preset_matches_torchs_flop_counter(family, name, config):
    for H, W, F in SIZES.get(family, SIZES["image"]):
        cost = FL.forward_macs(config, H, W, F)
        assert cost.flops == pytest.approx(counted(family, config, H, W, F), rel=1e-9), (name, H, W, F, cost)


def test_every_family_and_preset_is_covered():
    assert {f for f, _, _ in PRESETS} == set(KIND)
    assert len(PRESETS) == 32          # 12 DiT, 6 PixArt, 4 MM-DiT, 4 Hunyuan-DiT, 3 STDiT, 2 STDiT3, 1 Latte


def test_kv_compression_matches_the_counter():
    """Σ's KV compression (not in a released model): layers 14-27 attend to N/4 keys, + a depthwise conv."""
    c = PIXART_SIGMA_1024_KV_COMPRESS
    for H in (512, 1024):
        assert FL.forward_macs(c, H, H).flops == pytest.approx(counted("PixArt", c, H, H, 1), rel=1e-9)
    full, kv = FL.forward_macs(PIXART_SIGMA_1024_MS, 4096, 4096), FL.forward_macs(c, 4096, 4096)
    assert kv.attention < 0.65 * full.attention and kv.linear == full.linear


@pytest.mark.parametrize("config, cls, tokens", [(T5_V1_1_XXL, T5EncoderModel, 300), (T5_V1_1_XXL, T5EncoderModel, 77),
                                                 (MT5_XL, T5EncoderModel, 256), (CLIP_L, CLIPTextModel, 77),
                                                 (OPENCLIP_BIGG, CLIPTextModel, 77), (HUNYUAN_BERT, BertModel, 77)],
                         ids=["t5-xxl-300", "t5-xxl-77", "mt5-xl", "clip-l", "bigG", "hunyuan-bert"])
def test_text_encoders_match_the_counter(config, cls, tokens):
    model = P.on_meta(lambda: cls(config))
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    assert 2 * FL.text_macs(config, tokens) == pytest.approx(P.count_flops(model, ids), rel=1e-9)


@pytest.mark.parametrize("config", [SD_VAE, SD3_VAE], ids=["sd-vae", "sd3-vae"])
def test_vae_decode_matches_the_counter(config):
    vae = P.on_meta(lambda: AutoencoderKL(config))
    for h, w in ((64, 64), (32, 48)):
        z = meta(1, config.z_channels, h, w)
        assert 2 * FL.vae_decode_macs(config, h, w) == pytest.approx(P.count_flops(vae.decode, z), rel=1e-9)


def test_dit_table_1_gflops_are_macs():
    """DiT's Table 1: DiT-XL/2 118.6 Gflops at 256², 524.6 at 512² — MACs, the formula's total."""
    assert FL.forward_macs(DIT_XL_2, 256, 256).total / 1e9 == pytest.approx(118.6, abs=0.05)
    assert FL.forward_macs(DIT_XL_2, 512, 512).total / 1e9 == pytest.approx(524.6, abs=0.2)


def test_image_cost_adds_the_stages():
    c = PIXART_SIGMA_1024_MS
    forward = FL.forward_macs(c, 1024, 1024).total
    run = FL.image_cost(c, 1024, 1024, steps=20, text=((T5_V1_1_XXL, 300),), vae=SD_VAE)
    assert run.denoise == 2 * 20 * 2 * forward == FL.denoise_flops(forward, steps=20)
    assert run.text == 2 * 2 * FL.text_macs(T5_V1_1_XXL, 300)                 # prompt + negative prompt
    assert run.decode == 2 * FL.vae_decode_macs(SD_VAE, 128, 128)
    assert run.total == run.text + run.denoise + run.decode
    assert FL.image_cost(c, 1024, 1024, steps=20, cfg=False).denoise == run.denoise // 2


def test_cards_and_floors():
    for card in FL.CARDS:
        assert card.sparse == pytest.approx(2 * card.dense, rel=2e-3)      # 2:4 sparsity doubles the figure
    assert FL.card("NVIDIA A100-SXM4-80GB").dense == 312 and FL.card("NVIDIA H100 PCIe").dense == 756
    assert FL.floor_seconds(312e12, 312) == 1.0


def test_bad_sizes_are_refused():
    with pytest.raises(InputError, match="multiple of 16x16"):
        FL.forward_macs(PIXART_SIGMA_1024_MS, 1000, 1024)
    with pytest.raises(InputError, match="image model"):
        FL.forward_macs(PIXART_SIGMA_1024_MS, 1024, 1024, frames=16)
    with pytest.raises(InputError, match="no FLOP formula"):
        FL.forward_macs(SD_VAE, 1024, 1024)
    with pytest.raises(InputError, match="steps"):
        FL.image_cost(PIXART_SIGMA_1024_MS, 1024, 1024, steps=0)
