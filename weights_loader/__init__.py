"""Read official and diffusers/transformers checkpoints into minidit modules (strictly).

    from weights_loader import PipelineFolder, load_dit, load_t5, load_t5_tokenizer
    model = load_dit("DiT-XL-2-256x256.pt")            # or a diffusers folder, or a state dict
    t5 = load_t5("PixArt-Sigma-XL-2-1024-MS/")         # a pipeline root: its text_encoder/ folder
    vae_dir = PipelineFolder("transformer-only/", base="PixArt-Sigma-XL-2-1024-MS/").component("vae")
"""
from .errors import CheckpointError, ConfigError
from .io import read_state_dict
from .pipeline_folder import MissingPartError, PipelineFolder
from .dit import load_dit
from .pixart import load_pixart
from .mmdit import load_mmdit
from .hunyuan import load_hunyuan
from .opensora import load_stdit
from .latte import load_latte
from .vae import load_vae
from .opensora3 import load_opensora_vae, load_stdit3
from .t5 import load_t5, load_t5_tokenizer
from .clip import load_clip, load_clip_tokenizer
from .bert import load_bert, load_bert_tokenizer

__all__ = ["CheckpointError", "ConfigError", "read_state_dict", "PipelineFolder", "MissingPartError", "load_dit",
           "load_pixart", "load_mmdit", "load_hunyuan", "load_stdit", "load_stdit3", "load_opensora_vae", "load_latte",
           "load_vae", "load_t5", "load_t5_tokenizer", "load_clip", "load_clip_tokenizer", "load_bert",
           "load_bert_tokenizer"]
