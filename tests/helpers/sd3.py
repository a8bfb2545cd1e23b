"""A tiny random SD3 pipeline folder written by diffusers' `save_pretrained`: the text stack of
`helpers/sd3_text.py`, a 3-layer MM-DiT with 16 latent channels (every weight random), an SD3-like
VAE (16 latent channels, no quant convs, scaling 1.5305, shift 0.0609) and the released folders'
`FlowMatchEulerDiscreteScheduler(shift=3.0)`."""
from pathlib import Path

import torch

from helpers.sd3_text import G_WIDTH, L_WIDTH, T5_WIDTH, build_text_stack

# MMDiT-X-like: QK RMSNorm and an image-only second attention in layer 0 (the 3.5-medium design)
TRANSFORMER = dict(sample_size=8, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
                   joint_attention_dim=T5_WIDTH, caption_projection_dim=32, pooled_projection_dim=L_WIDTH + G_WIDTH,
                   out_channels=16, pos_embed_max_size=16, qk_norm="rms_norm", dual_attention_layers=(0,))


def randomize_all(model, seed: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def build_sd3_pipeline(folder: Path, work: Path):
    """Write the tiny StableDiffusion3Pipeline to `folder` (scratch files in `work`); returns it."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    text = build_text_stack(folder, work)                  # writes the text encoders and tokenizers
    torch.manual_seed(0)
    transformer = randomize_all(SD3Transformer2DModel(**TRANSFORMER), seed=5, scale=0.15)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 16, 16, 16),
                        layers_per_block=1, norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, use_quant_conv=False, use_post_quant_conv=False,
                        scaling_factor=1.5305, shift_factor=0.0609).eval()
    pipe = StableDiffusion3Pipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    text_encoder=text.text_encoder, tokenizer=text.tokenizer,
                                    text_encoder_2=text.text_encoder_2, tokenizer_2=text.tokenizer_2,
                                    text_encoder_3=text.text_encoder_3, tokenizer_3=text.tokenizer_3)
    pipe.save_pretrained(folder)                            # the tokenizers' vocab files stay in place
    pipe.set_progress_bar_config(disable=True)
    return pipe
