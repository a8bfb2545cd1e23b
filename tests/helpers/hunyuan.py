"""A tiny random Hunyuan-DiT pipeline folder written by diffusers' `save_pretrained`, and the same
weights in the original repository's `t2i/` layout.

The recipe: a tiny BERT on the real all-MiniLM vocabulary (English WordPiece plus the CJK
characters BERT's vocabulary holds one by one), a sentencepiece model trained here on English AND
Chinese text (so Chinese prompts give real pieces, not <unk>), a 2-layer T5 encoder (mT5 is the same
T5 v1.1 architecture), a 6-layer HunyuanDiT2DModel (2 heads x 8; text_len 77 and text_len_t5 256,
the lengths the pipelines pad to), a 4-level VAE (x8, scaling 0.13025 like sdxl-vae-fp16-fix) and
the DDPMScheduler of the Hunyuan folders (v-prediction, scaled-linear betas, steps_offset 1).
transformers 5 saves only tokenizer.json, so vocab.txt and spiece.model are copied beside it (the
hub folders hold them too). Every transformer weight is random (norms near 1).
"""
import json
import random
import shutil
import string
from pathlib import Path

import torch

from helpers.text import minilm_dir, train_spiece_on
from helpers.weights import randomize

VOCAB = 700
BERT_WIDTH, T5_WIDTH = 12, 16          # = the transformer's cross_attention_dim, cross_attention_dim_t5
TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2, sample_size=8,
                   hidden_size=16, num_layers=6, mlp_ratio=2.5, cross_attention_dim=BERT_WIDTH,
                   cross_attention_dim_t5=T5_WIDTH, pooled_projection_dim=20, text_len=77, text_len_t5=256)
CHINESE = ["一只可爱的猫坐在窗台上", "一个宇航员在骑马", "青花瓷风格，一只可爱的哈士奇", "渔舟唱晚", "夜晚的城市，灯火通明",
           "错误的眼睛，糟糕的人脸，毁容，糟糕的艺术，变形，多余的肢体，模糊的颜色，模糊，重复，病态，残缺，",
           "一只小猫在草地上玩耍，阳光明媚", "中国山水画，高山流水", "红色的苹果放在木桌上",
           "小狗在房间里睡觉"]


def train_bilingual_spiece(folder: Path, vocab_size: int = VOCAB) -> Path:
    """A sentencepiece unigram model with T5's id layout (pad 0, eos 1, unk 2, no bos), trained on
    English words, Chinese sentences and mixed ones."""
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(800)]
    words += "a cute cat astronaut riding a horse on the moon red apple wooden table city at night".split()
    corpus = [" ".join(rng.choices(words, k=10)) for _ in range(1500)]
    corpus += ["".join(rng.sample(CHINESE, k=3)) for _ in range(1500)]
    corpus += [f"{rng.choice(CHINESE)} {' '.join(rng.choices(words, k=4))}" for _ in range(500)]
    corpus += [" ".join(string.ascii_letters + string.digits + string.punctuation)] * 20
    return train_spiece_on(folder, corpus, vocab_size)


def scale(name: str) -> float:
    """Random weights; larger text projections so that the prompt visibly changes the output."""
    return 0.5 if ("text_embedder" in name or "text_embedding_padding" in name) else 0.3


def build_hunyuan_folder(folder: Path, size_cond: bool, work: Path) -> Path:
    """Write a tiny `HunyuanDiTPipeline` (v1.1-like with size_cond, else v1.2-like) to `folder`."""
    from diffusers import AutoencoderKL, DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel, BertTokenizer, T5Config, T5EncoderModel, T5Tokenizer
    torch.manual_seed(0)
    spiece = work / "spiece"
    if not (spiece / "spiece.model").is_file():
        train_bilingual_spiece(spiece)
    tokenizer = BertTokenizer.from_pretrained(minilm_dir())
    text_encoder = BertModel(BertConfig(vocab_size=30522, hidden_size=BERT_WIDTH, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=128)).eval()
    tokenizer_2 = T5Tokenizer.from_pretrained(spiece, extra_ids=0)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=T5_WIDTH, d_kv=8, d_ff=32, num_layers=2,
                                             num_heads=2, feed_forward_proj="gated-gelu")).eval()
    transformer = randomize(HunyuanDiT2DModel(**TRANSFORMER, use_style_cond_and_image_meta_size=size_cond),
                            seed=1, scale=scale)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "norm" in name and name.endswith("weight") and p.ndim == 1:
                p.add_(1.0)            # LayerNorm gains near 1
    vae = AutoencoderKL(latent_channels=4, layers_per_block=1, block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        scaling_factor=0.13025)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.03 if size_cond else 0.02,
                              clip_sample=False, prediction_type="v_prediction", steps_offset=1)
    HunyuanDiTPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                       scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                       text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2).save_pretrained(folder)
    shutil.copy(minilm_dir() / "vocab.txt", folder / "tokenizer" / "vocab.txt")
    shutil.copy(spiece / "spiece.model", folder / "tokenizer_2" / "spiece.model")
    return folder


def reference_pipeline(folder: Path):
    from diffusers import HunyuanDiTPipeline
    pipe = HunyuanDiTPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------- t2i/

def diffusers_to_original(sd: dict, depth: int) -> dict:
    """The inverse of `helpers.layouts.hunyuan.original_to_diffusers`, rule by rule: joined Wqkv /
    kv_proj, norm2 <-> norm3, the final layer's (scale, shift) -> (shift, scale), the style table."""
    sd, out = dict(sd), {}
    rules = {"text_embedder.linear_1": "mlp_t5.0", "text_embedder.linear_2": "mlp_t5.2", "pos_embed.proj": "x_embedder.proj",
             "time_extra_emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
             "time_extra_emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
             "time_extra_emb.extra_embedder.linear_1": "extra_embedder.0",
             "time_extra_emb.extra_embedder.linear_2": "extra_embedder.2", "proj_out": "final_layer.linear"}
    for n in ("q_proj", "k_proj", "v_proj", "c_proj"):
        rules[f"time_extra_emb.pooler.{n}"] = f"pooler.{n}"
    out["text_embedding_padding"] = sd.pop("text_embedding_padding")
    out["pooler.positional_embedding"] = sd.pop("time_extra_emb.pooler.positional_embedding")
    if "time_extra_emb.style_embedder.weight" in sd:
        out["style_embedder.weight"] = sd.pop("time_extra_emb.style_embedder.weight")
    for kind in ("weight", "bias"):
        scale_, shift = sd.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale_], dim=0)
    for i in range(depth):
        b = f"blocks.{i}."
        block = {"attn1.norm_q": "attn1.q_norm", "attn1.norm_k": "attn1.k_norm", "attn1.to_out.0": "attn1.out_proj",
                 "attn2.to_q": "attn2.q_proj", "attn2.norm_q": "attn2.q_norm", "attn2.norm_k": "attn2.k_norm",
                 "attn2.to_out.0": "attn2.out_proj", "norm1.norm": "norm1", "norm1.linear": "default_modulation.1",
                 "norm3": "norm2", "norm2": "norm3", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2"}
        if i > depth // 2:
            block.update({"skip_norm": "skip_norm", "skip_linear": "skip_linear"})
        rules.update({b + k: b + v for k, v in block.items()})
        for kind in ("weight", "bias"):
            out[f"{b}attn1.Wqkv.{kind}"] = torch.cat([sd.pop(f"{b}attn1.to_{n}.{kind}") for n in "qkv"], dim=0)
            out[f"{b}attn2.kv_proj.{kind}"] = torch.cat([sd.pop(f"{b}attn2.to_{n}.{kind}") for n in "kv"], dim=0)
    for src, dst in rules.items():
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")
    assert not sd, f"keys the rules do not cover: {sorted(sd)[:10]}"
    return out


def write_original_layout(folder: Path, root: Path, load_key: str = "ema") -> Path:
    """The diffusers folder's weights as the original repository lays them out: root/t2i/model/
    pytorch_model_<load_key>.pt (original keys; float32 here, the releases are float16), clip_text_encoder/, tokenizer/,
    mt5/ (weights + spiece.model), sdxl-vae-fp16-fix/. Returns root/t2i."""
    from safetensors.torch import load_file
    from helpers.layouts.hunyuan import original_to_diffusers
    t2i = root / "t2i"
    (t2i / "model").mkdir(parents=True)
    sd = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    original = diffusers_to_original(sd, TRANSFORMER["num_layers"])
    back = original_to_diffusers(original, TRANSFORMER["num_layers"])        # the documented rules, forwards
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    torch.save(original, t2i / "model" / f"pytorch_model_{load_key}.pt")
    shutil.copytree(folder / "text_encoder", t2i / "clip_text_encoder")
    shutil.copytree(folder / "tokenizer", t2i / "tokenizer")
    shutil.copytree(folder / "text_encoder_2", t2i / "mt5")
    for f in (folder / "tokenizer_2").iterdir():
        shutil.copy(f, t2i / "mt5" / f.name)
    config = json.loads((t2i / "mt5" / "config.json").read_text())
    (t2i / "mt5" / "config.json").write_text(json.dumps({**config, "model_type": "mt5"}))   # the real folder's type
    shutil.copytree(folder / "vae", t2i / "sdxl-vae-fp16-fix")
    return t2i
