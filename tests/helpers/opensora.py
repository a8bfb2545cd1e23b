"""Open-Sora's official sampling loops, written out from hpcaitech/Open-Sora (no package to import):

* `official_rflow_sample`: v1.2.0 `RFLOW.sample` (`opensora/schedulers/rf/__init__.py`, `rectified_flow.py`):
  t_i = (1 - i/N) T, the timestep transform with ratio sqrt(HW / 512^2) sqrt(F // 17 * 5), z += v dt,
  classifier-free guidance on the doubled batch [cond | null] (the velocity = the first half of the channels).
* `official_iddpm_sample`: v1.0 `IDDPM.sample` (`opensora/schedulers/iddpm/`, guided-diffusion's
  `space_timesteps` / `SpacedDiffusion` / `p_sample`): linear betas 1e-4..0.02, the respaced chain,
  learned-range variance, `forward_with_cfg` (eps guided, v of each half kept), the null half carried
  through the loop (noise drawn for 2B at every step), clip_denoised=False.
"""
import math

import numpy as np
import torch


def official_rflow_sample(model, z, num_steps, height, width, num_frames, guidance_scale=None):
    """model(z, t) -> [x0 - eps | sigma]; with guidance_scale, model(z2, t2) runs on [z, z] whose conditioning
    is arranged [cond | null]. Returns (z_0, the timesteps fed to the model)."""
    T = 1000
    ratio = math.sqrt(height * width / (512 * 512)) * math.sqrt(1 if num_frames == 1 else num_frames // 17 * 5)
    timesteps = [(1.0 - i / num_steps) * T for i in range(num_steps)]
    timesteps = [ratio * (t / T) / (1 + (ratio - 1) * (t / T)) * T for t in timesteps]
    seen = []
    for i, t in enumerate(timesteps):
        seen.append(t)
        if guidance_scale is None:
            v = model(z, torch.full((z.shape[0],), t, dtype=z.dtype)).chunk(2, dim=1)[0]
        else:
            pred = model(torch.cat([z, z]), torch.full((2 * z.shape[0],), t, dtype=z.dtype)).chunk(2, dim=1)[0]
            cond, uncond = pred.chunk(2, dim=0)
            v = uncond + guidance_scale * (cond - uncond)
        dt = (timesteps[i] - timesteps[i + 1] if i < len(timesteps) - 1 else timesteps[i]) / T
        z = z + v * dt
    return z, seen


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """guided-diffusion's space_timesteps with one section: round(i (T - 1) / (count - 1))."""
    stride = (num_timesteps - 1) / (count - 1) if count > 1 else 1
    return sorted({round(i * stride) for i in range(count)})


def official_iddpm_sample(model, z, num_steps, guidance_scale, generator):
    """model(x2, t2) -> [eps | v] on the doubled batch (conditioning [cond | null]). z (B, ...) is the initial
    noise; each step draws torch.randn of the doubled batch from `generator`, as randn_like does from the
    global RNG in the official loop. Returns the first (conditional) half at t = 0."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    ac = np.cumprod(1.0 - betas)
    use = space_timesteps(1000, num_steps)
    new_betas, last = [], 1.0
    for i in use:
        new_betas.append(1 - ac[i] / last)
        last = ac[i]
    b = np.array(new_betas)
    a = np.cumprod(1 - b)
    a_prev = np.append(1.0, a[:-1])
    post_var = b * (1 - a_prev) / (1 - a)
    post_log_var = np.log(np.append(post_var[1], post_var[1:]))
    coef1, coef2 = b * np.sqrt(a_prev) / (1 - a), (1 - a_prev) * np.sqrt(1 - b) / (1 - a)

    def cfg_model(x, t):                               # the official forward_with_cfg
        half = x[: len(x) // 2]
        out = model(torch.cat([half, half]), t)
        C = out.shape[1] // 2
        eps, rest = out[:, :C], out[:, C:]
        cond, uncond = eps.chunk(2)
        half_eps = uncond + guidance_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)

    x = torch.cat([z, z])
    for i in reversed(range(len(use))):
        t = torch.full((x.shape[0],), use[i], dtype=torch.long)
        out = cfg_model(x, t)
        C = x.shape[1]
        eps, v = out[:, :C], out[:, C:]
        frac = (v + 1) / 2
        log_var = frac * math.log(b[i]) + (1 - frac) * post_log_var[i]
        x0 = math.sqrt(1 / a[i]) * x - math.sqrt(1 / a[i] - 1) * eps
        mean = coef1[i] * x0 + coef2[i] * x
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = mean + (float(i != 0)) * torch.exp(0.5 * log_var) * noise
    return x[: len(x) // 2]
