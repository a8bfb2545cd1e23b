"""The memory planner (`minidit/plan.py`, `plan_models.py`, `plan_fit.py`, `python -m minidit plan`).

Checked against independent numbers only:
  * parameter counts against the architectures written out by hand (T5-XXL, PixArt-XL/2);
  * FLOPs (counted on the meta device) against PixArt-Σ's hand formula (issue 14) and the SDXL-VAE
    decoder's published figures;
  * activation formulas against the tensors the real code keeps alive (`live_tensor_peak`, exact,
    tiny configs, every family) and against the CPU's peak resident memory of a mid-size forward
    in a fresh process (VmHWM via `memory.stage`, the full table: benchmarks/plan_validation.py);
  * the command line: its stage table, its choice, its refusals.
"""
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from minidit import cli, plan as P, plan_fit, plan_models as M
from minidit.pipelines.memory import live_tensor_peak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}      # benchmarks/common.py: RSS follows the live tensors


def run_cli(capsys, *argv):
    code = cli.main(["plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------------------------
# Weights and FLOPs
# --------------------------------------------------------------------------------------------

def test_weights_are_counted_exactly():
    d, F, V, layers = 4096, 10240, 32128, 24           # T5 v1.1 XXL encoder: embedding, q k v o, wi_0 wi_1 wo, 2 RMSNorms
    t5 = V * d + layers * (4 * d * d + 3 * d * F + 2 * d) + d + 32 * 64   # + final norm + relative bias (32 x 64 heads)
    assert M.weights_of("t5", M.stack(cli.MODELS["pixart-sigma-2k"]).text[0].config) == t5 == 4_762_310_656
    D, L, depth, C_cap, out = 1152, 300, 28, 4096, 2 * 2 * 8   # PixArt-XL/2, patch 2, 2 x 4 output channels
    block = (3 * D * D + 3 * D) + (D * D + D)            # self-attention: qkv, proj
    block += (D * D + D) + (2 * D * D + 2 * D) + (D * D + D)   # cross-attention: q, kv, proj
    block += (D * 4 * D + 4 * D) + (4 * D * D + D) + 6 * D   # MLP fc1, fc2; the scale-shift table
    rest = 4 * 2 * 2 * D + D                             # x_embedder (conv 2x2 over 4 channels)
    rest += (256 * D + D) + (D * D + D) + (D * 6 * D + 6 * D)  # t_embedder, t_block
    rest += (C_cap * D + D) + (D * D + D) + L * C_cap    # y_proj, the stored null caption
    rest += (D * out + out) + 2 * D                      # final layer
    assert M.weights_of("pixart", M.stack(cli.MODELS["pixart-sigma-2k"]).denoiser) == depth * block + rest


@pytest.mark.parametrize("side", [1024, 2048])
def test_pixart_flops_match_the_hand_formula(side):
    """MAC per forward ≈ L·(14·d²·N + 2·N²·d + 2·d²·M + 2·N·M·d) (issue 14); FLOPs = 2 x MAC x batch 2 x steps."""
    stack = M.stack(cli.MODELS["pixart-sigma-2k"])
    h = side // 8
    N, d, M_txt, L = (h // 2) ** 2, 1152, 300, 28
    mac = L * (14 * d * d * N + 2 * N * N * d + 2 * d * d * M_txt + 2 * N * M_txt * d)
    got = M.denoise_stage(stack, h, h, "bf16", 20, True).flops
    assert got == pytest.approx(2 * mac * 2 * 20, rel=2e-3)


def test_vae_decode_flops_match_the_published_figures():
    """SDXL-VAE decoder ≈ 2.5 / 10.5 / 48 TFLOP at 512 / 1024 / 2048 px (issue 14's table)."""
    stack = M.stack(cli.MODELS["pixart-sigma-1024"])
    for side, tflop in ((512, 2.5), (1024, 10.5), (2048, 48)):
        assert M.decode_stage(stack, side // 8, side // 8, "fp32").flops / 1e12 == pytest.approx(tflop, rel=0.02)


# --------------------------------------------------------------------------------------------
# Activations: the formulas against the live tensors of the real code (tiny configs)
# --------------------------------------------------------------------------------------------

def live(module, call, *args):
    """The live-tensor peak of module(*args) after a warm-up call (caches such as the position table
    are then in place, as in a sampling loop's later steps)."""
    module.eval()
    with torch.no_grad():
        call(*args)
    known = list(module.parameters()) + list(module.buffers()) + [a for a in args if isinstance(a, torch.Tensor)]
    return live_tensor_peak(lambda: call(*args), known)


@pytest.mark.parametrize("backend", ["sdpa", "manual"])
def test_pixart_and_dit_formula(backend):
    from minidit.attention import attention_backend
    from minidit.dit import DiT, DiTConfig
    from minidit.pixart import PixArt, PixArtConfig
    torch.manual_seed(0)
    side = 32
    N = (side // 2) ** 2
    cfg = PixArtConfig(input_size=side, hidden_size=64, depth=2, num_heads=4, caption_channels=32, model_max_length=20)
    px = PixArt(cfg)
    args = (torch.randn(2, 4, side, side), torch.tensor([5.0, 5.0]), torch.randn(2, 20, 32), torch.ones(2, 20))
    with attention_backend(backend):
        got = live(px, px, *args)
    terms = P.pixart_activations(cfg, N, 2, 20, 4, backend)
    assert terms["peak"] - terms["position table N·D"] == pytest.approx(got, rel=0.06)
    dcfg = DiTConfig(input_size=side, hidden_size=64, depth=2, num_heads=4, num_classes=10)
    dit = DiT(dcfg)
    got = live(dit, dit, torch.randn(2, 4, side, side), torch.tensor([5, 5]), torch.tensor([1, 2]))
    terms = P.pixart_activations(dcfg, N, 2, 0, 4)
    assert terms["peak"] - terms["position table N·D"] == pytest.approx(got, rel=0.03)


@pytest.mark.parametrize("qk_norm,dual", [(None, ()), ("rms", (0,))])
def test_mmdit_formula(qk_norm, dual):
    from minidit.mmdit import MMDiT, MMDiTConfig
    torch.manual_seed(0)
    cfg = MMDiTConfig(depth=2, hidden_size=64, num_heads=2, adm_in_channels=32, context_dim=48, pos_embed_max_size=64,
                      qk_norm=qk_norm, x_block_self_attn_layers=dual)
    m = MMDiT(cfg)
    side = 96                                            # 2304 image tokens: more than one MLP chunk (1024)
    got = live(m, m, torch.randn(2, 16, side, side), torch.tensor([5.0, 5.0]), torch.randn(2, 32), torch.randn(2, 20, 48))
    assert P.mmdit_activations(cfg, (side // 2) ** 2, 2, 20, 4)["peak"] == pytest.approx(got, rel=0.08)


def test_hunyuan_formula():
    from minidit.hunyuan import HunyuanConfig, HunyuanDiT
    torch.manual_seed(0)
    cfg = HunyuanConfig(hidden_size=64, depth=6, num_heads=2, text_states_dim=32, text_states_dim_t5=48, text_len=7,
                        text_len_t5=9, pooled_dim=32, pool_heads=2)
    m = HunyuanDiT(cfg)
    side = 96
    got = live(m, m, torch.randn(2, 4, side, side), torch.tensor([5.0, 5.0]), torch.randn(2, 7, 32), torch.ones(2, 7),
               torch.randn(2, 9, 48), torch.ones(2, 9))
    assert P.hunyuan_activations(cfg, (side // 2) ** 2, 2, 16, 4)["peak"] == pytest.approx(got, rel=0.05)


def test_t5_formula():
    from minidit.text.t5 import T5_TINY, T5EncoderModel
    torch.manual_seed(0)
    m = T5EncoderModel(replace(T5_TINY, d_ff=512, num_heads=8))
    L = 64
    got = live(m, m, torch.randint(0, 500, (1, L)), torch.ones(1, L, dtype=torch.long))
    assert P.t5_activations(m.config, L, 1, 4)["peak"] == pytest.approx(got, rel=0.08)


@pytest.mark.parametrize("tile", [None, 4])
def test_vae_decode_formula(tile):
    from minidit.vae import AutoencoderKL, VAEConfig
    torch.manual_seed(0)
    cfg = VAEConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, norm_num_groups=8)
    vae = AutoencoderKL(cfg)
    z = torch.randn(1, 4, 16, 16)
    got = live(vae, lambda z: vae.decode(z, tile=tile, overlap=1), z)
    assert P.vae_decode_memory(cfg, 16, 16, 4, tile, 1)["peak"] == pytest.approx(got, rel=0.03)


# --------------------------------------------------------------------------------------------
# The CPU's resident memory: a mid-size PixArt forward in a fresh process (VmHWM)
# --------------------------------------------------------------------------------------------

CHILD = r"""
import json, sys, torch
from dataclasses import replace
from minidit.pixart import PixArt, PIXART_SIGMA_1024_MS
from minidit.pipelines.memory import stage
torch.set_num_threads(1)
torch.manual_seed(0)
m = PixArt(replace(PIXART_SIGMA_1024_MS, depth=2)).eval()     # full width (1152, 16 heads), 2 blocks
a = (torch.randn(2, 4, 64, 64), torch.tensor([500., 500.]), torch.randn(2, 300, 4096), torch.ones(2, 300))
with torch.no_grad():
    m(*a)                                   # warm-up at the same size
    stats = {}
    with stage(stats, "denoise", "cpu"):
        m(*a)
print(json.dumps(stats["denoise"]))
"""


def test_predicted_peak_matches_the_measured_rss_increment():
    """512² (1024 tokens), batch 2: the increment of VmHWM over the stage's start RSS, within 15 %."""
    env = {**os.environ, **LIVE_MEMORY_ENV, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["peak_gib"] is None:
        pytest.skip("no /proc/self/status VmHWM on this system")
    measured = (r["peak_gib"] - r["start_gib"]) * P.GiB
    from minidit.pixart import PIXART_SIGMA_1024_MS
    terms = P.pixart_activations(replace(PIXART_SIGMA_1024_MS, depth=2), 1024, 2, 300, 4)
    predicted = terms["peak"] - terms["position table N·D"]           # cached by the warm-up
    assert predicted / measured == pytest.approx(1.0, abs=0.15), (predicted, measured)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------

def test_plan_prints_the_stages_and_the_settings_that_fit(capsys):
    code, out, err = run_cli(capsys, "--model", "pixart-sigma-2k", "--height", "4096", "--width", "4096",
                             "--gpu-memory", "24", "--gpu", "a100")
    assert code == 0, err
    assert "65536 image tokens" in out and "NVIDIA A100" in out
    rows = {}
    for line in out.splitlines():                                          # the first row of each stage
        if line.split()[:1] in (["text"], ["denoise"], ["decode"]):
            rows.setdefault(line.split()[0], line)
    assert set(rows) == {"text", "denoise", "decode"}
    assert "24,997" in rows["denoise"] and "80.1" in rows["denoise"]      # 25.0 PFLOP / 312 TFLOP/s
    assert "8.87" in rows["text"]                                          # 4.76 B x 2 B = 8.87 GiB
    chosen = next(line for line in out.splitlines() if "chosen:" in line)
    assert "bf16" in chosen and "tiles" in chosen and "no windows" in chosen
    assert "why not untiled decode: the decode stage would need" in out


def test_a_smaller_card_stages_the_text_encoder(capsys):
    code, out, _ = run_cli(capsys, "--model", "pixart-sigma-2k", "--height", "4096", "--width", "4096", "--gpu-memory", "11")
    assert code == 0
    chosen = next(line for line in out.splitlines() if "chosen:" in line)
    assert "text encoders staged" in chosen
    assert "why not text encoders resident: the" in out


def test_nothing_fits_says_what_is_missing(capsys):
    code, out, _ = run_cli(capsys, "--model", "dit-xl-2-256", "--gpu-memory", "0.5")
    assert code == 0
    assert "none: the smallest setting tried" in out


def test_every_family_plans(capsys):
    """One row per family and per variant of its network (α's micro-conditions, MMDiT-X, v1.1's size condition)."""
    for name in ("dit-xl-2-256", "pixart-alpha-1024", "sd3.5-medium", "hunyuan-dit-v1.1"):
        code, out, err = run_cli(capsys, "--model", name, "--gpu-memory", "80", "--gpu", "h100")
        assert code == 0, (name, err)
        assert "chosen:" in out, name


@pytest.mark.parametrize("argv,message", [
    (["--model", "pixart-sigma-9k"], "unknown model 'pixart-sigma-9k'"),
    (["--model", "pixart-sigma-2k", "--height", "4100"], "--height 4100"),
    (["--model", "pixart-sigma-2k", "--width", "0"], "--width 0"),
    (["--model", "pixart-sigma-2k", "--gpu-memory", "0"], "--gpu-memory 0"),
    (["--model", "pixart-sigma-2k", "--gpu-memory", "-3"], "must be positive"),
    (["--model", "pixart-sigma-2k", "--steps", "0"], "--steps 0"),
    (["--model", "dit-xl-2-256", "--height", "512", "--width", "512"], "256x256 images only"),
    (["--model", "sd3-medium", "--height", "4096", "--width", "4096"], "at most 3072x3072"),
    (["--model", "sd3-medium", "--kv-compress", "2"], "PixArt models only"),
    (["--model", "pixart-sigma-2k", "--window", "1000"], "--window 1000"),
])
def test_bad_input_is_refused_with_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err, err


def test_windows_cost_one_window_forward_per_window():
    stack = M.stack(cli.MODELS["pixart-sigma-2k"])
    full = M.denoise_stage(stack, 512, 512, "bf16", 1, True)
    win = M.denoise_stage(stack, 512, 512, "bf16", 1, True, window=256, overlap=64)
    one = M.denoise_stage(stack, 256, 256, "bf16", 1, True)
    assert win.flops == pytest.approx(9 * one.flops)           # starts 0, 192, 256 on each axis
    assert win.activations == one.activations < full.activations
    assert plan_fit.search(stack, 512, 512, 24)[0].setting.window is None   # exact settings fit: no windows
    # the manual attention path at 4096² needs ~1 TB of scores; the largest windows that fit are 1024 px (4096 tokens)
    best, _ = plan_fit.search(stack, 512, 512, 24, backend="manual")
    assert best.setting.window == 128 and max(best.peaks.values()) <= 24 * P.GiB
