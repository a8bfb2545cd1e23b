"""Exercise 11 — one DPM-Solver++(2M) step (chapter 06_pixart).

PixArt samples in 20 steps with DPM-Solver++(2M) (Lu et al., arXiv:2211.01095, Algorithm 2). In
lambda = log(alpha / sigma) the diffusion ODE for the data prediction x0 has an exact solution
with an integral of e^lambda x0(lambda); the solver extrapolates x0 linearly in lambda from the
current and the previous model call and integrates that exactly. Write one step, then check:

    python -m pytest exercises/test_ex11_dpm_solver_step.py
"""
import torch

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"dpm_solver_pp_2m_step": "minidit.samplers:dpm_solver_pp_2m_step"}


def dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, lambda_prev, lambda_s, lambda_t):
    """One DPM-Solver++(2M) step (paper Algorithm 2) from lambda_s to lambda_t, using the data
    predictions at lambda_s (x0_s) and at the previous point lambda_prev < lambda_s (x0_prev):

        h = lambda_t - lambda_s,  r = (lambda_s - lambda_prev) / h
        D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev
        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x_s, x0_s, x0_prev are tensors of one shape; the lambdas are floats (or 0-d          │
    # │ tensors), finite, lambda_prev < lambda_s < lambda_t (the noise level goes down).           │
    # │   1. alpha_t, sigma_t and sigma_s from the lambdas. The schedule is variance preserving,   │
    # │      alpha^2 + sigma^2 = 1, so together with lambda = log(alpha / sigma) one lambda fixes  │
    # │      both: solve the two equations for alpha^2 and sigma^2.                                │
    # │   2. h, r, D and x_t as in the docstring                     -> same shape as x_s          │
    # │ Mind e^{-h} - 1 for a small h: written that way it loses digits (torch has a function      │
    # │ that computes it accurately).                                                              │
    # │ Read first: chapters/07_flow_matching.ipynb, sections                                      │
    # │   - Straight and curved paths                                                              │
    # │   - Solvers on the flow: Euler and DPM-Solver++                                            │
    # │ and chapters/02_ddpm.ipynb, section                                                        │
    # │   - One interface: a grid and a prediction type                                            │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("dpm_solver_pp_2m_step")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# dpm_solver_pp_2m_step
# ---------------------
#     lam_prev, lam_s, lam_t = (torch.as_tensor(v, dtype=torch.float64)
#                               for v in (lambda_prev, lambda_s, lambda_t))
#     alpha_t, sigma_t = torch.sigmoid(2 * lam_t).sqrt(), torch.sigmoid(-2 * lam_t).sqrt()
#     sigma_s = torch.sigmoid(-2 * lam_s).sqrt()
#     h = lam_t - lam_s
#     r = (lam_s - lam_prev) / h
#     D = (1 + 1 / (2 * r)) * x0_s - 1 / (2 * r) * x0_prev
#     return (sigma_t / sigma_s) * x_s - alpha_t * torch.expm1(-h) * D
# Why:
# * alpha / sigma = e^lambda, so alpha^2 = e^(2 lambda) sigma^2 = e^(2 lambda) (1 - alpha^2), i.e.
#   alpha^2 = e^(2 lambda) / (1 + e^(2 lambda)) = sigmoid(2 lambda), and sigma^2 = sigmoid(-2 lambda).
#   The scalars are kept in float64 (0-d tensors): multiplying a float32 tensor by a 0-d float64 tensor
#   still gives float32, so only the coefficients are more precise.
# * the exact solution of the ODE from lambda_s to lambda_t is
#       x_t = (sigma_t / sigma_s) x_s + sigma_t * integral of e^lambda x0(lambda) d lambda,
#   and with x0 constant (= D) over the step the second term is sigma_t (e^lambda_t - e^lambda_s) D
#   = alpha_t (1 - e^-h) D = -alpha_t (e^-h - 1) D. With D = x0_s that is the first-order step (DDIM).
# * 2M improves on it with a line through the two last data predictions: the slope in lambda is
#   (x0_s - x0_prev) / (lambda_s - lambda_prev), and D is the line's value in the middle of the step,
#   lambda_s + h / 2: x0_s + (x0_s - x0_prev) / (2 r). r is the previous step measured in this one.
# * torch.expm1(-h) computes e^-h - 1 without the cancellation of torch.exp(-h) - 1 for a small h.
