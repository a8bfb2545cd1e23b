"""Training memory: `python -m minidit plan --model pixart-sigma-512 --train lora|full [--checkpointing]`.

One training step on a GPU holds

    weights      every parameter of the denoiser, in the weights' dtype (bf16 here: 2 B each; with an fp32
                 master copy these are the bf16 casts autocast makes and the backward keeps)
    trainable    full fine-tune: all of them; LoRA: the adapters, r (d_in + d_out) per adapted Linear
                 d_in x d_out (a fused q|k|v Linear counts as its three d_in x d_in parts, as diffusers
                 and PEFT adapt to_q, to_k, to_v separately), plus, per trainable parameter:
                   "fp32"  an fp32 master copy, its fp32 gradient and AdamW's two fp32 moments: 16 B
                           (LoRA adapters always; a full fine-tune with bf16 autocast, the usual recipe)
                   "bf16"  weights, gradients and moments all in bf16 (torch's AdamW keeps the moments in
                           the parameter's dtype): 8 B, the frozen bf16 copy being the weights themselves
    activations  what autograd saves in the forward for the backward, per PixArt block (read off
                 `pixart.PixArtBlock` op by op, then checked tensor by tensor on the CPU):
                   x, LayerNorm out, modulated, q|k|v (3), SDPA out (the merge of heads after it is a
                   view: SDPA returns (B, N, nh, hd) memory), proj out (the gate's addcmul keeps it),
                   x1 (cross-attn q's input), q, cross SDPA out, x2, LayerNorm out, modulated,
                   fc1 out (r), GELU out (r), fc2 out:      (15 + 2r) B·N·D  + the cross-attn K, V: 2 B·L·D
                 outside the blocks: the final layer's 3 B·N·D and the caption MLP's 3 B·L·D.
                 LoRA keeps less (frozen weights need no saved input; `saved_activations`):
                 (10 + r) B·N·D + 2 B·L·D per block with attention adapters.
                 Gradient checkpointing (`training.enable_checkpointing`) keeps each block's input
                 (B·N·D) and recomputes one block at a time in the backward: + one block's set.
    backward     the backward frees each block's saved tensors while it makes that block's gradients, so
                 the step peaks at one end of it: max(saved activations, gradients) (measured: the
                 formula's peak is 1.00-1.10 x the live tensors' peak, benchmarks/results/train_memory.txt)
    transient    the backward of one block's MLP: the gradients of fc2's input and fc1's output (2r B·N·D)
    text         T5-XXL cached (`training.TextEmbeddingCache`: 0 on the card) or resident (bf16 weights +
                 one caption's activations, `plan.t5_activations`)

Latents are assumed encoded beforehand (as the captions); the CUDA context (~0.5 GiB) and the caching
allocator's slack are not counted. The per-block formula is validated on the CPU at full width with
fewer blocks (`benchmarks/train_memory.py`, `benchmarks/results/train_memory.txt`). Symbols as `plan.py`.
"""
from __future__ import annotations

from torch import nn

from . import plan as P
from . import plan_models as M
from .errors import InputError

LORA_TARGETS = {
    "attention": ("attn.qkv", "attn.proj", "cross_attn.q_linear", "cross_attn.kv_linear", "cross_attn.proj"),
    "attention+mlp": ("attn.qkv", "attn.proj", "cross_attn.q_linear", "cross_attn.kv_linear", "cross_attn.proj",
                      "mlp.fc1", "mlp.fc2"),
}
FUSED = {"attn.qkv": 3, "cross_attn.kv_linear": 2}      # minidit's fused Linear -> diffusers' separate ones
OPTIMIZER_BYTES = {"fp32": 16, "bf16": 8}               # per trainable parameter, see the module docstring
STATE_BYTES = {"fp32": (12, 4), "bf16": (4, 2)}         # (kept all along: master + moments, the gradient)


def lora_parameters(model, rank: int, targets=LORA_TARGETS["attention"]) -> int:
    """Adapter parameters of rank `rank` on the Linear layers whose names end with one of `targets`."""
    if rank < 1:
        raise InputError(f"the LoRA rank must be a positive integer, got {rank}")
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and any(name.endswith(t) for t in targets):
            k = next((n for suffix, n in FUSED.items() if name.endswith(suffix)), 1)
            total += k * rank * (module.in_features + module.out_features // k)
    return total


def saved_activations(cfg, N: int, B: int, L: int, b: int, checkpointing: bool = False, *, lora: bool = False,
                      targets: str = "attention", rank: int = 64) -> dict:
    """Bytes autograd keeps from a PixArt forward for the backward (formula in the module docstring).

    With LoRA (`lora=True`) autograd keeps less: it saves a tensor only for a gradient that is needed,
    and the frozen weights need none, so a frozen Linear keeps no input, the gates and modulations keep
    nothing of (B, N, D) size, and the adapted Linears keep their input (for the adapter's A) and their
    rank-r A output. Per block, "attention" targets: x, q|k|v (3), SDPA out, x1, q, cross SDPA out, x2,
    the LayerNorm input... = (10 + r) B·N·D (GELU keeps its input, r) + K, V; "+mlp" adds fc1's input
    and fc2's (the GELU output): (11 + 2r). Outside the blocks: the final LayerNorm's input and the
    caption MLP's GELU input: B·N·D + B·L·D."""
    D, r = cfg.hidden_size, cfg.mlp_ratio
    BND, BLD = B * N * D * b, B * L * D * b
    if lora:
        per = (11 + 2 * r) if targets == "attention+mlp" else (10 + r)
        low_rank = B * (4 * N + L) * rank * b + (2 * B * N * rank * b if targets == "attention+mlp" else 0)
        block = int(per * BND + 2 * BLD + low_rank)
        outside = BND + BLD
        name = f"{cfg.depth} blocks x (({per:g})·B·N·D + 2·B·L·D + rank-{rank} terms)"
    else:
        block = int((15 + 2 * r) * BND + 2 * BLD)
        outside = 3 * BND + 3 * BLD
        name = f"{cfg.depth} blocks x ((15 + 2r)·B·N·D + 2·B·L·D)"
    if checkpointing:
        return {"block inputs depth·B·N·D": cfg.depth * BND, "one block recomputed": block, "outside the blocks": outside}
    return {name: cfg.depth * block, "outside the blocks": outside}


def training_memory(stack, height: int, width: int, *, train: str = "lora", rank: int = 64,
                    targets: str = "attention", checkpointing: bool = False, batch: int = 1, dtype: str = "bf16",
                    optimizer: str = "fp32", text: str = "cached") -> dict:
    """The terms (bytes) of one training step's GPU memory and their total, for a PixArt `stack`."""
    if stack.family != "pixart":
        raise InputError(f"the training-memory model covers PixArt (its block's saved tensors are validated); "
                         f"{stack.name} is a {stack.family} model")
    if train not in ("lora", "full") or targets not in LORA_TARGETS or optimizer not in OPTIMIZER_BYTES:
        raise InputError(f"--train lora|full, --lora-targets {'|'.join(LORA_TARGETS)}, optimizer fp32|bf16")
    h, w = M.check_size(stack, height, width)
    cfg, b = stack.denoiser, P.DTYPE_BYTES[dtype]
    N, L = (h // cfg.patch_size) * (w // cfg.patch_size), stack.caption_tokens
    model = M.module_on_meta("pixart", cfg)
    params = sum(p.numel() for p in model.parameters())
    terms = {f"weights ({dtype})": M.weights_of("pixart", cfg) * b}
    if train == "lora":
        n, (state, grad) = lora_parameters(model, rank, LORA_TARGETS[targets]), STATE_BYTES["fp32"]
        terms[f"LoRA r={rank} ({targets}): {n / 1e6:.1f} M x {state} B (fp32 + AdamW)"] = n * state
    else:
        n, (state, grad) = params, STATE_BYTES[optimizer]
        what = "fp32 master + AdamW" if optimizer == "fp32" else "bf16 AdamW moments"
        terms[f"full: {params / 1e9:.2f} B x {state} B ({what})"] = n * state
    act = saved_activations(cfg, N, batch, L, b, checkpointing, lora=train == "lora", targets=targets, rank=rank)
    saved, grads = sum(act.values()), n * grad
    terms[f"backward: max(saved activations{' (ckpt)' if checkpointing else ''}, {grad}-B gradients)"] = max(saved, grads)
    terms["backward transient 2r·B·N·D"] = int(2 * cfg.mlp_ratio * batch * N * cfg.hidden_size * b)
    if text == "resident":
        t5 = stack.text[0]
        terms["T5-XXL resident (bf16)"] = M.weights_of("t5", t5.config) * 2 + P.t5_activations(t5.config, L, 1, 2)["peak"]
    return {"terms": terms, "total": sum(terms.values()), "tokens": N, "activation terms": act, "saved": saved,
            "gradients": grads}


def report(stack, height: int, width: int, *, train: str, rank: int = 64, targets: str = "attention",
           checkpointing: bool = False, batch: int = 1, dtype: str = "bf16", optimizer: str = "fp32",
           gpu_memory: float | None = None) -> str:
    """The chosen setting's terms, then every combination of LoRA / full x checkpointing x T5 cached / resident."""
    one = training_memory(stack, height, width, train=train, rank=rank, targets=targets, checkpointing=checkpointing,
                          batch=batch, dtype=dtype, optimizer=optimizer)
    lines = [f"{stack.name}: one training step at {height}x{width}, batch {batch}, {one['tokens']} tokens, "
             f"{dtype} weights, {train}{' + gradient checkpointing' if checkpointing else ''}",
             f"{'term':<62} {'GiB':>7}"]
    lines += [f"{k:<62} {P.gib(v):7.2f}" for k, v in one["terms"].items()]
    lines.append(f"{'total (T5 embeddings cached; CUDA context not counted)':<62} {P.gib(one['total']):7.2f}")
    lines += ["", f"{'every setting (GiB)':<56} {'T5 cached':>10} {'T5 resident':>12}"]
    rows = [("lora", False, "fp32"), ("lora", True, "fp32"), ("full", False, "fp32"), ("full", True, "fp32"),
            ("full", False, "bf16"), ("full", True, "bf16")]
    for tr, ck, opt in rows:
        label = (f"LoRA r={rank} ({targets})" if tr == "lora" else f"full fine-tune, {opt} optimizer state") + \
                (", checkpointing" if ck else "")
        cells = [training_memory(stack, height, width, train=tr, rank=rank, targets=targets, checkpointing=ck,
                                 batch=batch, dtype=dtype, optimizer=opt, text=t)["total"] for t in ("cached", "resident")]
        fits = "" if gpu_memory is None else "   " + " / ".join(
            f"{'fits' if c <= gpu_memory * P.GiB else 'over'} {gpu_memory:g}" for c in cells)
        lines.append(f"{label:<56} {P.gib(cells[0]):10.2f} {P.gib(cells[1]):12.2f}{fits}")
    return "\n".join(lines)
