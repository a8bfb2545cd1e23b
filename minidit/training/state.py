"""Checkpoints to resume from, and exported weights in the official layout of the model trained.

A training checkpoint (`save_checkpoint`, a `.pt` read back with `torch.load(weights_only=True)`)
holds everything the next step depends on:

    model      the trained weights (names of the official checkpoint; DDP/FSDP unwrapped, full tensors)
    ema        the EMA shadow weights and its update count
    optimizer  AdamW's moments and step counts          scheduler  the LambdaLR position
    step       optimizer steps done                     rng        torch (CPU, CUDA), Python, NumPy states
    config     the run's settings (`TrainConfig`), checked on resume: batch and seed must agree

The data order and every per-sample draw are functions of (seed, step), so these are enough for a
resumed run to continue the uninterrupted one exactly (tests/test_train_loop.py), also when it was
saved by N processes and resumed by one with N times the batch (tests/test_train_distributed.py).

An export (`export_weights`) is what a release looks like: the EMA weights only, no optimizer state
(AdamW's two moments would triple the file), in the original layout of the family, so the loaders read
it like the official file:

    DiT      a plain state dict + `pos_embed` (1, T, D), `.pt`    (DiT-XL-2-256x256.pt)  -> `weights_loader.load_dit`
    PixArt   {"state_dict": ... + `pos_embed`}, `.pth`            (PixArt-Sigma-XL-2-512-MS.pth) -> `load_pixart`

or (`export_diffusers`) a diffusers `transformer/` folder (config.json + diffusion_pytorch_model.safetensors),
through the loaders' key maps run backwards (`weights_loader/export.py`), for diffusers' pipelines.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from minidit.dit import DiT
from minidit.embed import get_2d_sincos_pos_embed
from minidit.pixart import PixArt
from weights_loader.export import dit_to_diffusers, pixart_to_diffusers, write_diffusers_folder


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}
    np_state = np.random.get_state()
    state["numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    state["numpy_pos"] = int(np_state[2])
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, *, model_state: dict, ema_state: dict, optimizer_state: dict, scheduler, step: int,
                    config: dict) -> Path:
    """Write a resumable checkpoint atomically (a temporary file renamed: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"model": model_state, "ema": ema_state, "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(), "step": step, "rng": rng_state(), "config": config}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


RESUME_MUST_MATCH = ("global_batch", "seed", "objective", "steps", "p_uncond")


def read_checkpoint(path, config: dict) -> dict:
    """The checkpoint's contents; raises ValueError when the run's settings that fix the data order and
    the draws (global batch = batch x accumulation x processes, seed, objective, ...) differ."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    saved = blob["config"]
    diff = {k: (saved.get(k), config.get(k)) for k in RESUME_MUST_MATCH if saved.get(k) != config.get(k)}
    if diff:
        raise ValueError(f"cannot resume {path}: these settings differ from the checkpoint's (saved, now): {diff}. "
                         "The global batch is batch_size x grad_accum x processes")
    return blob


def official_state_dict(model, weights: dict) -> tuple[dict, str]:
    """(the state dict in the family's original layout, the file suffix) for `weights` of `model`."""
    sd = {k: v.detach().float().cpu().contiguous() for k, v in weights.items()}
    c = model.config
    if isinstance(model, DiT):
        side = c.input_size // c.patch_size
        sd["pos_embed"] = get_2d_sincos_pos_embed(c.hidden_size, side)[None].float()
        return sd, ".pt"
    if isinstance(model, PixArt):
        sd["pos_embed"] = get_2d_sincos_pos_embed(c.hidden_size, c.base_size, c.base_size,
                                                  c.pe_interpolation)[None].float()
        return {"state_dict": sd}, ".pth"
    raise ValueError(f"no official layout known for {type(model).__name__}: export DiT or PixArt")


def export_weights(path, model, weights: dict) -> Path:
    """Write `weights` (the EMA shadow, usually) of `model` in its family's original layout, no optimizer state.
    A `path` without a suffix gets the family's (.pt for DiT, .pth for PixArt)."""
    blob, suffix = official_state_dict(model, weights)
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(suffix)
    if path.suffix != suffix:
        raise ValueError(f"a {type(model).__name__} export is a {suffix} file (the official layout), got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


def export_diffusers(folder, model, weights: dict) -> Path:
    """Write `weights` of `model` as a diffusers DiTTransformer2DModel / PixArtTransformer2DModel folder."""
    sd = {k: v.detach().float().cpu() for k, v in weights.items()}
    if isinstance(model, DiT):
        return write_diffusers_folder(folder, *dit_to_diffusers(sd, model.config))
    if isinstance(model, PixArt):
        return write_diffusers_folder(folder, *pixart_to_diffusers(sd, model.config))
    raise ValueError(f"no diffusers layout known for {type(model).__name__}: export DiT or PixArt")
