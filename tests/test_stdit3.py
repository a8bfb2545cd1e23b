"""STDiT3 (Open-Sora 1.2) and `weights_loader.load_stdit3`.

No Open-Sora package exists to import, so the oracle is a forward written here from the official
equations (hpcaitech/Open-Sora v1.2.0 `opensora/models/stdit/stdit3.py`, `opensora/models/layers/
blocks.py`) on a state dict in the official key layout (`helpers.layouts.opensora3.stdit3_keys`),
with the official `rotary_embedding_torch` for the temporal RoPE and a per-sample loop for the
xformers block-diagonal cross-attention mask.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from helpers import FP32, assert_key_contract, assert_parity, random_state_dict, require
from helpers.layouts.opensora3 import stdit3_keys
from helpers.opensora import official_rflow_sample
from minidit.errors import InputError
from minidit.stdit3 import PRESETS, STDiT3, STDiT3Config
from weights_loader import CheckpointError
from weights_loader.io import save_safetensors
from weights_loader.opensora3 import detect_stdit3_config, load_stdit3

torch.set_num_threads(1)
TINY = dict(input_size=[None, None, None], input_sq_size=512, in_channels=4, patch_size=[1, 2, 2], hidden_size=48,
            depth=2, num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1, pred_sigma=True, drop_path=0.0,
            caption_channels=32, model_max_length=8, qk_norm=True, enable_flash_attn=True,
            enable_layernorm_kernel=True, enable_sequence_parallelism=False, only_train_temporal=False,
            freeze_y_embedder=False, skip_y_embedder=False)
# What transformers' `save_pretrained` adds to the STDiT3Config fields.
HF_EXTRA = dict(architectures=["STDiT3"], model_type="STDiT3", torch_dtype="float32", transformers_version="4.36.2")


def official_state_dict(cfg, seed):
    sd = random_state_dict(stdit3_keys(cfg), seed=seed, scale=lambda k: 0.5 if "table" in k or "norm" in k else 0.15)
    hd = cfg["hidden_size"] // cfg["num_heads"]
    sd["rope.freqs"] = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)     # RotaryEmbedding(dim=hd)
    for i in range(cfg["depth"]):
        for kind in ("spatial", "temporal"):
            for n in ("q_norm", "k_norm"):
                sd[f"{kind}_blocks.{i}.attn.{n}.weight"] = 1 + sd[f"{kind}_blocks.{i}.attn.{n}.weight"] * 0.2
    return sd


# --------------------------------------------------------------------------------------------
# The official forward, written out
# --------------------------------------------------------------------------------------------

def timestep_embedding(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def lin(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def position_embedding_2d(D, h, w, scale, base_size):
    """PositionEmbedding2D._get_cached_emb, with its meshgrid naming kept."""
    half = D // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2).float() / half))
    grid_h, grid_w = torch.arange(h) / scale, torch.arange(w) / scale
    grid_h, grid_w = grid_h * (base_size / h), grid_w * (base_size / w)
    grid_h, grid_w = torch.meshgrid(grid_w, grid_h, indexing="ij")
    grid_h, grid_w = grid_h.t().reshape(-1), grid_w.t().reshape(-1)
    emb = [torch.cat([torch.sin(torch.einsum("i,d->id", g, inv_freq)), torch.cos(torch.einsum("i,d->id", g, inv_freq))], -1)
           for g in (grid_h, grid_w)]
    return torch.cat(emb, dim=-1)[None]


def rms(x, weight):                                            # LlamaRMSNorm(eps=1e-6)
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def official_block(sd, name, x, y, y_lens, t_mlp, T, S, nh, temporal, rope):
    B, N, D = x.shape
    hd = D // nh
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
        sd[f"{name}.scale_shift_table"][None] + t_mlp.reshape(B, 6, -1)).chunk(6, dim=1)
    x_m = F.layer_norm(x, (D,), eps=1e-6) * (1 + scale_msa) + shift_msa
    pattern = "B (T S) C -> (B S) T C" if temporal else "B (T S) C -> (B T) S C"
    x_m = rearrange(x_m, pattern, T=T, S=S)
    b, n, _ = x_m.shape
    q, k, v = lin(sd, f"{name}.attn.qkv", x_m).view(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = rms(q, sd[f"{name}.attn.q_norm.weight"]), rms(k, sd[f"{name}.attn.k_norm.weight"])
    if temporal:
        q, k = rope.rotate_queries_or_keys(q), rope.rotate_queries_or_keys(k)
    attn = ((q * hd**-0.5) @ k.transpose(-2, -1)).float().softmax(dim=-1)
    x_m = lin(sd, f"{name}.attn.proj", (attn @ v).transpose(1, 2).reshape(b, n, D))
    back = "(B S) T C -> B (T S) C" if temporal else "(B T) S C -> B (T S) C"
    x = x + gate_msa * rearrange(x_m, back, T=T, S=S)
    # cross-attention: xformers BlockDiagonalMask.from_seqlens([N] * B, y_lens) over the flattened batch
    q = lin(sd, f"{name}.cross_attn.q_linear", x).view(B, N, nh, hd).transpose(1, 2)
    kv = lin(sd, f"{name}.cross_attn.kv_linear", y).view(-1, 2, nh, hd)
    out, start = [], 0
    for i in range(B):
        k_i, v_i = kv[start:start + y_lens[i]].unbind(1)                     # (L_i, nh, hd)
        start += y_lens[i]
        a = (q[i] @ k_i.permute(1, 2, 0) * hd**-0.5).softmax(-1)              # (nh, N, L_i)
        out.append((a @ v_i.transpose(0, 1)).transpose(0, 1).reshape(N, D))
    x = x + lin(sd, f"{name}.cross_attn.proj", torch.stack(out))
    x_m = F.layer_norm(x, (D,), eps=1e-6) * (1 + scale_mlp) + shift_mlp
    x_m = lin(sd, f"{name}.mlp.fc2", F.gelu(lin(sd, f"{name}.mlp.fc1", x_m), approximate="tanh"))
    return x + gate_mlp * x_m


def official_forward(sd, cfg, x, timestep, y, mask, fps, height, width):
    rotary = require("rotary_embedding_torch")
    D, nh, C = cfg["hidden_size"], cfg["num_heads"], cfg["in_channels"]
    pt, ph, pw = cfg["patch_size"]
    B, _, Tx, Hx, Wx = x.shape
    x = F.pad(x, (0, -Wx % pw, 0, -Hx % ph, 0, -Tx % pt))                     # PatchEmbed3D's padding
    T, H, W = x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw
    S = H * W
    pos = position_embedding_2d(D, H, W, (height[0].item() * width[0].item()) ** 0.5 / cfg["input_sq_size"],
                                round(S**0.5))
    emb = lambda name, s: lin(sd, f"{name}.mlp.2", F.silu(lin(sd, f"{name}.mlp.0", timestep_embedding(s))))  # noqa: E731
    t = emb("t_embedder", timestep) + emb("fps_embedder", fps)
    t_mlp = lin(sd, "t_block.1", F.silu(t))
    y = lin(sd, "y_embedder.y_proj.fc2", F.gelu(lin(sd, "y_embedder.y_proj.fc1", y), approximate="tanh"))  # (B, 1, L, D)
    if mask is not None:                                                      # STDiT3.encode_text
        mask = mask.repeat(y.shape[0] // mask.shape[0], 1)
        y = y.squeeze(1).masked_select(mask.unsqueeze(-1) != 0).view(1, -1, D)
        y_lens = mask.sum(dim=1).tolist()
    else:
        y_lens, y = [y.shape[2]] * B, y.squeeze(1).view(1, -1, D)
    y = y[0]
    x = F.conv3d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=(pt, ph, pw))
    x = rearrange(x.flatten(2).transpose(1, 2), "B (T S) C -> B T S C", T=T, S=S) + pos
    x = rearrange(x, "B T S C -> B (T S) C")
    rope = rotary.RotaryEmbedding(dim=D // nh)
    rope.freqs.data.copy_(sd["rope.freqs"])
    for i in range(cfg["depth"]):
        x = official_block(sd, f"spatial_blocks.{i}", x, y, y_lens, t_mlp, T, S, nh, False, rope)
        x = official_block(sd, f"temporal_blocks.{i}", x, y, y_lens, t_mlp, T, S, nh, True, rope)
    shift, scale = (sd["final_layer.scale_shift_table"][None] + t[:, None]).chunk(2, dim=1)
    x = lin(sd, "final_layer.linear", F.layer_norm(x, (D,), eps=1e-6) * (1 + scale) + shift)
    x = rearrange(x, "B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p) (N_h H_p) (N_w W_p)",
                  N_t=T, N_h=H, N_w=W, T_p=pt, H_p=ph, W_p=pw, C_out=2 * C)
    return x[:, :, :Tx, :Hx, :Wx]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("OpenSora-STDiT-v3")
    sd = official_state_dict(TINY, seed=0)
    save_safetensors(sd, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**TINY, **HF_EXTRA}))
    return folder, sd


@pytest.mark.parametrize("case", ["square", "padded", "cfg_mask"])
def test_forward_matches_the_official_equations(official_folder, case):
    folder, sd = official_folder
    model = load_stdit3(folder)
    g = torch.Generator().manual_seed(1)
    B, L, C_cap = 2, TINY["model_max_length"], TINY["caption_channels"]
    F_, H, W, height, width = {"square": (3, 4, 4, 32, 32), "padded": (3, 4, 5, 32, 44),
                               "cfg_mask": (2, 4, 4, 240, 426)}[case]
    x = torch.randn(B, 4, F_, H, W, generator=g)
    timestep = torch.tensor([999.0, 371.5])
    y = torch.randn(B, 1, L, C_cap, generator=g)
    mask = torch.tensor([[1] * 5 + [0] * 3, [1] * 8]) if case != "cfg_mask" else torch.tensor([[1] * 6 + [0] * 2])
    fps = torch.tensor([24.0, 24.0])
    hw = (torch.tensor([float(height)] * B), torch.tensor([float(width)] * B))
    with torch.no_grad():
        ours = model(x, timestep, y, mask, fps=fps, height=hw[0], width=hw[1])
        theirs = official_forward(sd, TINY, x, timestep, y, mask, fps, *hw)
    assert ours.shape == (B, 8, F_, H, W)
    assert_parity(ours, theirs, tol=FP32, what=f"STDiT3 forward ({case})")


def test_the_blocks_are_not_trivial(official_folder):
    """The oracle comparison would pass for a model that ignored time: check that the temporal
    blocks mix frames (frame 0 changes when frame 1 does) and that the spatial ones do not look ahead."""
    folder, _ = official_folder
    model = load_stdit3(folder)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(1, 4, 3, 4, 4, generator=g), torch.randn(1, 8, 32, generator=g)
    kw = dict(fps=24, height=32, width=32)
    x2 = x.clone()
    x2[:, :, 1] += 1
    with torch.no_grad():
        a, b = model(x, torch.tensor([500.0]), y, **kw), model(x2, torch.tensor([500.0]), y, **kw)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3


def test_full_size_key_contract_on_meta():
    for name, cfg in (("STDiT3-XL/2", dict(TINY, hidden_size=1152, depth=28, num_heads=16, caption_channels=4096,
                                          model_max_length=300)),
                      ("STDiT3-3B/2", dict(TINY, hidden_size=1872, depth=28, num_heads=26, caption_channels=4096,
                                          model_max_length=300))):
        with torch.device("meta"):
            ours = STDiT3(PRESETS[name]).state_dict()
        theirs = stdit3_keys(cfg)
        assert theirs.pop("rope.freqs") == (cfg["hidden_size"] // cfg["num_heads"] // 2,)   # checked, recomputed
        assert_key_contract(ours, theirs, name)
    n = sum(math.prod(s) for k, s in stdit3_keys(dict(TINY, hidden_size=1152, depth=28, num_heads=16,
                                                      caption_channels=4096, model_max_length=300)).items()
            if k != "y_embedder.y_embedding" and k != "rope.freqs")
    assert n == 1_207_643_936               # 1.21 B parameters (the official README rounds to "1.1B")


def test_config_detection_and_json(official_folder):
    folder, sd = official_folder
    want = STDiT3Config(**TINY)
    assert detect_stdit3_config(sd) == STDiT3Config(**{**TINY, "enable_flash_attn": False,
                                                         "enable_layernorm_kernel": False})
    assert load_stdit3(folder).config == want
    assert load_stdit3(dict(sd)).config.hidden_size == 48              # a bare state dict: detected


def test_rope_freqs_are_checked(official_folder):
    _, sd = official_folder
    wrong = dict(sd, **{"rope.freqs": sd["rope.freqs"] * 2})
    with pytest.raises(CheckpointError, match="rope.freqs"):
        load_stdit3(wrong)
    absent = {k: v for k, v in sd.items() if k != "rope.freqs"}
    assert isinstance(load_stdit3(absent), STDiT3)
    extra = dict(sd, **{"pos_embed": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_stdit3(extra)


def test_refusals(official_folder):
    folder, _ = official_folder
    model = load_stdit3(folder)
    x, y = torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 8, 32)
    with pytest.raises(InputError, match="x_mask"):
        model(x, torch.tensor([1.0]), y, x_mask=torch.ones(1, 2, dtype=torch.bool), fps=24, height=32, width=32)
    with pytest.raises(InputError, match="B, C, F, H, W"):
        model(x[:, :, 0], torch.tensor([1.0]), y, fps=24, height=32, width=32)
    with pytest.raises(ValueError, match="sequence parallelism"):
        STDiT3Config(**{**TINY, "enable_sequence_parallelism": True})
    with pytest.raises(ValueError, match="STDiT3"):
        (folder / "bad").mkdir(exist_ok=True)
        (folder / "bad" / "config.json").write_text(json.dumps({**TINY, "model_type": "STDiT2"}))
        load_stdit3(folder / "bad")


def test_text_to_video_sampling_matches_the_official_rflow_loop(official_folder):
    """STDiT3 + classifier-free guidance + `Sampler(spacing="flow_opensora")` vs the official
    `RFLOW.sample` (CFG on the doubled batch, the null caption = y_embedding, z += v dt)."""
    from minidit.flow import opensora_shift
    from minidit.pipelines.common import guided_model_fn
    from minidit.samplers import Sampler
    folder, sd = official_folder
    model = load_stdit3(folder)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 4, 5, 4, 4, generator=g)                          # 17 frames of 32 x 32 pixels
    y = torch.cat([torch.randn(1, 1, 8, 32, generator=g), sd["y_embedder.y_embedding"][None, None]])
    mask = torch.tensor([[1] * 6 + [0] * 2])
    height, width, frames, steps, s = 32.0, 32.0, 17, 3, 7.0
    args = dict(fps=torch.tensor([24.0, 24.0]), height=torch.tensor([height] * 2), width=torch.tensor([width] * 2))

    # the official loop (tests/helpers/opensora.py), on the official forward written out here
    with torch.no_grad():
        zz, _ = official_rflow_sample(lambda z2, t2: official_forward(sd, TINY, z2, t2, y, mask, **args), z, steps,
                                      height, width, frames, guidance_scale=s)
        forward = lambda x2, t2: -model(x2, t2, y, mask, **args)          # noqa: E731  (x0 - eps -> eps - x0)
        sampler = Sampler(name="euler", prediction_type="flow", spacing="flow_opensora",
                          shift=opensora_shift(32, 32, frames))
        ours = sampler.run(guided_model_fn(forward, s), z, steps, learn_sigma=True, progress=False)
    assert_parity(ours, zz, tol=FP32, what="3 guided rflow steps")


def test_bfloat16_weights_take_float32_inputs(official_folder):
    """As the official forward: inputs are cast to the weights' dtype; bf16 stays close to fp32."""
    from helpers import BF16
    folder, _ = official_folder
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 8, 32, generator=g)
    kw = dict(fps=24, height=32, width=32)
    with torch.no_grad():
        ref = load_stdit3(folder)(x, torch.tensor([700.0]), y, **kw)
        half = load_stdit3(folder, dtype=torch.bfloat16)(x, torch.tensor([700.0]), y, **kw)
    assert half.dtype == torch.bfloat16
    assert_parity(half.float(), ref, tol=BF16, what="bf16 vs fp32")
