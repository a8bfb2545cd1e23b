"""Train the rectified-flow toy DiT on scikit-learn's digits -> minidit/assets/toy_digits_flow.safetensors.

    python scripts/train_toy_flow.py                # the shipped weights (about 5 min on 2 CPU cores)
    python scripts/train_toy_flow.py --steps 300    # a quick look

The DDPM toy's model, data, loop, optimizer, learning-rate schedule and EMA (`scripts/train_toy.py`,
imported from there), with SD3's objective instead of DDPM's:

    sigma ~ logit-normal (sigmoid of N(0, 1), SD3 §3.1)        `minidit.flow.training_sigmas`
    x_sigma = (1 - sigma) x0 + sigma eps                       `minidit.flow.flow_interpolate`
    loss = || v_theta(x_sigma, 1000 sigma, y) - (eps - x0) ||^2   `minidit.flow.flow_loss`

The model is `TOY_FLOW`: `TOY` with learn_sigma=False (one output channel, the velocity); its
label dropout (0.1, in train mode) makes classifier-free guidance work. No noise schedule to choose:
the schedule is the straight path, and the choice moves to the density of sigma (`--density`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from minidit.flow import TRAINING_DENSITIES, flow_loss, training_sigmas
from minidit.pipelines.toy import FLOW_WEIGHTS, NUM_TIMESTEPS, TOY_FLOW
from train_toy import build_parser, train                     # scripts/train_toy.py: the same loop


def main(argv=None):
    parser = build_parser(__doc__, out=FLOW_WEIGHTS, lr=4e-3, steps=1500)
    parser.add_argument("--density", choices=TRAINING_DENSITIES, default="logit_normal",
                        help="how sigma is drawn for each training example (default: %(default)s)")
    args = parser.parse_args(argv)
    density = args.density

    def flow_terms(model, x0, y):
        sigma = training_sigmas(len(x0), density)                                  # (B,)
        noise = torch.randn_like(x0)
        return {"loss": flow_loss(lambda x, t: model(x, t, y), x0, sigma, noise, NUM_TIMESTEPS)}
    train(args, TOY_FLOW, flow_terms, {"objective": "rectified flow (velocity)", "density": density})


if __name__ == "__main__":
    main()
