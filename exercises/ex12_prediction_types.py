"""Exercise 12 — what the network predicts: epsilon, v and the flow velocity (chapter 02_ddpm).

Every sampler in minidit walks a grid of points x = alpha x0 + sigma eps and needs one thing from the
network: its guess of the clean sample x0. DiT and PixArt predict the noise eps, Hunyuan-DiT predicts
v = alpha eps - sigma x0, SD3 predicts the velocity of the straight flow path, v = eps - x0 (there
alpha = 1 - sigma). And SD3 moves its grid towards high noise with a shift. Write both, then check:

    python -m pytest exercises/test_ex12_prediction_types.py
"""
import torch

# The minidit functions this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"predict_x0": "minidit.diffusion:predict_x0", "shift_sigmas": "minidit.flow:shift_sigmas"}


def predict_x0(prediction, x_t, alpha, sigma, prediction_type: str = "epsilon"):
    """The clean sample x0 from the network's `prediction` at a point x_t = alpha x0 + sigma eps.

    prediction_type: "epsilon" | "v_prediction" | "flow" | "sample"; anything else is a ValueError.
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: prediction and x_t have one shape (B, C, H, W); alpha and sigma are numbers or       │
    # │ tensors that broadcast against them, e.g. (B, 1, 1, 1).                                    │
    # │ Solve x_t = alpha x0 + sigma eps for x0, given what the network predicted:                 │
    # │   "epsilon"       the noise eps                                                            │
    # │   "v_prediction"  v = alpha eps - sigma x0   (use alpha^2 + sigma^2 = 1: VP grids)         │
    # │   "flow"          v = eps - x0               (flow grids: alpha = 1 - sigma)               │
    # │   "sample"        x0 itself                                                                │
    # │ Return a tensor of x_t's shape; raise ValueError(...) naming an unknown type.              │
    # │ Read first: chapters/02_ddpm.ipynb, section                                                │
    # │   - One interface: a grid and a prediction type                                            │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("predict_x0")
    # *****END OF YOUR CODE*****


def shift_sigmas(sigma, shift: float):
    """SD3's timestep shift (Esser et al., arXiv:2403.03206, eq. 23): sigma -> a noisier sigma'."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: sigma is a tensor (any shape) in [0, 1], shift > 0 a number.                         │
    # │ The shift multiplies the noise-to-signal ratio of the flow path by `shift`:                │
    # │        sigma' / (1 - sigma') = shift * sigma / (1 - sigma)                                 │
    # │ Solve it for sigma' (a one-line formula that also holds at sigma = 0 and 1).               │
    # │ A shift <= 0 is meaningless: raise ValueError.                                             │
    # │ Read first: chapters/07_flow_matching.ipynb, section                                       │
    # │   - Where to sample: the shift                                                             │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("shift_sigmas")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# predict_x0
# ----------
#     if prediction_type == "epsilon":
#         return (x_t - sigma * prediction) / alpha
#     if prediction_type == "v_prediction":
#         return alpha * x_t - sigma * prediction
#     if prediction_type == "flow":
#         return x_t - sigma * prediction
#     if prediction_type == "sample":
#         return prediction
#     raise ValueError(f"unknown prediction_type {prediction_type!r}")
# Why:
# * epsilon: x_t = alpha x0 + sigma eps is linear in x0; solve it.
# * v_prediction: alpha x_t - sigma v = alpha^2 x0 + alpha sigma eps - sigma alpha eps + sigma^2 x0
#   = (alpha^2 + sigma^2) x0 = x0 on a variance-preserving grid. No division: v stays well behaved at
#   both ends of the grid, which is why Hunyuan-DiT predicts it (eps / alpha blows up as alpha -> 0).
# * flow: with alpha = 1 - sigma, x_t - sigma v = (1 - sigma) x0 + sigma eps - sigma eps + sigma x0 = x0.
# * minidit's own version forms the coefficients (1 / alpha, sigma / alpha, ...) in float64 and rounds
#   them once; the formulas above are the same up to float32 rounding, within the grader's tolerance.
#
# shift_sigmas
# ------------
#     if shift <= 0:
#         raise ValueError(f"shift must be positive, got {shift}")
#     return shift * sigma / (1 + (shift - 1) * sigma)
# Why: write R = shift * sigma / (1 - sigma). sigma' / (1 - sigma') = R gives sigma' = R / (1 + R);
# multiplying the top and the bottom by (1 - sigma): sigma' = shift sigma / ((1 - sigma) + shift sigma)
# = shift sigma / (1 + (shift - 1) sigma). This form has no division by 1 - sigma, so sigma = 1 gives
# 1 and sigma = 0 gives 0 (the ends of the path stay put), and shift = 1 is the identity. A shift > 1
# moves every other point towards noise, where a larger image still has its coarse structure to decide.
