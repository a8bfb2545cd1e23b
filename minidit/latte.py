"""Latte-1: a text-to-video DiT made of PixArt-α blocks, with a temporal block after every spatial one.

Paper: Latte (Ma et al., arXiv:2401.03048), the "interleaved spatial/temporal" variant (model 1 of its
§3.2). Official code: Vchitect/Latte `models/latte_t2v.py` (`LatteT2V`), `sample/pipeline_latte.py`;
diffusers: `LatteTransformer3DModel`. Checkpoint: `maxin-cn/Latte-1` (and Latte-0 `maxin-cn/Latte`), which
ships diffusers folders: `transformer/` holds `transformer_blocks.*` (spatial, with cross-attention),
`temporal_transformer_blocks.*` (temporal, without), `adaln_single.*`, `caption_projection.*`,
`pos_embed.proj.*`, `proj_out.*`, `scale_shift_table`.

Why the module names are PixArt's and not diffusers': Latte-1 is initialised from PixArt-α, and its
spatial half *is* a PixArt-α transformer (the same block, the same adaLN-single, the same caption
projection, the same final layer). So `Latte` subclasses `minidit.pixart.PixArt` and adds
`temporal_blocks` (each a `PixArtBlock` without cross-attention); a reader sees in the class list that
nothing else is new. The loader (`weights_loader/latte.py`) renames diffusers' keys with PixArt's own
diffusers key map (`rename_pixart_top`, `rename_pixart_block`), plus the temporal blocks.

    x_t (B, C, F, H, W) --fold frames--> (B*F, C, H, W) --patchify + 2-D pos--> (B*F, S, D)
    t0 = t_block(t_embedder(t))        (B, 6D): ONE adaLN-single modulation, repeated per frame / per patch
    y = y_embedder(T5 states)          (B, L, D), repeated per frame: (B*F, L, D)
    N x [ blocks.i          spatial:  self-attn over the S patches of a frame + cross-attn to y + MLP
          (B*F, S, D) -> (B*S, F, D)   (+ temporal sin-cos, before the first temporal block only)
          temporal_blocks.i temporal: self-attn over the F frames of a patch position + MLP
          (B*S, F, D) -> (B*F, S, D) ]
    final_layer -> unpatchify per frame -> (B, C_out, F, H, W)     C_out = 2C: [eps | v] (learned range)

Frames: the temporal position table has `video_length` rows (16 for Latte-1), and the official and
diffusers forwards add it to exactly that many frames; one frame (F = 1) skips it (Latte's
text-to-image mode). Any other F is refused (`check_frames`).

Glossary (paper symbol | code name | checkpoint key, diffusers layout)
  spatial block i     | blocks.i            | transformer_blocks.i.*
  temporal block i    | temporal_blocks.i   | temporal_transformer_blocks.i.*   (no attn2)
  S̄ = MLP(t)          | t_block, t0         | adaln_single.linear, adaln_single.emb.timestep_embedder.*
  caption projection  | y_embedder.y_proj   | caption_projection.linear_{1,2}
  temporal position   | temp_pos_embed()    | temp_pos_embed (a non-persistent buffer: not in the file)
  2-D position        | pos_embed()         | (recomputed, as diffusers' PatchEmbed does)
  caption length 120  | CAPTION_TOKENS      | (the pipelines' T5 length, hard-coded in both pipelines)

Shape legend: B batch, C channels, F frames, H W latent size, p patch, h w = H/p W/p, S = h*w patches
per frame, L caption tokens, D width, C_cap caption channels (4096 for T5-XXL).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .embed import pos_embed_temporal, unpatchify
from .pixart import PixArt, PixArtBlock, PixArtConfig, embed_caption
from .spacetime import from_spatial, from_temporal, to_spatial, to_temporal


CAPTION_TOKENS = 120      # T5 tokens per prompt (Latte's pipelines: max_length = 120)
# The one value of each diffusers option that Latte-1 uses and that this model implements.
FIXED = {"norm_type": "ada_norm_single", "activation_fn": "gelu-approximate", "norm_elementwise_affine": False,
         "norm_eps": 1e-6, "attention_bias": True, "dropout": 0.0}


@dataclass(frozen=True)
class LatteConfig:
    """The fields of diffusers' `LatteTransformer3DModel` config.json (defaults: Latte-1's)."""
    num_attention_heads: int = 16
    attention_head_dim: int = 72
    in_channels: int = 4
    out_channels: int | None = 8          # None: = in_channels (no learned sigma)
    num_layers: int = 28
    dropout: float = 0.0
    cross_attention_dim: int | None = 1152
    attention_bias: bool = True
    sample_size: int = 64                 # latent side at the training resolution (512 px / 8)
    patch_size: int = 2
    activation_fn: str = "gelu-approximate"
    num_embeds_ada_norm: int | None = 1000
    norm_type: str = "ada_norm_single"
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-6
    caption_channels: int = 4096
    video_length: int = 16                # rows of the temporal position table = the frames it trained on

    def __post_init__(self):
        bad = {k: getattr(self, k) for k, v in FIXED.items() if getattr(self, k) != v}
        if bad:
            raise ValueError(f"Latte options {bad} are not implemented (minidit's Latte is Latte-1's: {FIXED})")
        if self.cross_attention_dim not in (None, self.hidden_size):
            raise ValueError(f"cross_attention_dim {self.cross_attention_dim} must be heads x head_dim = "
                             f"{self.hidden_size} (the caption projection's width)")
        if self.out_channels not in (None, self.in_channels, 2 * self.in_channels):
            raise ValueError(f"out_channels {self.out_channels} must be in_channels ({self.in_channels}) or twice it")

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def pred_sigma(self) -> bool:
        return self.out_channels == 2 * self.in_channels

    @property
    def base_size(self) -> int:
        return self.sample_size // self.patch_size

    @property
    def pe_interpolation(self) -> float:
        """diffusers' (and the official) `interpolation_scale = max(sample_size // 64, 1)`."""
        return float(max(self.sample_size // 64, 1))

    def pixart(self) -> PixArtConfig:
        """The PixArt-α config of the spatial half (the model Latte-1 was initialised from)."""
        return PixArtConfig(input_size=self.sample_size, patch_size=self.patch_size, in_channels=self.in_channels,
                            hidden_size=self.hidden_size, depth=self.num_layers, num_heads=self.num_attention_heads,
                            pred_sigma=self.pred_sigma, caption_channels=self.caption_channels,
                            pe_interpolation=self.pe_interpolation, model_max_length=CAPTION_TOKENS,
                            class_dropout_prob=0.0)      # no null caption to drop to

    def check_frames(self, frames: int) -> int:
        """F = 1 (one image) or F = video_length; anything else is a ValueError saying so."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames not in (1, self.video_length):
            raise ValueError(f"this Latte model makes {self.video_length} frames (its temporal position table has "
                             f"{self.video_length} rows) or 1 frame (an image), not {frames!r}")
        return frames


class Latte(PixArt):
    """Latte-1 transformer: forward(x_t (B, C, F, H, W), timestep (B,), y (B, L, C_cap)) -> (B, C_out, F, H, W)."""

    def __init__(self, config: LatteConfig = LatteConfig()):
        super().__init__(config.pixart())          # x_embedder, t_embedder, t_block, y_embedder, blocks, final_layer
        self.config = config
        D = config.hidden_size
        self.temporal_blocks = nn.ModuleList([PixArtBlock(D, config.num_attention_heads, cross_attention=False)
                                              for _ in range(config.num_layers)])
        for block in self.temporal_blocks:
            block.apply(self._init_linear)
        # Latte has no stored null caption (its uncond is T5("")): PixArt's `y_embedding` buffer is removed,
        # so the state dict is exactly the checkpoint's, and `null_caption()` raises.
        del self.y_embedder.y_embedding
        self.y_embedder.has_null_caption = False

    @staticmethod
    def _init_linear(module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def temp_pos_embed(self, frames: int, device=None, dtype=None):
        """The 1-D sin-cos table of the frame index 0..F-1 (sin first, as diffusers / the official code): (1, F, D)."""
        return pos_embed_temporal(self.config.hidden_size, frames).to(device=device, dtype=dtype)[None]

    def forward(self, x, timestep, y, mask=None, *, temporal: bool = True):
        """x (B, C, F, H, W) noisy latents; timestep (B,) 0..999; y (B, L, C_cap) T5 states; mask (B, L),
        1 = real token (None: every token is attended to, what Latte's pipelines do); temporal=False skips
        the temporal blocks (diffusers' enable_temporal_attentions=False)."""
        c = self.config
        B, _, F, H, W = x.shape
        c.check_frames(F)
        p = c.patch_size
        h, w = H // p, W // p
        x = x.transpose(1, 2).reshape(B * F, -1, H, W)                          # (B*F, C, H, W)
        x = self.x_embedder(x) + self.pos_embed(h, w, x.device, x.dtype)        # (B*F, S, D)
        t = self.t_embedder(timestep)                                           # (B, D)
        t0 = self.t_block(t)                                                    # (B, 6D)
        y, mask = embed_caption(self.y_embedder, y, mask, B)                    # (B, L, D), (B, L) bool or None
        y = y.repeat_interleave(F, dim=0)                                       # (B*F, L, D)
        mask = None if mask is None else mask.repeat_interleave(F, dim=0)      # (B*F, L)
        t0_spatial = t0.repeat_interleave(F, dim=0)                             # (B*F, 6D)
        S = h * w
        t0_temporal = t0.repeat_interleave(S, dim=0)                            # (B*S, 6D)
        for i, (spatial, temporal_block) in enumerate(zip(self.blocks, self.temporal_blocks)):
            x = spatial(x, y, t0_spatial, mask, (h, w))                         # (B*F, S, D)
            if not temporal:
                continue
            x = to_temporal(from_spatial(x, F, S), F, S)                        # (B*S, F, D)
            if i == 0 and F > 1:
                x = x + self.temp_pos_embed(F, x.device, x.dtype)
            x = temporal_block(x, None, t0_temporal)                            # (B*S, F, D)
            x = to_spatial(from_temporal(x, F, S), F, S)                        # (B*F, S, D)
        x = self.final_layer(x, t.repeat_interleave(F, dim=0))                  # (B*F, S, p*p*C_out)
        x = unpatchify(x, p, h, w)                                              # (B*F, C_out, H, W)
        return x.reshape(B, F, -1, H, W).transpose(1, 2)                        # (B, C_out, F, H, W)


LATTE_1 = LatteConfig()
PRESETS = {"Latte-1": LATTE_1}
