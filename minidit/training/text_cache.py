"""Text-embedding caching: run the text encoder once per caption, store the states on disk, reuse them.

T5-XXL (PixArt, SD3) has 4.76 B parameters: 9.5 GB in bf16, more than PixArt's transformer and its
optimizer state together, and its forward costs ~2.8 TFLOP per 300-token caption — run every step, it
is the training's bottleneck (users report exactly that). The caption set is fixed, so its encodings
are too: `TextEmbeddingCache.precompute(captions)` encodes each distinct caption once, writes one
safetensors file per caption (states (L, C_cap) and mask (L,)), and the encoder can then be freed
before the transformer is trained. `get(captions)` reads the files back, stacked.

A file's name is the SHA-256 of (the encoder's name, the caption), so two encoders (or two prompt
lengths) never share entries; a re-run on the same folder encodes nothing.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class TextEmbeddingCache:
    """encode(list of captions) -> (states (B, L, C_cap), mask (B, L)); `name` identifies the encoder."""

    def __init__(self, folder, encode, name: str, batch_size: int = 8):
        self.folder, self.encode, self.name, self.batch_size = Path(folder), encode, name, batch_size
        self.folder.mkdir(parents=True, exist_ok=True)
        self.encoded = 0                                   # captions this instance sent to the encoder

    def path(self, caption: str) -> Path:
        digest = hashlib.sha256(f"{self.name}\0{caption}".encode()).hexdigest()[:40]
        return self.folder / f"{digest}.safetensors"

    def missing(self, captions) -> list[str]:
        return sorted({c for c in captions if not self.path(c).exists()})

    @torch.no_grad()
    def precompute(self, captions) -> int:
        """Encode every caption that has no file yet (each distinct caption once); returns how many."""
        todo = self.missing(captions)
        for k in range(0, len(todo), self.batch_size):
            chunk = todo[k:k + self.batch_size]
            states, mask = self.encode(chunk)
            for c, s, m in zip(chunk, states, mask):
                save_file({"states": s.detach().cpu().contiguous(), "mask": m.detach().cpu().contiguous()},
                          str(self.path(c)), metadata={"encoder": self.name, "caption": c})
            self.encoded += len(chunk)
        return len(todo)

    def get(self, captions) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, L, C_cap), mask (B, L)) of `captions`, encoding the ones not cached yet."""
        self.precompute(captions)
        loaded = [load_file(str(self.path(c))) for c in captions]
        return torch.stack([d["states"] for d in loaded]), torch.stack([d["mask"] for d in loaded])
