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
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x_s, x0_s, x0_prev are tensors of one shape; the lambdas are floats (or 0-d     │
    # │ tensors), finite, lambda_prev < lambda_s < lambda_t (the noise level goes down).      │
    # │ 1. The schedule is variance preserving (alpha^2 + sigma^2 = 1), so lambda fixes both: │
    # │        alpha^2 = sigmoid(2 lambda),   sigma^2 = sigmoid(-2 lambda)                    │
    # │    -> alpha_t, sigma_t, sigma_s      (torch.sigmoid on torch.as_tensor(lambda))       │
    # │ 2. h = lambda_t - lambda_s (the step),  r = (lambda_s - lambda_prev) / h              │
    # │ 3. D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev      x0 extrapolated to the step's middle   │
    # │ 4. x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D     (torch.expm1(-h) is     │
    # │    e^{-h} - 1, accurately for small h)                         -> same shape as x_s   │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("dpm_solver_pp_2m_step")
    # *****END OF YOUR CODE*****
