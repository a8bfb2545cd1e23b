"""SD3.5's official sampling (Stability-AI/sd3.5 `sd3_impls.py`, `sd3_infer.py`), written out as the
oracle of tests/test_flow.py and tests/test_pipeline_sd3.py. k-diffusion itself is not importable here
(its package __init__ needs torchvision, scikit-image, clean-fid, CLIP and more), so the loops are
written out from that source: the Karras-style denoiser interface (the model is a function of
(x, sigma) returning the denoised x0 = x - sigma v). They are the oracle's text, not minidit's code.
"""
import torch


def official_sigmas(steps: int, shift: float) -> torch.Tensor:
    """ModelSamplingDiscreteFlow(shift).sigmas (shift(t / 1000), t = 1..1000) and SD3.get_sigmas."""
    def sigma(timestep):
        timestep = timestep / 1000.0
        return timestep if shift == 1.0 else shift * timestep / (1 + (shift - 1) * timestep)
    table = sigma(torch.arange(1, 1000 + 1, 1))
    start, end = table[-1] * 1000, table[0] * 1000                     # timestep(sigma_max), timestep(sigma_min)
    timesteps = torch.linspace(start, end, steps)
    return torch.FloatTensor([sigma(ts) for ts in timesteps] + [0.0])


def official_denoiser(velocity_fn):
    """BaseModel.apply_model: the network sees timestep = 1000 sigma; calculate_denoised: x - v sigma."""
    def model(x, sigma):
        return x - velocity_fn(x, sigma * 1000) * sigma.reshape(-1, *[1] * (x.dim() - 1))
    return model


def official_sample_euler(model, x, sigmas, trace):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat * s_in)
        d = (x - denoised) / sigma_hat                                  # to_d
        x = x + d * (sigmas[i + 1] - sigma_hat)
        trace.append(x)
    return x


def official_sample_dpmpp_2m(model, x, sigmas, trace):
    s_in = x.new_ones([x.shape[0]])
    sigma_fn = lambda t: t.neg().exp()                                  # noqa: E731
    t_fn = lambda sigma: sigma.log().neg()                              # noqa: E731
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
        trace.append(x)
    return x


def official_cfg_denoiser(model, cond, uncond, cond_scale):
    """CFGDenoiser: one batched apply_model on [cond | uncond], then neg + (pos - neg) * cond_scale on
    the denoised x0. `model(x, sigma, context, y)` is BaseModel.apply_model; cond/uncond = (context, y)."""
    def denoiser(x, sigma):
        batched = model(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond[0], uncond[0]]),
                        torch.cat([cond[1], uncond[1]]))
        pos_out, neg_out = batched.chunk(2)
        return neg_out + (pos_out - neg_out) * cond_scale
    return denoiser


def official_skip_layer_cfg_denoiser(model, cond, uncond, cond_scale, steps, slg):
    """SkipLayerCFGDenoiser: CFG as above, then, for start * steps < step < end * steps, one more
    conditional call with `slg["layers"]` skipped: scaled += (pos_out - skip_layer_out) * slg["scale"]."""
    state = {"step": 0}

    def denoiser(x, sigma):
        batched = model(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond[0], uncond[0]]),
                        torch.cat([cond[1], uncond[1]]))
        pos_out, neg_out = batched.chunk(2)
        scaled = neg_out + (pos_out - neg_out) * cond_scale
        if slg["scale"] > 0 and state["step"] > slg["start"] * steps and state["step"] < slg["end"] * steps:
            skip_layer_out = model(x, sigma, cond[0], cond[1], skip_layers=slg["layers"])
            scaled = scaled + (pos_out - skip_layer_out) * slg["scale"]
        state["step"] += 1
        return scaled
    return denoiser
