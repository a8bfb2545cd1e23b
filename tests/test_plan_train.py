"""minidit.plan_train: LoRA parameter counts by hand, the saved-activation formula against what autograd
really saves (a tiny PixArt, saved_tensors_hooks), the PixArt-Σ 512² terms by hand, and the command line."""
from dataclasses import replace

import pytest
import torch

from minidit import plan_models as M
from minidit.cli import MODELS, main
from minidit.pixart import PIXART_SIGMA_512_MS, PixArt, PixArtConfig
from minidit.plan_train import LORA_TARGETS, lora_parameters, saved_activations, training_memory
from minidit.training import enable_checkpointing, prepare_pixart
from tests.helpers.oracles import require

SMALL = PixArtConfig(input_size=32, patch_size=2, in_channels=4, hidden_size=144, depth=2, num_heads=2,
                     caption_channels=64, model_max_length=16)


def test_lora_parameter_counts_by_hand():
    model = PixArt(replace(SMALL, hidden_size=48))
    # per block, rank 4, D = 48: q, k, v, out of self-attention and of cross-attention: 8 x 4 (48 + 48)
    assert lora_parameters(model, 4) == 2 * 8 * 4 * 96
    # + fc1 (48 -> 192) and fc2 (192 -> 48): 2 x 4 (48 + 192)
    assert lora_parameters(model, 4, LORA_TARGETS["attention+mlp"]) == 2 * (8 * 4 * 96 + 2 * 4 * 240)
    xl = M.module_on_meta("pixart", PIXART_SIGMA_512_MS)
    assert lora_parameters(xl, 64) == 16 * 64 * 1152 * 28 == 33_030_144      # rank 64 on PixArt-XL/2


PEFT_TARGETS = {"attention": r".*blocks\.\d+\.(attn\.(qkv|proj)|cross_attn\.(q_linear|kv_linear|proj))",
                "attention+mlp": r".*blocks\.\d+\.(attn\.(qkv|proj)|cross_attn\.(q_linear|kv_linear|proj)|mlp\.fc[12])"}


@pytest.mark.parametrize("checkpointing, lora", [(False, None), (True, None), (False, "attention"),
                                                 (True, "attention"), (False, "attention+mlp")])
def test_saved_activation_formula_matches_what_autograd_saves(checkpointing, lora):
    """Full fine-tune: minidit's PixArt; LoRA: PEFT's adapters (the oracle) on the planner's targets, rest frozen."""
    torch.manual_seed(0)
    model = prepare_pixart(PixArt(SMALL)).train()
    if lora:
        peft = require("peft")
        model = peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=4, target_modules=PEFT_TARGETS[lora]),
                                             model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    if checkpointing:
        enable_checkpointing(model)
    B, L, N = 2, 16, 16 * 16
    x, t, y, mask = torch.randn(B, 4, 32, 32), torch.tensor([5, 900]), torch.randn(B, L, 64), torch.ones(B, L)
    skip = {s.untyped_storage().data_ptr() for s in [*model.parameters(), *model.buffers(), x, y, mask, t]}
    saved = {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in skip:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x, t, y, mask)
    terms = saved_activations(SMALL, N, B, L, 4, checkpointing, lora=lora is not None, targets=lora or "attention",
                              rank=4)
    terms.pop("one block recomputed", None)                  # that one lives in the backward
    predicted, measured = sum(terms.values()), sum(saved.values())
    assert abs(predicted / measured - 1) < 0.15, (predicted, measured)      # measured: 0.987 ... 1.029


def test_pixart_sigma_512_lora_terms_by_hand():
    stack = M.stack(MODELS["pixart-sigma-512"])
    plan = training_memory(stack, 512, 512, train="lora", rank=64)
    N, D, L, b = 1024, 1152, 300, 2                          # 64 x 64 latent, patch 2; 300 T5 tokens; bf16
    BND, BLD = N * D * b, L * D * b
    # LoRA: (10 + r) = 14 B·N·D + K, V per block + the rank-64 A outputs (four N-token Linears, one L-token)
    assert plan["saved"] == 28 * (14 * BND + 2 * BLD + (4 * N + L) * 64 * b) + BND + BLD
    assert plan["gradients"] == 33_030_144 * 4                 # fp32 adapters
    params = sum(p.numel() for p in M.module_on_meta("pixart", stack.denoiser).parameters())
    weights = (params + 300 * 4096) * 2                       # + the null caption buffer (300, 4096)
    transient = 2 * 4 * BND
    assert plan["total"] == weights + 33_030_144 * 12 + max(plan["saved"], plan["gradients"]) + transient
    assert plan["total"] < 16e9                               # the article's "under 16 GB" holds for this LoRA
    ckpt = training_memory(stack, 512, 512, train="lora", rank=64, checkpointing=True)
    assert ckpt["saved"] == 28 * BND + (14 * BND + 2 * BLD + (4 * N + L) * 64 * b) + BND + BLD
    full = training_memory(stack, 512, 512, train="full")
    assert full["saved"] == 28 * (23 * BND + 2 * BLD) + 3 * BND + 3 * BLD
    assert full["gradients"] == params * 4 and full["total"] == weights + params * 12 + params * 4 + transient


def test_command_line(capsys):
    assert main(["plan", "--model", "pixart-sigma-512", "--train", "lora", "--gpu-memory", "16"]) == 0
    out = capsys.readouterr().out
    assert "LoRA r=64 (attention), checkpointing" in out and "full fine-tune, fp32 optimizer state" in out
    assert main(["plan", "--model", "sd3-medium", "--train", "full"]) == 2
    assert "covers PixArt" in capsys.readouterr().err
