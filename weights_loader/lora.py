"""LoRA adapters in the diffusers / PEFT file layout <-> minidit's `LoRALinear` layers (PixArt, SD3, Hunyuan-DiT).

The layouts (what diffusers 0.42 and PEFT 0.21 write and read):
  * diffusers `pytorch_lora_weights.safetensors` (`save_lora_weights`; `load_lora_weights` /
    `load_lora_adapter` read it): keys `transformer.<diffusers layer>.lora_A.weight` (r, D_in) and
    `.lora_B.weight` (D_out, r), e.g. `transformer.transformer_blocks.0.attn1.to_q.lora_A.weight`.
    The file's safetensors metadata `lora_adapter_metadata` holds the PEFT `LoraConfig` as JSON,
    each field prefixed `transformer.`: `r`, `lora_alpha`, `rank_pattern`, `alpha_pattern`,
    `target_modules`. Without it diffusers takes r from each lora_B and alpha = r (scale 1).
    A model-level file (`save_lora_adapter`) has the same keys and metadata without `transformer.`.
  * PEFT's folder (`PeftModel.save_pretrained`; PixArt-Σ's LoRA guide loads it with
    `PeftModel.from_pretrained`):
    `adapter_model.safetensors` with keys `base_model.model.<layer>.lora_A.weight`, and
    `adapter_config.json` (the same LoraConfig fields).
PEFT's `rank_pattern` / `alpha_pattern` keys match a layer name or its ending (regular expressions,
`get_pattern_key`: `(.*\\.)?(<key>)$`); the first matching key wins.

Names. minidit keeps the official fused layers; the diffusers <-> minidit layer map is read off
each family's checkpoint rename itself (`pixart_from_diffusers`, `mmdit_from_diffusers`,
`hunyuan_from_diffusers`; `layer_map`: the rename is run on stand-in tensors that carry their own
key's index, so a fused minidit weight shows which diffusers layers it is made of, in row order, and
a row-swapped one shows the swap). PixArt: `transformer_blocks.i.attn1.to_q | to_k | to_v` ->
`blocks.i.attn.qkv`, `attn2.to_k | to_v` -> `cross_attn.kv_linear`; SD3: `attn.to_q | to_k |
to_v` -> `joint_blocks.i.x_block.attn.qkv`, `attn.add_q_proj | ...` -> `context_block.attn.qkv`;
Hunyuan-DiT: `attn1.to_q | to_k | to_v` -> `attn1.Wqkv`, `attn2.to_k | to_v` -> `attn2.kv_proj`; the
other Linears 1:1. `norm_out.linear` (SD3, Hunyuan-DiT; SD3's last `norm1_context.linear`) stores
(scale, shift) where the official layer has (shift, scale): a LoRA's lora_B rows are swapped too.
Adapters on diffusers' separate q / k / v load into the parts of a `SplitLinear`
(`<layer>.parts.<i>`); a minidit adapter on a whole fused layer is written as one adapter per part
(lora_A repeated, lora_B cut by rows: the same update).

Refused with a clear error: kohya-style keys (`lora_unet_...`, `lora_down` / `lora_up`), DoRA
(`lora_magnitude_vector`), `lora_bias`, rsLoRA (`use_rslora`), layers that are not in the model,
a rank that differs between lora_A and lora_B or from the metadata, a D_in / D_out that does not fit.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from minidit.lora import LoRALinear, SplitLinear, add_adapters, lora_layers
from minidit.hunyuan import HunyuanDiT
from minidit.mmdit import MMDiT
from minidit.pixart import PixArt
from .errors import CheckpointError
from .hunyuan import hunyuan_from_diffusers
from .keymap import preview
from .mmdit import mmdit_from_diffusers, swap_scale_shift
from .pixart import pixart_from_diffusers

WEIGHT_NAME = "pytorch_lora_weights.safetensors"   # diffusers' file name (LORA_WEIGHT_NAME_SAFE)
PEFT_WEIGHT_NAME = "adapter_model.safetensors"      # PEFT's folder layout
METADATA_KEY = "lora_adapter_metadata"              # diffusers' safetensors metadata entry
PREFIX = "transformer."                             # the pipeline-level files' component prefix


class _TaggedKeys(dict):
    """A stand-in state dict for a rename function: the i-th key it takes is answered with the (2, 1)
    tensor [[i], [i + 0.5]], so the renamed dict shows where each source key went, in which row order
    (fused by `cat`), and whether its two halves were swapped (`swap_scale_shift`)."""

    def __init__(self, present):
        super().__init__()
        self.taken, self.present = [], present

    def __contains__(self, key):
        return self.present(key)

    def pop(self, key, *default):
        self.taken.append(key)
        i = float(len(self.taken) - 1)
        return torch.tensor([[i], [i + 0.5]])


# Each family's diffusers rename (weights_loader/<family>.py), its arguments, and the optional keys it
# asks about with `has` (only PixArt's α-1024 micro-conditions).
RENAMES = {
    PixArt: (pixart_from_diffusers, lambda m: (m.config.depth,),
             lambda m: lambda key: m.config.micro_condition and "resolution_embedder" in key),
    MMDiT: (mmdit_from_diffusers, lambda m: (m.config,), lambda m: lambda key: False),
    HunyuanDiT: (hunyuan_from_diffusers, lambda m: (m.config,), lambda m: lambda key: False),
}


def _trace(model) -> dict[str, list[tuple[str, bool]]]:
    """{minidit Linear: [(diffusers Linear, rows halves swapped?), ...] in row order}."""
    family = next((cls for cls in RENAMES if isinstance(model, cls)), None)
    if family is None:
        raise CheckpointError(f"diffusers LoRA names are mapped for {', '.join(c.__name__ for c in RENAMES)} "
                              f"models, not {type(model).__name__}")
    rename, args, present = RENAMES[family]
    tags = _TaggedKeys(present(model))
    out = {}
    for key, rows in rename(tags, *args(model)).items():
        name = key.removesuffix(".weight")
        if key.endswith(".weight") and _is_linear(model, name):
            pairs = rows.flatten().reshape(-1, 2).tolist()            # one (first, second) pair per source key
            out[name] = [(tags.taken[int(min(a, b))].removesuffix(".weight"), a > b) for a, b in pairs]
    return out


def layer_map(model) -> dict[str, list[str]]:
    """{minidit Linear: [the diffusers Linear(s) it is made of, in row order]} for this model."""
    return {name: [part for part, _ in parts] for name, parts in _trace(model).items()}


def swapped_layers(model) -> set[str]:
    """The minidit Linears whose output rows are diffusers' with the two halves swapped (adaLN (shift,
    scale) vs diffusers' (scale, shift)): a LoRA's B is swapped the same way."""
    return {name for name, parts in _trace(model).items() if any(swap for _, swap in parts)}


def _is_linear(model: nn.Module, name: str) -> bool:
    """A Linear layer, adapted or not (the patch embedding is a Conv2d: no LoRA on it here)."""
    try:
        return isinstance(model.get_submodule(name), (nn.Linear, LoRALinear, SplitLinear))
    except AttributeError:
        return False


def fused_parts(model: nn.Module) -> dict[str, int]:
    """{minidit layer: number of diffusers layers fused in it} for the fused ones (the `split=` of add_lora)."""
    return {name: len(parts) for name, parts in layer_map(model).items() if len(parts) > 1}


# ------------------------------------------------------------------------------------------------
# minidit -> diffusers
# ------------------------------------------------------------------------------------------------


def diffusers_lora_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, float]]]:
    """The model's adapters under diffusers' names (no prefix), and {diffusers layer: (rank, alpha)}."""
    names, swapped = layer_map(model), swapped_layers(model)
    sd, config = {}, {}
    for name, layer in lora_layers(model).items():
        fused, _, part = name.partition(".parts.")
        if fused not in names:
            raise CheckpointError(f"the adapter on {name!r} has no diffusers counterpart")
        parts = names[fused]
        if part:                                   # one part of a split fused layer
            targets = [(parts[int(part)], layer.lora_B)]
        else:                                      # a whole layer: one adapter per diffusers part
            targets = list(zip(parts, layer.lora_B.chunk(len(parts), dim=0)))
        for target, B in targets:
            B = swap_scale_shift(B) if fused in swapped else B
            sd[f"{target}.lora_A.weight"] = layer.lora_A.detach().clone()      # one copy per part
            sd[f"{target}.lora_B.weight"] = B.detach().clone()
            config[target] = (layer.rank, layer.alpha)
    if not sd:
        raise CheckpointError("the model has no LoRA adapters to save: call minidit.lora.add_lora first")
    return sd, config


def peft_config(config: dict[str, tuple[int, float]]) -> dict:
    """The LoraConfig fields of {layer: (rank, alpha)}: the most common r and alpha, the others as patterns."""
    r = Counter(rank for rank, _ in config.values()).most_common(1)[0][0]
    alpha = Counter(a for _, a in config.values()).most_common(1)[0][0]
    exact = {name: "^" + re.escape(name) + "$" for name in config}
    return {"r": r, "lora_alpha": alpha, "target_modules": sorted(config),
            "rank_pattern": {exact[n]: rank for n, (rank, _) in config.items() if rank != r},
            "alpha_pattern": {exact[n]: a for n, (_, a) in config.items() if a != alpha}}


def save_lora_diffusers(model: nn.Module, path, *, prefix: str = PREFIX) -> Path:
    """Write the adapters as diffusers' `pytorch_lora_weights.safetensors` (`path`: a folder or a file
    name). prefix "transformer." is the pipeline-level layout; "" the model-level one. Returns the file."""
    from safetensors.torch import save_file
    sd, config = diffusers_lora_state_dict(model)
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / WEIGHT_NAME
    meta = {prefix + k: v for k, v in peft_config(config).items()}
    save_file({prefix + k: v for k, v in sd.items()}, str(path),
              metadata={"format": "pt", METADATA_KEY: json.dumps(meta, indent=2, sort_keys=True)})
    return path


def save_lora_peft(model: nn.Module, folder) -> Path:
    """Write the adapters as PEFT's folder (`adapter_model.safetensors` + `adapter_config.json`), which
    `peft.PeftModel.from_pretrained(diffusers_transformer, folder)` loads. Returns the folder."""
    from safetensors.torch import save_file
    sd, config = diffusers_lora_state_dict(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model." + k: v for k, v in sd.items()}, str(folder / PEFT_WEIGHT_NAME),
              metadata={"format": "pt"})
    fields = {"peft_type": "LORA", "task_type": None, "lora_dropout": 0.0, "bias": "none", **peft_config(config)}
    (folder / "adapter_config.json").write_text(json.dumps(fields, indent=2, sort_keys=True))
    return folder


# ------------------------------------------------------------------------------------------------
# diffusers / PEFT -> minidit
# ------------------------------------------------------------------------------------------------


def read_lora_file(source) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    """(state dict, LoraConfig fields or None, description) of a diffusers LoRA file, a folder holding
    one (diffusers or PEFT layout) or a state dict; the component prefix removed."""
    from safetensors import SafetensorError, safe_open
    if isinstance(source, dict):
        sd, config, what = dict(source), None, "the LoRA state dict"
    else:
        path = Path(source)
        if path.is_dir():
            found = [path / n for n in (WEIGHT_NAME, PEFT_WEIGHT_NAME) if (path / n).is_file()]
            if not found:
                raise CheckpointError(f"{path} holds neither {WEIGHT_NAME} (diffusers) nor {PEFT_WEIGHT_NAME} (PEFT)")
            path = found[0]
        if not path.is_file():
            raise CheckpointError(f"no LoRA file at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except SafetensorError as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
        config = json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else None
        peft_json = path.with_name("adapter_config.json")
        if config is None and path.name == PEFT_WEIGHT_NAME and peft_json.is_file():
            config = json.loads(peft_json.read_text())
        what = f"the LoRA file {path}"
    for prefix in (PREFIX, "base_model.model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
            if config is not None and any(k.startswith(prefix) for k in config):
                config = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    return sd, config, what


def _pattern_value(patterns: dict, name: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first key matching the name or its ending."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _check_supported(sd: dict, config: dict | None, what: str) -> None:
    kohya = [k for k in sd if k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) or ".lora_down." in k]
    if kohya:
        raise CheckpointError(f"{what} is in the kohya / sd-scripts layout ({preview(kohya, 3)}), not diffusers / "
                              "PEFT's: convert it to `<layer>.lora_A.weight` / `.lora_B.weight` keys first")
    for flag, why in [("use_dora", "DoRA"), ("lora_bias", "lora_bias"), ("use_rslora", "rsLoRA (alpha / sqrt(r))")]:
        if config and config.get(flag):
            raise CheckpointError(f"{what} uses {why} ({flag}: true), which minidit's LoRALinear does not implement")
    other = sorted(k for k in sd if not k.endswith((".lora_A.weight", ".lora_B.weight")))
    if other:
        raise CheckpointError(f"{what} has {len(other)} keys that are not lora_A / lora_B weights (DoRA, biases, "
                              f"other adapter types?): {preview(other, 6)}")


def load_lora_diffusers(model: nn.Module, source, *, dropout: float = 0.0) -> list[str]:
    """Add the adapters of a diffusers / PEFT LoRA file (or folder, or state dict) to a minidit PixArt, MMDiT or HunyuanDiT.
    Strict: every key must map to a Linear of the model and fit it. Returns the minidit layers adapted."""
    sd, config, what = read_lora_file(source)
    if not sd:
        raise CheckpointError(f"{what} holds no tensors (a LoRA for another component? the keys are expected "
                              f"under '{PREFIX}' or without a prefix)")
    _check_supported(sd, config, what)
    names, swapped = layer_map(model), swapped_layers(model)
    where = {part: (name, i) for name, parts in names.items() for i, part in enumerate(parts)}
    layers = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
    unknown = [layer for layer in layers if layer not in where]
    if unknown:
        raise CheckpointError(f"{len(unknown)} layers of {what} are not Linear layers of this {type(model).__name__} model "
                              f"(diffusers names expected, e.g. transformer_blocks.0.attn1.to_q): {preview(unknown, 8)}")
    missing = [f"{layer}.lora_{ab}.weight" for layer in layers for ab in "AB" if f"{layer}.lora_{ab}.weight" not in sd]
    if missing:
        raise CheckpointError(f"{what} lacks {preview(missing, 6)} (every layer needs lora_A and lora_B)")
    ours, adapters = {}, {}
    for layer in layers:
        A, B = sd[f"{layer}.lora_A.weight"], sd[f"{layer}.lora_B.weight"]
        rank = B.shape[1] if B.ndim == 2 else -1
        if A.ndim != 2 or B.ndim != 2 or A.shape[0] != rank:
            raise CheckpointError(f"{what}: {layer}.lora_A.weight {tuple(A.shape)} and .lora_B.weight "
                                  f"{tuple(B.shape)} disagree on the rank (lora_A is (r, D_in), lora_B (D_out, r))")
        alpha = float(rank)                                      # diffusers' rule without metadata: scale 1
        if config is not None:
            want = _pattern_value(config.get("rank_pattern") or {}, layer, config.get("r", rank))
            if want != rank:
                raise CheckpointError(f"{what}: {layer} has rank {rank} (lora_B {tuple(B.shape)}), but the file's "
                                      f"LoRA config says r={want}")
            alpha = float(_pattern_value(config.get("alpha_pattern") or {}, layer, config.get("lora_alpha", rank)))
        name, i = where[layer]
        target = f"{name}.parts.{i}" if len(names[name]) > 1 else name
        B = swap_scale_shift(B) if name in swapped and B.shape[0] % 2 == 0 else B
        ours[target], adapters[f"{target}.lora_A"], adapters[f"{target}.lora_B"] = (rank, alpha), A, B
    try:
        return add_adapters(model, adapters, ours, dropout=dropout, split=fused_parts(model), what=what)
    except ValueError as e:                   # InputError naming minidit's layers: add their diffusers names
        named = [f"{t} = {where_from}" for t, where_from in _sources(ours, names) if t in str(e)]
        raise CheckpointError(f"{e} (minidit layer = diffusers layer: {', '.join(named[:6])})") from None


def _sources(targets, names):
    for target in targets:
        fused, _, part = target.partition(".parts.")
        yield target, names[fused][int(part) if part else 0]
