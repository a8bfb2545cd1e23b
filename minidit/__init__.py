"""minidit: the Diffusion-Transformer family written by hand, in plain PyTorch.

Start with `minidit.dit` (the DiT model), `minidit.diffusion` (DDPM maths) and
`minidit.samplers`; `weights_loader` reads the official checkpoints into these modules.
"""
__version__ = "0.1.0"
