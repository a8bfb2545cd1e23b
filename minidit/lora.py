"""LoRA by hand: low-rank adapters on chosen Linear layers, merge / unmerge, adapters-only files.

Paper: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv 2106.09685.
Official code: github.com/microsoft/LoRA (`loralib`); the layout diffusers and PEFT save is read and
written by `weights_loader/lora.py`.

A frozen layer y = W x + b (W: D_out x D_in) is fine-tuned through a low-rank update (eq. 3):

    y = W x + b + (alpha / r) B A dropout(x)          A: r x D_in,  B: D_out x r,  r << D_in, D_out

Only A and B train. B starts at zero, so the adapted model starts as the base model exactly; A
starts random (the paper: Gaussian; loralib and PEFT: `nn.Linear`'s Kaiming-uniform, used here), so
B's first gradient (alpha / r) (A x) dL/dy is not zero. alpha / r keeps the update's size about the
same when r changes (the paper tunes alpha once and sweeps r). Merging folds the update into W,

    W' = W + (alpha / r) B A                          (exact: W' x = W x + (alpha / r) B A x)

so the merged model has no extra cost at inference; unmerging subtracts it again (one float
rounding of W + dW, as in PEFT: the stored W is not kept twice).

Parameter count. One adapted D_in -> D_out layer trains r (D_in + D_out) numbers instead of
D_in D_out. PixArt-XL/2 (D = 1152, 28 blocks), rank 64 on every attention projection (self: q, k,
v, out; cross: q, k, v, out, all 1152 -> 1152) and both MLP layers (1152 -> 4608 -> 1152):
    attention  8 x 64 x (1152 + 1152) = 1 179 648 per block
    MLP        2 x 64 x (1152 + 4608) =   737 280 per block
    28 blocks: 53 673 984 parameters (8.8 % of the model's 611 M): 107 MB in bf16, 215 MB in fp32;
    attention only: 33 030 144 (66 MB in bf16). `tests/test_lora.py` counts them on the meta device.

Fused layers. minidit keeps the official checkpoints' fused projections (PixArt's `attn.qkv` is
q | k | v stacked along D_out, `cross_attn.kv_linear` is k | v), which diffusers stores as separate
layers (`to_q`, `to_k`, `to_v`). A LoRA on the fused layer (one A for all three) is a valid LoRA,
but adapters trained on diffusers' separate layers have one A *per part*; `split=` cuts a fused
layer into a `SplitLinear` of its parts so that each part carries its own adapter (or none).

Glossary (paper symbol | code name | key in `lora_state_dict`):
  W, b            | LoRALinear.base          | <layer>.base.weight / .bias (not in the adapter file)
  A (r x D_in)    | LoRALinear.lora_A        | <layer>.lora_A
  B (D_out x r)   | LoRALinear.lora_B        | <layer>.lora_B
  r, alpha        | rank, alpha              | file metadata "lora" (json: {layer: [rank, alpha]})
  alpha / r       | LoRALinear.scale         |

Shape legend: N any leading dims (batch, tokens), D_in / D_out the layer's features, r the rank.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from minidit.errors import InputError

FORMAT = "minidit-lora"            # the metadata "format" of the files `save_lora` writes


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) B A dropout(x), with the base Linear frozen; `merge()` folds the update
    into base.weight, `unmerge()` takes it out again."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise InputError(f"LoRALinear adapts an nn.Linear, not a {type(base).__name__}")
        if not (isinstance(rank, int) and 0 < rank) or not alpha > 0 or not 0.0 <= dropout < 1.0:
            raise InputError(f"LoRA needs an integer rank > 0, alpha > 0 and 0 <= dropout < 1, got rank={rank!r}, "
                             f"alpha={alpha!r}, dropout={dropout!r}")
        self.base = base.requires_grad_(False)
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=w.dtype, device=w.device))   # (r, D_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))  # (D_out, r)
        if w.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))    # nn.Linear's init, as loralib and PEFT
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (code that reads a Linear's weight, for its dtype say, keeps working)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A: the update of W."""
        return self.scale * (self.lora_B @ self.lora_A)                                    # (D_out, D_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)                                                                   # (N, D_out)
        if self.merged:                    # the update is inside base.weight already
            return y
        h = self.dropout(x) @ self.lora_A.T                                                # (N, r)
        return y + self.scale * (h @ self.lora_B.T)                                        # (N, D_out)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A (the forward then skips the low-rank path: same output, no extra cost)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: the base weight again (up to one float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


class SplitLinear(nn.Module):
    """A fused Linear (rows = `len(parts)` equal layers stacked, e.g. q | k | v) cut into its parts,
    each a Linear or a LoRALinear; the output is the parts' outputs concatenated, as the fused layer's."""

    def __init__(self, fused: nn.Linear, n_parts: int):
        super().__init__()
        if fused.out_features % n_parts:
            raise InputError(f"a layer with {fused.out_features} outputs does not split into {n_parts} equal parts")
        rows = fused.out_features // n_parts
        self.parts = nn.ModuleList()
        for i in range(n_parts):
            part = nn.Linear(fused.in_features, rows, bias=fused.bias is not None, device="meta")
            part.weight = nn.Parameter(fused.weight[i * rows:(i + 1) * rows].clone(), requires_grad=False)
            if fused.bias is not None:
                part.bias = nn.Parameter(fused.bias[i * rows:(i + 1) * rows].clone(), requires_grad=False)
            self.parts.append(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.parts], dim=-1)                        # (N, D_out)

    @property
    def weight(self) -> torch.Tensor:
        """The fused base weight, computed (as LoRALinear.weight: for code that reads its dtype)."""
        return torch.cat([part.weight for part in self.parts])

    def fused(self) -> nn.Linear:
        """The one Linear again (merged adapters included)."""
        bases = [p.base if isinstance(p, LoRALinear) else p for p in self.parts]
        out = nn.Linear(bases[0].in_features, sum(b.out_features for b in bases), bias=bases[0].bias is not None,
                        device="meta")
        out.weight = nn.Parameter(torch.cat([b.weight for b in bases]).detach())
        if bases[0].bias is not None:
            out.bias = nn.Parameter(torch.cat([b.bias for b in bases]).detach())
        return out


def _matches(name: str, target) -> bool:
    """A str target is a regular expression matched against the whole name; a list holds names or
    name endings ("attn.qkv" matches "blocks.3.attn.qkv"), as PEFT's `target_modules`."""
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def add_lora(model: nn.Module, target: str | Iterable[str], rank: int, alpha: float | None = None,
             dropout: float = 0.0, *, split: dict[str, int] | None = None) -> list[str]:
    """Wrap every nn.Linear of `model` whose name matches `target` in a LoRALinear; only the adapters
    (of this call and earlier ones) stay trainable.

    target: a regular expression (whole name: r"blocks\\.\\d+\\.attn\\.(qkv|proj)") or a list of names
    or name endings (["attn.qkv", "mlp.fc1"]). alpha defaults to rank (scale 1). split: {name ending:
    parts} cuts matching fused layers into a SplitLinear first (e.g. {"attn.qkv": 3}); its parts are
    named "<layer>.parts.<i>" and match `target` by their own name or by the fused layer's.
    Returns the names of the layers adapted by this call (an error if there are none)."""
    alpha = float(rank if alpha is None else alpha)
    modules = list(model.named_modules())
    inside = {f"{n}.base" for n, m in modules if isinstance(m, LoRALinear)}       # already wrapped
    inside |= {f"{n}.parts.{i}" for n, m in modules if isinstance(m, SplitLinear) for i in range(len(m.parts))}

    def part_matches(name, i):
        return _matches(f"{name}.parts.{i}", target) or _matches(name, target)

    adapted = []
    for name, module in modules:
        if name in inside or isinstance(module, LoRALinear) or not isinstance(module, (nn.Linear, SplitLinear)):
            continue
        n_parts = next((n for pattern, n in (split or {}).items() if _matches(name, [pattern])), None)
        if isinstance(module, nn.Linear) and n_parts:
            if not any(part_matches(name, i) for i in range(n_parts)):
                continue
            module = SplitLinear(module, n_parts)
            _set_module(model, name, module)
        if isinstance(module, SplitLinear):
            for i, part in enumerate(module.parts):
                if not isinstance(part, LoRALinear) and part_matches(name, i):
                    module.parts[i] = LoRALinear(part, rank, alpha, dropout)
                    adapted.append(f"{name}.parts.{i}")
        elif _matches(name, target):
            _set_module(model, name, LoRALinear(module, rank, alpha, dropout))
            adapted.append(name)
    if not adapted:
        linears = [n for n, m in modules if isinstance(m, nn.Linear) and n not in inside]
        raise InputError(f"target {target!r} matches no nn.Linear of the model without an adapter; its Linear "
                         f"layers are e.g. {linears[:8]}")
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith((".lora_A", ".lora_B")))
    return adapted


def _layer_shape(model: nn.Module, name: str, split: dict[str, int]) -> tuple[int, int] | None:
    """(D_in, D_out) of the Linear `name` (or of a part "<fused>.parts.<i>") that add_lora would adapt;
    None if there is no such layer without an adapter."""
    fused, _, part = name.partition(".parts.")
    try:
        module = model.get_submodule(fused)
    except AttributeError:
        return None
    if not part:
        return (module.in_features, module.out_features) if type(module) is nn.Linear else None
    n = next((n for pattern, n in split.items() if _matches(fused, [pattern])), None)
    if isinstance(module, SplitLinear) and int(part) < len(module.parts):
        module = module.parts[int(part)]
        return (module.in_features, module.out_features) if type(module) is nn.Linear else None
    if type(module) is nn.Linear and n and int(part) < n:
        return module.in_features, module.out_features // n
    return None


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{name: LoRALinear} of the model, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight (the forward is then the base model's cost)."""
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every merged adapter out of its base weight again."""
    for layer in lora_layers(model).values():
        layer.unmerge()


def remove_lora(model: nn.Module, *, merge: bool = True) -> nn.Module:
    """Put plain nn.Linear layers back (adapters merged in first, unless merge=False drops them); fused
    layers that were split are fused again. The model then has its original module names and keys (its
    parameters stay frozen, as add_lora left them)."""
    for name, layer in list(lora_layers(model).items()):
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        _set_module(model, name, layer.base)
    for name, module in list(model.named_modules()):
        if isinstance(module, SplitLinear):
            _set_module(model, name, module.fused())
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters only: {"<layer>.lora_A": (r, D_in), "<layer>.lora_B": (D_out, r)}."""
    out = {}
    for name, layer in lora_layers(model).items():
        out[f"{name}.lora_A"], out[f"{name}.lora_B"] = layer.lora_A.detach(), layer.lora_B.detach()
    return out


def lora_config(model: nn.Module) -> dict[str, list]:
    """{layer: [rank, alpha]} of every adapter (what a file needs besides the tensors)."""
    return {name: [layer.rank, layer.alpha] for name, layer in lora_layers(model).items()}


def save_lora(model: nn.Module, path) -> None:
    """Write the adapters (and their rank and alpha) to a safetensors file; the base model is not in it."""
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in lora_state_dict(model).items()}
    if not sd:
        raise InputError("the model has no LoRA adapters to save: call add_lora first")
    fused = {name: len(m.parts) for name, m in model.named_modules() if isinstance(m, SplitLinear)}
    save_file(sd, str(path), metadata={"format": FORMAT, "lora": json.dumps(lora_config(model)),
                                       "split": json.dumps(fused)})


def load_lora(model: nn.Module, path, *, dropout: float = 0.0, split: dict[str, int] | None = None) -> list[str]:
    """Add the adapters of a `save_lora` file to `model` (which must not have adapters on those layers).
    Strict: every layer of the file must exist in the model, every tensor must fit. The fused layers
    that were split when the file was saved are split again (`split=` overrides). Returns the layers."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a minidit LoRA file (metadata format {meta.get('format')!r}); for a "
                         "diffusers / PEFT file use weights_loader.lora.load_lora_diffusers")
    split = split if split is not None else json.loads(meta.get("split", "{}"))
    return add_adapters(model, sd, {k: tuple(v) for k, v in json.loads(meta["lora"]).items()}, dropout=dropout,
                        split=split, what=str(Path(path).name))


def add_adapters(model: nn.Module, sd: dict[str, torch.Tensor], config: dict[str, tuple[int, float]], *,
                 dropout: float = 0.0, split: dict[str, int] | None = None, what: str = "the adapters") -> list[str]:
    """Add adapters with given tensors: sd {"<layer>.lora_A" / ".lora_B": tensor}, config {layer: (rank,
    alpha)}. Every key must be used and fit its layer; errors name the keys."""
    layers = set(config)
    stray = sorted(k for k in sd if not k.endswith((".lora_A", ".lora_B")) or k.rsplit(".", 1)[0] not in layers)
    incomplete = sorted(n for n in layers if f"{n}.lora_A" not in sd or f"{n}.lora_B" not in sd)
    if stray or incomplete:
        raise InputError(f"{what}: keys without a layer in the config {stray[:8]}, layers without both lora_A and "
                         f"lora_B {incomplete[:8]}")
    shapes = {name: _layer_shape(model, name, split or {}) for name in sorted(layers)}
    unknown = [name for name, shape in shapes.items() if shape is None]
    if unknown:
        raise InputError(f"{what}: {len(unknown)} adapted layers are not nn.Linear layers of the model without an "
                         f"adapter (a fused layer's parts need split=): {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    for name, (d_in, d_out) in shapes.items():                 # every check before the model is changed
        rank = config[name][0]
        A, B = sd[f"{name}.lora_A"], sd[f"{name}.lora_B"]
        if A.ndim != 2 or B.ndim != 2 or A.shape[0] != rank or B.shape[1] != rank:
            raise InputError(f"{what}: {name}.lora_A {tuple(A.shape)} and {name}.lora_B {tuple(B.shape)} do not "
                             f"have rank {rank} (lora_A is (rank, D_in), lora_B (D_out, rank))")
        if A.shape[1] != d_in or B.shape[0] != d_out:
            raise InputError(f"{what}: {name} is a {d_in} -> {d_out} layer, but {name}.lora_A is {tuple(A.shape)} "
                             f"and {name}.lora_B {tuple(B.shape)}")
    for name in shapes:
        rank, alpha = config[name]
        add_lora(model, [name], rank, alpha, dropout, split=split)
        layer = model.get_submodule(name)
        with torch.no_grad():
            layer.lora_A.copy_(sd[f"{name}.lora_A"])
            layer.lora_B.copy_(sd[f"{name}.lora_B"])
    return sorted(layers)
