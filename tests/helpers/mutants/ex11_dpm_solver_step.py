"""Wrong DPM-Solver++(2M) steps (exercise 11)."""
import torch

from helpers.mutants import Mutant


def _step(first_order=False, r_inverted=False, plus=False, sigmoid_of_lambda=False, sigma_ratio_inverted=False,
          extrapolate_backwards=False):
    def dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, lambda_prev, lambda_s, lambda_t):
        lp, ls, lt = (torch.as_tensor(v, dtype=torch.float64) for v in (lambda_prev, lambda_s, lambda_t))
        k = 1 if sigmoid_of_lambda else 2
        alpha_t, sigma_t = torch.sigmoid(k * lt).sqrt(), torch.sigmoid(-k * lt).sqrt()
        sigma_s = torch.sigmoid(-k * ls).sqrt()
        h = lt - ls
        r = h / (ls - lp) if r_inverted else (ls - lp) / h
        c = (1 / (2 * r)).float()
        if first_order:
            D = x0_s
        elif extrapolate_backwards:
            D = (1 - c) * x0_s + c * x0_prev
        else:
            D = (1 + c) * x0_s - c * x0_prev
        ratio = (sigma_s / sigma_t if sigma_ratio_inverted else sigma_t / sigma_s).float()
        last = (alpha_t * torch.expm1(-h)).float() * D
        return ratio * x_s + last if plus else ratio * x_s - last
    return dpm_solver_pp_2m_step


MUTANTS = [Mutant(name, {"dpm_solver_pp_2m_step": _step(**{kw: True})}, expect) for name, kw, expect in [
    ("first order", "first_order", "your step is first order"),
    ("r inverted", "r_inverted", "r is inverted"),
    ("sign of the last term", "plus", "the sign of the last term"),
    ("alpha^2 = sigmoid(lambda)", "sigmoid_of_lambda", "alpha^2 = sigmoid(2 lambda)"),
    ("sigma ratio inverted", "sigma_ratio_inverted", "the sigma ratio is inverted"),
    ("extrapolation backwards", "extrapolate_backwards", "the extrapolation goes backwards"),
]]
