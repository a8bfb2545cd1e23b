"""Read official and diffusers/transformers checkpoints into minidit modules (strictly).

    from weights_loader import load_dit
    model = load_dit("DiT-XL-2-256x256.pt")            # or a diffusers folder, or a state dict
"""
from .io import CheckpointError, read_state_dict
from .dit import load_dit
from .vae import load_vae

__all__ = ["CheckpointError", "read_state_dict", "load_dit", "load_vae"]
