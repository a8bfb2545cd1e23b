"""Training and fine-tuning the DiT family: a readable loop that scales out with torchrun.

Papers: DDPM (arXiv:2006.11239), Improved DDPM (arXiv:2102.09672: learned sigma, the hybrid loss),
v-prediction (arXiv:2202.00512), rectified flow / SD3 (arXiv:2403.03206 §3.1), DiT (arXiv:2212.09748:
AdamW 1e-4, no weight decay, EMA 0.9999), PixArt-α (arXiv:2310.00426: multi-aspect buckets),
gradient checkpointing (arXiv:1604.06174). Official training code read for the recipes:
facebookresearch/DiT `train.py`, PixArt-alpha/PixArt-sigma `train_scripts/train.py`.

Files, in the order the loop uses them:
    objectives.py     DDPM eps / v (+ learned sigma, hybrid loss) and flow matching, per-sample draws
    buckets.py        PixArt's aspect-ratio buckets, a batch sampler sharded over processes
    data.py           digits (DiT, class labels) and a folder of captioned images (PixArt)
    text_cache.py     T5 once per caption, kept on disk
    checkpointing.py  gradient checkpointing per block, bf16 autocast
    optim.py          AdamW groups, warm-up + cosine, EMA
    distributed.py    torchrun / torch.distributed: DDP, FSDP2
    state.py          resumable checkpoints; exports in the official layout
    loop.py           `TrainConfig`, `train`: the loop itself
`minidit/train.py` keeps the one-step `ddpm_training_loss` of chapter 03; `scripts/train.py` is the
command line; `minidit/plan_train.py` predicts a run's memory.

Glossary (paper symbol | code name | checkpoint key)
  theta_ema, decay d        | EMA.shadow, ema_decay     | the released weights (DiT `ema`, PixArt `state_dict_ema`)
  eta_max, warm-up W         | lr, warmup                | -
  k (accumulation)           | grad_accum                | -
  G = B x k x world size     | global_batch              | -
  p_uncond                   | p_uncond                  | class_dropout_prob (the model's own, switched off here)
"""
from .buckets import BucketBatchSampler, assign_buckets
from .checkpointing import autocast, enable_checkpointing
from .data import DigitsData, ImageCaptionFolder, prepare_pixart
from .loop import TrainConfig, train
from .objectives import DDPMObjective, FlowObjective, make_objective
from .optim import EMA, make_optimizer, warmup_cosine
from .state import export_diffusers, export_weights
from .text_cache import TextEmbeddingCache

__all__ = ["BucketBatchSampler", "assign_buckets", "autocast", "enable_checkpointing", "DigitsData",
           "ImageCaptionFolder", "prepare_pixart", "TrainConfig", "train", "DDPMObjective", "FlowObjective",
           "make_objective", "EMA", "make_optimizer", "warmup_cosine", "export_weights", "export_diffusers",
           "TextEmbeddingCache"]
