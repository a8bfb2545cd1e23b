"""Training data, and how each family's network is called on a batch of it.

A data set here answers three questions for the loop:
    buckets()                      one bucket per item (its training (height, width)): the batch sampler groups by it
    load(indices, bucket)          (x0 (B, C, H, W) the clean sample in [-1, 1] or latents, cond) for one micro-batch
    model_fn(model, core, cond, drop)   the `model_fn(x_t, timestep)` the objective calls (`model` may be the
                                   DDP wrapper, `core` the network inside); `drop` (B,) bool: whose label /
                                   caption becomes the null one (classifier-free guidance)

  DigitsData          scikit-learn's 1 797 digits (16 x 16, one bucket) for a class-conditional DiT
  ImageCaptionFolder  a folder of images, each with a same-named .txt caption, in PixArt's aspect-ratio
                      buckets, captions through a `TextEmbeddingCache` (T5 once per caption), optionally
                      through a VAE (`vae.encode_latents`; without one, the model trains on pixels)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minidit.errors import InputError
from minidit.pipelines.resolution import resize_and_crop
from minidit.pipelines.toy import load_digits_dataset
from minidit.vae import encode_latents

from .buckets import assign_buckets

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class DigitsData:
    """Class labels: the model is a DiT, called `model(x_t, t, y, force_drop_ids=drop)`."""

    def __init__(self):
        self.x, self.y = load_digits_dataset()                          # (1797, 1, 16, 16), (1797,)

    def __len__(self) -> int:
        return len(self.x)

    def buckets(self) -> list:
        return [tuple(self.x.shape[-2:])] * len(self.x)

    def load(self, indices, bucket):
        ix = torch.as_tensor(indices)
        return self.x[ix], self.y[ix]

    @staticmethod
    def model_fn(model, core, labels, drop):
        return lambda x_t, t: model(x_t, t, labels.to(x_t.device), force_drop_ids=drop.long().to(x_t.device))


class ImageCaptionFolder:
    """`root/*.png|jpg|...` with `root/<same name>.txt` captions, bucketed at `side` (256/512/1024/2048
    pixels: PixArt's training tables). The model is a PixArt, called with the cached T5 states."""

    def __init__(self, root, side: int, text_cache, *, vae=None, vae_downsample: int = 8):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"--data {root}: not a folder (expected images with same-named .txt captions)")
        self.images = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise InputError(f"--data {root}: no {'/'.join(IMAGE_SUFFIXES)} images in it")
        missing = [p.name for p in self.images if not p.with_suffix(".txt").exists()]
        if missing:
            raise InputError(f"{len(missing)} images have no caption file (same name, .txt): {missing[:5]}")
        self.captions = [p.with_suffix(".txt").read_text(encoding="utf-8").strip() for p in self.images]
        self.side, self.cache, self.vae, self.f = side, text_cache, vae, vae_downsample
        sizes = []
        for p in self.images:
            with Image.open(p) as im:                                    # reads the header only
                sizes.append((im.height, im.width))
        self._buckets = assign_buckets(sizes, side)

    def __len__(self) -> int:
        return len(self.images)

    def buckets(self) -> list:
        return list(self._buckets)

    def precompute_text(self) -> int:
        """Encode every caption once (then the text encoder can be freed); returns how many were new."""
        return self.cache.precompute(self.captions)

    def load(self, indices, bucket):
        h, w = bucket
        pixels = []
        for i in indices:
            with Image.open(self.images[i]) as im:
                a = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            pixels.append(resize_and_crop(a.permute(2, 0, 1)[None], h, w)[0])   # (3, h, w) in [0, 1]
        x = torch.stack(pixels) * 2 - 1                                         # (B, 3, h, w) in [-1, 1]
        if self.vae is not None:
            with torch.no_grad():
                x = encode_latents(self.vae, x.to(next(self.vae.parameters()).dtype), sample=True).float()
        states, mask = self.cache.get([self.captions[i] for i in indices])
        hw = torch.tensor([[h, w]] * len(indices), dtype=torch.float32)
        return x, {"states": states, "mask": mask, "img_hw": hw, "aspect_ratio": hw[:, :1] / hw[:, 1:]}

    @staticmethod
    def model_fn(model, core, cond, drop):
        """PixArt: the dropped captions become the stored null caption (`y_embedder.token_drop`), so the
        dropout is the one drawn per sample (the model's own random dropout is switched off: `prepare_pixart`)."""
        def fn(x_t, t):
            dev = x_t.device
            y = core.y_embedder.token_drop(cond["states"].to(dev, x_t.dtype), drop.long().to(dev))
            micro = ({"img_hw": cond["img_hw"].to(dev), "aspect_ratio": cond["aspect_ratio"].to(dev)}
                     if core.config.micro_condition else {})
            return model(x_t, t, y, cond["mask"].to(dev), **micro)
        return fn


def prepare_pixart(model):
    """Training a PixArt with per-sample caption dropout: the model's own random `token_drop` is off."""
    model.y_embedder.uncond_prob = 0.0
    return model
