"""The documented original checkpoint layouts (docs/checkpoints.md), written out by hand per family, and
the rename rules to diffusers' layout: independent of weights_loader, so tests can check it."""
