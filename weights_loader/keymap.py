"""Key manipulation: prefixes, block counts, and `KeyMap`, the strict renaming every family loader
writes its official / diffusers layouts with (every source key used exactly once, or dropped by name)."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

from .errors import CheckpointError

StateDict = dict[str, torch.Tensor]


def strip_prefix(sd: StateDict, prefixes: Iterable[str]) -> StateDict:
    """Remove the first of `prefixes` that starts *every* key, if any (e.g. `model.diffusion_model.`)."""
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def select_prefix(sd: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix` (e.g. `first_stage_model.` inside a full SD single file), prefix removed."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def count_blocks(sd: StateDict, prefix: str) -> int:
    """How many numbered blocks `prefix{i}.` the state dict has (e.g. `blocks.` -> depth)."""
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


class KeyMap:
    """Rename a state dict to minidit's keys, strictly: every source key is used exactly once, and
    `finish()` raises `CheckpointError` listing the ones that were not (nothing is skipped silently).

        keys = KeyMap(sd, "diffusers DiT")
        keys.move("proj_out_2.weight", "final_layer.linear.weight")                  # 1 -> 1
        keys.cat(["to_q.weight", "to_k.weight", "to_v.weight"], "attn.qkv.weight")  # N -> 1 (fuse q/k/v)
        keys.chunk("in_proj_weight", ["q.weight", "k.weight", "v.weight"])          # 1 -> N (split)
        keys.move("text_projection", "text_projection.weight", transpose)           # with a transform
        keys.drop("pos_embed.pos_embed")    # the allow-list: only named keys may go unused (say why)
        sd = keys.finish()                  # the renamed dict; raises if a source key was not used

    `family` names the checkpoint in the errors ("the diffusers DiT checkpoint is missing ...").
    `consume=True` (what the family loaders use): `sd` itself is emptied as its keys are used, so a
    source tensor is freed as soon as its renamed, fused or transposed version exists and the old and
    the new copy of the whole model are never alive together. By default `sd` is left as it is.
    """

    def __init__(self, sd: Mapping[str, torch.Tensor], family: str, *, consume: bool = False):
        self.family = family
        self._left = sd if consume and isinstance(sd, dict) else dict(sd)      # source keys not used yet
        self._out: StateDict = {}

    def has(self, src: str) -> bool:
        """Whether the source key `src` is there and not used yet."""
        return src in self._left

    def remaining(self) -> list[str]:
        """The source keys not used yet, sorted."""
        return sorted(self._left)

    def take(self, src: str) -> torch.Tensor:
        """Use the source tensor `src` (a missing key raises, naming it)."""
        try:
            return self._left.pop(src)
        except KeyError:
            raise CheckpointError(f"the {self.family} checkpoint is missing {src!r}") from None

    def put(self, dst: str, tensor: torch.Tensor) -> None:
        """Write minidit's key `dst` (at most once)."""
        if dst in self._out:
            raise CheckpointError(f"two keys of the {self.family} checkpoint map to {dst!r}")
        self._out[dst] = tensor

    def move(self, src: str, dst: str, transform=None) -> None:
        """1 -> 1: `dst` = `src`, or `transform(src)` (e.g. `transpose`)."""
        tensor = self.take(src)
        self.put(dst, tensor if transform is None else transform(tensor))

    def cat(self, srcs, dst: str, dim: int = 0) -> None:
        """N -> 1: `dst` = the sources concatenated along `dim` (e.g. separate q, k, v -> fused qkv)."""
        self.put(dst, torch.cat([self.take(s) for s in srcs], dim=dim))

    def chunk(self, src: str, dsts, dim: int = 0) -> None:
        """1 -> N: `src` split into len(dsts) equal parts along `dim` (e.g. fused qkv -> q, k, v)."""
        tensor, dsts = self.take(src), list(dsts)
        if tensor.shape[dim] % len(dsts):
            raise CheckpointError(f"{src!r} {tuple(tensor.shape)} of the {self.family} checkpoint does not split "
                                  f"into {len(dsts)} equal parts along dim {dim}")
        for dst, part in zip(dsts, tensor.chunk(len(dsts), dim=dim)):
            self.put(dst, part)

    def drop(self, *names: str) -> list[str]:
        """The allow-list of keys that may go unused: each name is one key, or, ending in ".", every
        key under it (e.g. "visual."). Absent names are fine. Returns the keys dropped."""
        gone = [k for k in self._left if any(k.startswith(n) if n.endswith(".") else k == n for n in names)]
        for k in gone:
            del self._left[k]
        return sorted(gone)

    def finish(self) -> StateDict:
        """The renamed state dict; raises `CheckpointError` listing every source key not used."""
        if self._left:
            raise CheckpointError(f"{len(self._left)} keys of the {self.family} checkpoint have no place in the "
                                  f"model: {preview(self._left)}")
        return self._out


def transpose(tensor: torch.Tensor) -> torch.Tensor:
    """A `KeyMap` transform: a (D, P) matrix used as `x @ W` -> the (P, D) weight of an `nn.Linear`."""
    return tensor.T.contiguous()


def preview(keys, n=12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
