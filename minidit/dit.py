"""DiT: Scalable Diffusion Models with Transformers (Peebles & Xie, arXiv:2212.09748).

Official code: https://github.com/facebookresearch/DiT (`models.py`). Attribute names are the keys
of the released `DiT-XL-2-256x256.pt` / `DiT-XL-2-512x512.pt`, so those files load strictly
(`weights_loader.load_dit`; their stored `pos_embed` is recomputed, see `DiT.forward`).

    x_t (B, C, H, W) --patchify+embed--> (B, T, D) + pos
    c = t_embedder(t) + y_embedder(y)                                  (B, D)
    N x DiTBlock(x, c)          adaLN-Zero: LayerNorm's shift/scale and a residual gate from c
    FinalLayer(x, c)            adaLN (shift, scale) + Linear(D, p*p*C_out)
    unpatchify --> (B, C_out, H, W)    C_out = 2C with learn_sigma: [eps | v], v interpolates
                                       the log-variance between beta_t and beta~_t (IDDPM)

Glossary (paper symbol | code name | checkpoint key)
  N blocks         | depth                  | blocks.{0..N-1}
  d                | hidden_size            | x_embedder.proj.weight.shape[0]
  p                | patch_size             | x_embedder.proj.weight.shape[-1]
  γ, β (scale,shift), α (gate) | shift_msa ... gate_mlp | blocks.i.adaLN_modulation.1 (6D rows)
  ∅ (null class)   | num_classes            | y_embedder.embedding_table.weight[-1]
  Σ (learned)      | learn_sigma            | final_layer.linear.weight.shape[0] = p*p*2C

Shape legend: B batch, C channels, H W latent size, p patch, h w = H/p W/p, T = h*w, D width.
The official code writes N for the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .attention import Attention, Mlp
from .embed import (LabelEmbedder, PatchEmbed, TimestepEmbedder, cached_2d_sincos_pos_embed, init_linears_and_patch_embed,
                    unpatchify)
from .guidance import cfg


@dataclass(frozen=True)
class DiTConfig:
    input_size: int = 32              # latent side H = W (32 for 256 px images with an f8 VAE)
    patch_size: int = 2               # p
    in_channels: int = 4              # C (latent channels)
    hidden_size: int = 1152           # d
    depth: int = 28                   # N
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1   # label dropout for CFG training; > 0 adds the null class row
    num_classes: int = 1000
    learn_sigma: bool = True          # output [eps | v] (2C channels) instead of eps (C)
    # Not an official constructor argument: the timestep embedding's frequency shift.
    # 0 = official DiT (the weights were trained with it); 1 = diffusers' DiTTransformer2DModel.
    timestep_freq_shift: int = 0

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels


def modulate(x, shift, scale):
    """adaLN: x * (1 + scale) + shift, with (B, D) shift/scale broadcast over the tokens.

    Written as one `torch.addcmul(shift, x, 1 + scale)` = shift + x * (1 + scale): a single pass over
    x and no intermediate (B, T, D) tensor (the two-operation form allocates one and reads x twice)."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


class DiTBlock(nn.Module):
    """A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x, c):
        # (B, 6D) -> six (B, D) vectors, in the checkpoint's row order.
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        # x + gate * branch, fused into one addcmul (no (B, T, D) temporary for gate * branch)
        x = torch.addcmul(x, gate_msa.unsqueeze(1), self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        x = torch.addcmul(x, gate_mlp.unsqueeze(1), self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))
        return x                                                              # (B, T, D)


class FinalLayer(nn.Module):
    """adaLN (shift, scale; no gate) then a Linear to p*p*C_out values per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)              # (B, D) each
        return self.linear(modulate(self.norm_final(x), shift, scale))      # (B, T, p*p*C_out)


class DiT(nn.Module):
    """Class-conditional Diffusion Transformer: forward(x_t, t, y) -> [eps | v]."""

    def __init__(self, config: DiTConfig = DiTConfig()):
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, D)
        self.t_embedder = TimestepEmbedder(D, freq_shift=config.timestep_freq_shift)
        self.y_embedder = LabelEmbedder(config.num_classes, D, config.class_dropout_prob)
        # The official model also stores the fixed sin-cos table as `pos_embed`; it is not learned,
        # so minidit recomputes it for the actual grid (see `pos_embed`) and the loader checks it.
        self.blocks = nn.ModuleList(
            [DiTBlock(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        self.final_layer = FinalLayer(D, config.patch_size, config.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """The official initialisation; adaLN-Zero = every residual gate and the output start at 0."""
        init_linears_and_patch_embed(self)
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def pos_embed(self, h: int, w: int, device=None, dtype=None):
        """The fixed 2-D sin-cos table for an h x w token grid: (1, T, D) (cached per device and dtype)."""
        return cached_2d_sincos_pos_embed(self.config.hidden_size, h, w, device=device, dtype=dtype)[None]

    def forward(self, x, t, y, force_drop_ids=None):
        """x: (B, C, H, W) noisy latents, t: (B,) timesteps 0..999, y: (B,) class ids -> (B, C_out, H, W).

        Label dropout: in train mode the label embedder drops a random `class_dropout_prob` of the
        labels; `force_drop_ids` (B,) (1 = drop) decides instead, in any mode (the official argument).
        """
        p = self.config.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        x = self.x_embedder(x)                                                # (B, T, D)
        x = x + self.pos_embed(h, w, x.device, x.dtype)                       # (B, T, D)
        c = self.t_embedder(t) + self.y_embedder(y, self.training, force_drop_ids)  # (B, D)
        for block in self.blocks:
            x = block(x, c)                                                   # (B, T, D)
        x = self.final_layer(x, c)                                            # (B, T, p*p*C_out)
        return unpatchify(x, p, h, w)                                         # (B, C_out, H, W)

    def forward_with_cfg(self, x, t, y, cfg_scale: float, cfg_channels: int | None = 3):
        """Classifier-free guidance in one batched call, as the official sampler runs it.

        The batch is [x_half, x_half] with labels [y, null]; returns the guided output for both
        halves. The official code guides only the first `cfg_channels=3` output channels ("for exact
        reproducibility reasons" — the FID 2.27 was measured this way); `cfg_channels=None` guides
        all `in_channels` eps channels, as diffusers' DiTPipeline does. The variance channels are
        never guided.
        """
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y)
        n = self.config.in_channels if cfg_channels is None else cfg_channels
        eps, rest = model_out[:, :n], model_out[:, n:]
        cond_eps, uncond_eps = eps.chunk(2, dim=0)
        half_eps = cfg(cond_eps, uncond_eps, cfg_scale)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)


# --------------------------------------------------------------------------------------------
# Presets: the twelve configurations of the paper (Table 1 x patch sizes 2, 4, 8)
# --------------------------------------------------------------------------------------------
DIT_XL_2 = DiTConfig(depth=28, hidden_size=1152, num_heads=16, patch_size=2)
DIT_XL_4 = replace(DIT_XL_2, patch_size=4)
DIT_XL_8 = replace(DIT_XL_2, patch_size=8)
DIT_L_2 = DiTConfig(depth=24, hidden_size=1024, num_heads=16, patch_size=2)
DIT_L_4 = replace(DIT_L_2, patch_size=4)
DIT_L_8 = replace(DIT_L_2, patch_size=8)
DIT_B_2 = DiTConfig(depth=12, hidden_size=768, num_heads=12, patch_size=2)
DIT_B_4 = replace(DIT_B_2, patch_size=4)
DIT_B_8 = replace(DIT_B_2, patch_size=8)
DIT_S_2 = DiTConfig(depth=12, hidden_size=384, num_heads=6, patch_size=2)
DIT_S_4 = replace(DIT_S_2, patch_size=4)
DIT_S_8 = replace(DIT_S_2, patch_size=8)

PRESETS = {
    "DiT-XL/2": DIT_XL_2, "DiT-XL/4": DIT_XL_4, "DiT-XL/8": DIT_XL_8,
    "DiT-L/2": DIT_L_2, "DiT-L/4": DIT_L_4, "DiT-L/8": DIT_L_8,
    "DiT-B/2": DIT_B_2, "DiT-B/4": DIT_B_4, "DiT-B/8": DIT_B_8,
    "DiT-S/2": DIT_S_2, "DiT-S/4": DIT_S_4, "DiT-S/8": DIT_S_8,
}
# The two released checkpoints (facebookresearch/DiT download.py).
CHECKPOINTS = {
    "DiT-XL-2-256x256": replace(DIT_XL_2, input_size=32),
    "DiT-XL-2-512x512": replace(DIT_XL_2, input_size=64),
}
