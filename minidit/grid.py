"""Where a sampler evaluates the model: one grid type and the spacing functions that build it.

A sampler with N model calls walks through N + 1 points. At point i the sample is

    x_i = alpha_i x_0 + sigma_i eps

and the network is fed `timesteps[i]` (the training timestep that point stands for). Every family
fits this one description:

    DDPM / DDIM (DiT, the toy)   VP: alpha^2 = a_bar[t], sigma^2 = 1 - a_bar[t] at the kept training
                                 steps; the end point is the data (alpha 1, sigma 0)
    DPM-Solver++ (PixArt)        the same, on diffusers' grid, or the official continuous-time grid
    rectified flow (SD3, video)  alpha = 1 - sigma, sigma from the shifted flow grid, model fed sigma*1000
                                 (the official SD3.5 samplers, k-diffusion's: the same points with alpha = 1)

Spacing functions (all in this file):
    "iddpm"         IDDPM's `space_timesteps` (DiT's official "250"), ends included
    "leading", "trailing", "linspace"
                    diffusers' `set_timesteps` (DDPMScheduler / DDIMScheduler, and with N + 1 points
                    for DPMSolverMultistepScheduler: `multistep=True`), with `steps_offset`
    "time_uniform"  the official PixArt DPM-Solver grid (continuous time, fractional timesteps)
    "flow"          the shifted rectified-flow grid of SD3 / FlowMatchEulerDiscreteScheduler
                    (static or dynamic shift), alpha = 1 - sigma
    "flow_opensora" Open-Sora 1.2's rflow sampler: t_i = 1 - i/N (i < N, ending at 1/N, not 1/T), each
                    shifted by `flow.opensora_shift` (its `use_timestep_transform`), then 0
    "flow_k_diffusion"
                    the same points as SD3.5's official sampler sees them: its `sample_euler` and
                    `sample_dpmpp_2m` are k-diffusion's, which treat x as x0 + sigma eps (alpha = 1).
                    Euler and first-order steps are the same on both; DPM-Solver++(2M) is not (its
                    second-order term is linear in lambda, and lambda = -log sigma here,
                    log((1 - sigma) / sigma) on "flow")

Everything is float64; samplers cast to the sample's dtype when they use a number.

Shape legend: N sampler steps (model calls), T training timesteps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .diffusion import Schedule, space_timesteps
from .flow import TIME_SHIFT_TYPES, shift_sigmas, time_shift

SPACINGS = ("iddpm", "leading", "trailing", "linspace", "time_uniform", "flow", "flow_k_diffusion", "flow_opensora")


@dataclass(frozen=True)
class Grid:
    """The N + 1 points of a sampling run (float64): step i goes from point i to point i + 1.

    timesteps (N,): what model_fn receives at point i (integer-valued for discrete grids);
    alphas, sigmas (N+1,): x = alpha x0 + sigma eps at every point, the last being the end point
    (the model is never evaluated there).
    """
    timesteps: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor

    def __post_init__(self):
        N = len(self.timesteps)
        if self.alphas.shape != (N + 1,) or self.sigmas.shape != (N + 1,):
            raise ValueError(f"a grid of {N} steps needs {N + 1} alphas and sigmas, got "
                             f"{tuple(self.alphas.shape)} and {tuple(self.sigmas.shape)}")

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def lambdas(self) -> torch.Tensor:
        """lambda = log(alpha / sigma), half the log-SNR; +inf where sigma = 0."""
        return torch.log(self.alphas) - torch.log(self.sigmas)

    def model_timesteps(self, i: int, batch: int, device) -> torch.Tensor:
        """timesteps[i] for a batch, (B,): int64 if it is a whole number, else float32."""
        t = self.timesteps[i].item()
        dtype = torch.long if float(t).is_integer() else torch.float32
        return torch.full((batch,), t, dtype=dtype, device=device)

    def to_schedule(self) -> Schedule:
        """The respaced DDPM chain through these points, for the ancestral samplers (DDPM, DDIM).

        Needs a VP grid (alpha^2 + sigma^2 = 1) that ends at the data (sigma = 0): then
        beta'_i = 1 - a_bar_i / a_bar_{i-1} between neighbouring points, as `diffusion.respace`."""
        if self.sigmas[-1] != 0 or not torch.allclose(self.alphas**2 + self.sigmas**2,
                                                     torch.ones_like(self.alphas), rtol=0, atol=1e-12):
            raise ValueError("DDPM and DDIM need a variance-preserving grid that ends at sigma = 0 "
                             "(a discrete DDPM grid), not a flow or time-uniform grid")
        abar = (self.alphas[:-1] ** 2).flip(0)                                     # ascending t
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        return Schedule(betas=1.0 - abar / abar_prev, timesteps=self.timesteps.flip(0).long())

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> "Grid":
        """The grid of a (respaced) DDPM `Schedule`: its steps from the last to the first, then x_0."""
        abar = schedule.alphas_cumprod.flip(0)                                     # descending t
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        return cls(schedule.timesteps.flip(0).to(torch.float64),
                   torch.cat([abar.sqrt(), one]), torch.cat([(1 - abar).sqrt(), zero]))


def discrete_grid(alphas_cumprod, timesteps) -> Grid:
    """The VP grid through the training steps `timesteps` (any order: visited from the largest),
    ending at the data (sigma = 0)."""
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    t = torch.as_tensor(sorted({int(s) for s in timesteps}, reverse=True), dtype=torch.long)
    if len(t) == 0 or t[-1] < 0 or t[0] >= len(abar):
        raise ValueError(f"timesteps must lie in [0, {len(abar)}), got {t.tolist()[:3]}...{t.tolist()[-3:]}")
    a = abar[t]
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return Grid(t.to(torch.float64), torch.cat([a.sqrt(), one]), torch.cat([(1 - a).sqrt(), zero]))


def training_timesteps(num_train_timesteps: int, num_steps: int, spacing: str, steps_offset: int = 0,
                       multistep: bool = False) -> list[int]:
    """The training steps a discrete sampler visits, ascending.

    "iddpm": `space_timesteps(T, [N])`. "leading" / "trailing" / "linspace": diffusers'
    `set_timesteps`; `multistep=True` is DPMSolverMultistepScheduler's variant, which spaces N + 1
    points and drops the last ("leading", "linspace")."""
    T, N = num_train_timesteps, num_steps
    if not 1 <= N <= T or (multistep and N == T):
        raise ValueError(f"num_steps must be in 1..{T - 1 if multistep else T}, got {N}")
    if spacing == "iddpm":
        return space_timesteps(T, [N])
    n = N + 1 if multistep else N
    if spacing == "leading":
        steps = (torch.arange(n) * (T // n)).flip(0)[:N] if multistep else torch.arange(N) * (T // N)
        steps = steps.sort().values + steps_offset
    elif spacing == "trailing":
        steps = torch.arange(T, 0, -T / N, dtype=torch.float64).round().long().flip(0) - 1
    elif spacing == "linspace":
        steps = torch.linspace(0, T - 1, n, dtype=torch.float64).round().long()
        steps = steps[1:] if multistep else steps       # multistep: the N+1 points without the first (0)
    else:
        raise ValueError(f"unknown spacing {spacing!r}: iddpm, leading, trailing or linspace")
    steps = steps.tolist()
    if steps[-1] >= T or steps[0] < 0 or len(set(steps)) != len(steps):
        raise ValueError(f"{spacing!r} spacing with {N} steps and offset {steps_offset} gives invalid "
                         f"timesteps {steps[:3]}...{steps[-3:]}")
    return steps


def time_uniform_grid(alphas_cumprod, num_steps: int) -> Grid:
    """The official PixArt sampler's grid (`DPMS`, NoiseScheduleVP('discrete')): continuous time
    s = linspace(1, 1/T, N+1); discrete step n sits at s = (n+1)/T and log(alpha) is linear in s
    between them; the model gets the fractional (s - 1/T) * T; the end point is step 0
    (sigma_0 = sqrt(beta_0) = 0.01), not sigma = 0."""
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    T = len(abar)
    if not 1 <= num_steps < T:
        raise ValueError(f"num_steps must be in [1, {T}), got {num_steps}")
    s = torch.linspace(1.0, 1.0 / T, num_steps + 1, dtype=torch.float64)                     # (N+1,)
    log_alpha = 0.5 * torch.log(abar)                                                       # at s = (n+1)/T
    pos = s * T - 1                                                                         # fractional n
    lo = pos.floor().clamp(0, T - 2).long()
    frac = pos - lo
    la = (1 - frac) * log_alpha[lo] + frac * log_alpha[lo + 1]
    return Grid((s[:-1] - 1.0 / T) * T, la.exp(), (1 - (2 * la).exp()).sqrt())


def flow_sigmas(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000, *, mu: float | None = None,
                time_shift_type: str = "exponential") -> torch.Tensor:
    """The N + 1 noise levels of SD3's official sampler and diffusers' FlowMatchEulerDiscreteScheduler,
    from sigma = 1 down to 0 (float64).

    Static shift (mu None): N points evenly spaced from sigma_max = 1 to sigma_min = shift(1/T), the
    smallest *shifted* training sigma, then every point shifted (so the low end is shifted twice, in
    both codes); then 0. Dynamic shift (diffusers' `use_dynamic_shifting`; `flow.DynamicShift.mu`):
    N points from 1 to 1/T (unshifted), then `flow.time_shift(mu, ., time_shift_type)`; then 0."""
    T = num_train_timesteps
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if mu is None:
        t = torch.linspace(1.0, shift_sigmas(1.0 / T, shift), num_steps, dtype=torch.float64)     # (N,)
        sigmas = shift_sigmas(t, shift)
    else:
        if shift != 1.0:
            raise ValueError(f"give a static shift or a dynamic mu, not both (shift={shift}, mu={mu}); diffusers "
                             "ignores `shift` when use_dynamic_shifting is on")
        if time_shift_type not in TIME_SHIFT_TYPES:
            raise ValueError(f"unknown time_shift_type {time_shift_type!r}: one of {', '.join(TIME_SHIFT_TYPES)}")
        sigmas = time_shift(mu, torch.linspace(1.0, 1.0 / T, num_steps, dtype=torch.float64), time_shift_type)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])                             # (N+1,)


def flow_grid(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000, *, mu: float | None = None,
              time_shift_type: str = "exponential", k_diffusion: bool = False) -> Grid:
    """The rectified-flow grid on `flow_sigmas` (static `shift`, or dynamic `mu`); the model is fed
    sigma * T. alpha = 1 - sigma (the path itself; diffusers' schedulers), or, with `k_diffusion`,
    alpha = 1 at every point: how SD3.5's official `sample_euler` / `sample_dpmpp_2m` (copied from
    k-diffusion) see the same points (spacing "flow_k_diffusion")."""
    sigmas = flow_sigmas(num_steps, shift, num_train_timesteps, mu=mu, time_shift_type=time_shift_type)
    alphas = torch.ones_like(sigmas) if k_diffusion else 1.0 - sigmas
    return Grid(sigmas[:-1] * num_train_timesteps, alphas, sigmas)


def opensora_flow_grid(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000) -> Grid:
    """Open-Sora 1.2's `RFLOW.sample` points: t_i = shift_sigmas(1 - i/N, shift) for i = 0..N-1, then 0;
    the model is fed t_i * T (float) and each Euler step spans t_i - t_{i+1}. alpha = 1 - sigma.
    `shift` is `flow.opensora_shift(height, width, num_frames)` with use_timestep_transform, else 1."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    t = 1.0 - torch.arange(num_steps, dtype=torch.float64) / num_steps                          # (N,)
    sigmas = torch.cat([shift_sigmas(t, shift), torch.zeros(1, dtype=torch.float64)])          # (N+1,)
    return Grid(sigmas[:-1] * num_train_timesteps, 1.0 - sigmas, sigmas)
