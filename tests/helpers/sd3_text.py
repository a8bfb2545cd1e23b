"""A tiny random SD3 text stack written by diffusers' `save_pretrained`: a StableDiffusion3Pipeline
folder with text_encoder/ (a CLIP-L-like CLIPTextModelWithProjection, quick_gelu), text_encoder_2/
(a bigG-like one, gelu, of another width), text_encoder_3/ (a T5EncoderModel), their tokenizers and a
tiny transformer (diffusers needs its `joint_attention_dim` when T5 is dropped); no VAE.

Tokenizers: the real CLIP BPE vocabulary (open_clip's, written as vocab.json + merges.txt) for both
CLIPs, tokenizer_2/ padding with "!" as SD3's does; a sentencepiece model trained here for T5.
transformers 5 saves only tokenizer.json, so vocab.json, merges.txt and spiece.model are copied in
(the hub folders hold them too). CLIP-L's text_projection is the identity, as in diffusers' SD3
(its single-file loader writes torch.eye); every other weight is perturbed, LayerNorms included, and
T5's weights are rounded to float16 values so that a float16 single file holds them exactly.
"""
import shutil
from pathlib import Path

import torch

from helpers.text import train_spiece, write_clip_vocab_folder
from helpers.weights import perturb

CLIP_VOCAB, BOS, EOS = 49408, 49406, 49407
L_WIDTH, G_WIDTH, T5_WIDTH = 32, 48, 96        # 32 + 48 = 80 CLIP channels, zero-padded to 96
T5_VOCAB = 600


def clip_config(width: int, act: str):
    from transformers import CLIPTextConfig
    return CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act=act, projection_dim=width,
                          bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)


def minidit_clip_config(width: int, act: str):
    """The same tower as minidit's CLIPTextConfig (for single files, whose width is not a released one)."""
    from minidit.text.clip import CLIPTextConfig
    return CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                          num_attention_heads=4, hidden_act=act, eos_token_id=EOS, projection_dim=width)


def build_text_stack(folder: Path, work: Path):
    """Write the tiny StableDiffusion3Pipeline to `folder` (scratch files in `work`); returns it."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer
    torch.manual_seed(0)
    vocab_dir, spiece_dir = write_clip_vocab_folder(work / "clip_vocab"), work / "spiece"
    train_spiece(spiece_dir, T5_VOCAB)
    clip_l = perturb(CLIPTextModelWithProjection(clip_config(L_WIDTH, "quick_gelu")), seed=1, scale=0.1)
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(L_WIDTH))
    clip_g = perturb(CLIPTextModelWithProjection(clip_config(G_WIDTH, "gelu")), seed=2, scale=0.1)
    t5 = perturb(T5EncoderModel(T5Config(vocab_size=T5_VOCAB, d_model=T5_WIDTH, d_kv=16, d_ff=128, num_layers=2,
                                         num_heads=4, feed_forward_proj="gated-gelu")), seed=3, scale=0.1)
    with torch.no_grad():
        for p in t5.parameters():
            p.copy_(p.half().float())
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=T5_WIDTH, caption_projection_dim=16,
                                        pooled_projection_dim=L_WIDTH + G_WIDTH, out_channels=4, pos_embed_max_size=8)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=None,
        text_encoder=clip_l.eval(), tokenizer=CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77),
        text_encoder_2=clip_g.eval(),
        tokenizer_2=CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77, pad_token="!"),
        text_encoder_3=t5.eval(), tokenizer_3=T5Tokenizer.from_pretrained(spiece_dir, extra_ids=0))
    pipe.save_pretrained(folder)
    for sub in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(vocab_dir / name, folder / sub / name)
    shutil.copy(spiece_dir / "spiece.model", folder / "tokenizer_3" / "spiece.model")
    pipe.set_progress_bar_config(disable=True)
    return pipe
