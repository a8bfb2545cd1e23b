"""Wrong DDPM training steps (exercise 16)."""
import torch

from helpers.mutants import Mutant
from minidit.diffusion import mean_flat, q_sample, split_output, vb_terms_bpd


def _step(*, t_offset=0, order=("t", "noise", "drop"), keep=False, feed_index=False, no_sqrt=False,
          target_x0=False, all_channels=False, attach_vb=False, no_vb=False, no_force=False, detach_mse=False,
          no_check=False):
    """The reference step with one mistake switched on."""
    def ddpm_training_loss(model, schedule, x0, y, *, p_uncond=0.1, learn_sigma=True, generator=None):
        if not no_check and not 0 <= p_uncond <= 1:
            raise ValueError("p_uncond")
        B = x0.shape[0]
        draws = {}
        for name in order:
            if name == "t":
                draws["t"] = torch.randint(t_offset, schedule.num_steps + t_offset, (B,), generator=generator)
            elif name == "noise":
                draws["noise"] = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            else:
                u = torch.rand(B, generator=generator)
                draws["drop"] = u > p_uncond if keep else u < p_uncond
        t, noise, drop = draws["t"], draws["noise"], draws["drop"]
        ti = t.clamp(max=schedule.num_steps - 1)
        if no_sqrt:
            abar = schedule.alphas_cumprod[ti].reshape(-1, 1, 1, 1)
            x_t = (abar * x0 + (1 - abar) * noise).float()
        else:
            x_t = q_sample(schedule, x0, ti, noise)
        fed = ti if feed_index else schedule.timesteps[ti]
        out = model(x_t, fed, y) if no_force else model(x_t, fed, y, force_drop_ids=drop.long())
        eps, v = split_output(out, x0, learn_sigma)
        target = x0 if target_x0 else noise
        pred = eps.detach() if detach_mse else eps
        mse = mean_flat((torch.cat([target, target], 1) - out) ** 2) if (all_channels and learn_sigma) \
            else mean_flat((target - pred) ** 2)
        terms = {"mse": mse, "t": t, "drop": drop}
        if learn_sigma:
            frozen = torch.cat([eps if attach_vb else eps.detach(), v], 1)
            terms["vb"] = vb_terms_bpd(schedule, frozen, x0, x_t, ti)
            terms["loss"] = mse if no_vb else mse + terms["vb"]
        else:
            terms["loss"] = mse
        return terms
    return ddpm_training_loss


def M(name, expect, **mistake):
    return Mutant(name, {"ddpm_training_loss": _step(**mistake)}, expect)


MUTANTS = [
    M("t drawn from 1..T", "randint's upper bound is exclusive", t_offset=1),
    M("noise drawn before t", "draw t, then the noise", order=("noise", "t", "drop")),
    M("drop mask drawn first", "draw t, then the noise", order=("drop", "t", "noise")),
    M("labels kept with probability p", "drop mask is inverted", keep=True),
    M("drop mask not given to the model", "the model did not get your drop mask", no_force=True),
    M("model fed the step index", "schedule.timesteps[t]", feed_index=True),
    M("x_t without square roots", "the square roots are missing", no_sqrt=True),
    M("x0 as the target", "the target is the noise", target_x0=True),
    M("mse over the variance channels too", "only the first C channels", all_channels=True),
    M("vb left out", "you left out the VLB term", no_vb=True),
    M("vb trains eps", "vb sends gradient into eps", attach_vb=True),
    M("eps detached in the mse", "the mse sends no gradient into eps", detach_mse=True),
    M("bad probability accepted", "expected a ValueError", no_check=True),
]
