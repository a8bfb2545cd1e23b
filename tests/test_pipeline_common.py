"""minidit/pipelines/common.py: noise, guidance, staged encoders, prompt records, the output tail."""
import pytest
import torch

from minidit.dit import DiT, DiTConfig
from minidit.pipelines.common import (PromptEmbeds, Staged, check_output_type, guided_model_fn, initial_noise,
                                      to_output)

from helpers import EXACT, assert_parity, require

diffusers = require("diffusers")


def test_initial_noise_is_diffusers_randn_tensor():
    from diffusers.utils.torch_utils import randn_tensor
    shape = (2, 4, 3, 5)
    ours = initial_noise(shape, torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(ours, randn_tensor(shape, generator=torch.Generator().manual_seed(3), device=torch.device("cpu")))
    torch.manual_seed(9)                                   # no generator: the global RNG, as the official scripts
    ours = initial_noise(shape, None, "cpu")
    torch.manual_seed(9)
    assert torch.equal(ours, torch.randn(shape))


def test_guided_model_fn_is_classifier_free_guidance():
    calls = []
    weight = torch.randn(6, 3)

    def forward(x2, t2):                                   # a stand-in network: 6 output channels from 3
        calls.append((x2.clone(), t2.clone()))
        out = torch.einsum("oc,bchw->bohw", weight, x2)
        return out + t2.float().reshape(-1, 1, 1, 1) * torch.arange(len(x2)).float().reshape(-1, 1, 1, 1)
    x, t, s = torch.randn(2, 3, 4, 4), torch.tensor([5, 7]), 3.5
    out = guided_model_fn(forward, s)(x, t)
    x2, t2 = calls[0]
    assert len(calls) == 1 and torch.equal(x2, torch.cat([x, x])) and torch.equal(t2, torch.cat([t, t]))
    full = forward(x2, t2)
    cond, uncond = full[:2], full[2:]
    # the prediction (3 = x's channels) is guided, the rest (a learned variance) is the conditional half's
    torch.testing.assert_close(out[:, :3], uncond[:, :3] + s * (cond[:, :3] - uncond[:, :3]))
    torch.testing.assert_close(out[:, 3:], cond[:, 3:])
    out = guided_model_fn(forward, s, uncond_first=True)(x, t)      # [uncond | cond], diffusers' text pipelines
    torch.testing.assert_close(out[:, :3], cond[:, :3] + s * (uncond[:, :3] - cond[:, :3]))
    torch.testing.assert_close(out[:, 3:], uncond[:, 3:])
    out = guided_model_fn(forward, s, guided_channels=2)(x, t)      # DiT's official "first 3 of 4" rule, here 2 of 3
    torch.testing.assert_close(out[:, 2:], cond[:, 2:])


def test_guided_model_fn_reproduces_dit_forward_with_cfg():
    """DiT.forward_with_cfg is the official code's own guided forward; both conventions give its first half."""
    model = DiT(DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    y = torch.tensor([3, 7, 1000, 1000])
    with torch.no_grad():
        for channels in (3, None):
            official = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), y, 4.0, channels)[:2]
            ours = guided_model_fn(lambda x2, t2: model(x2, t2, y), 4.0, guided_channels=channels)(x, t)
            assert_parity(ours, official, what=f"guided_model_fn vs forward_with_cfg, cfg_channels={channels}")


def test_staged_component_lifetime():
    loads = []

    def loader():
        loads.append(1)
        return torch.nn.Linear(2, 2)
    staged = Staged(loader=loader, keep=False)
    assert staged.module is None
    with staged.use() as m:
        assert isinstance(m, torch.nn.Linear) and staged.module is m
    assert staged.module is None and staged.last_load_seconds >= 0      # freed after its stage
    with staged.use():
        pass
    assert len(loads) == 2                                              # loaded again for the next stage
    kept = Staged(loader=loader, keep=True)
    with kept.use():
        pass
    with kept.use():
        pass
    assert kept.module is not None and len(loads) == 3
    handed = Staged(torch.nn.Linear(1, 1), keep=False)                  # no loader: a handed-in module is kept
    with handed.use():
        pass
    assert handed.module is not None
    with pytest.raises(ValueError, match="loader"):
        Staged()
    with pytest.raises(RuntimeError):                                   # freed even when the stage fails
        with staged.use():
            raise RuntimeError("boom")
    assert staged.module is None


def test_prompt_embeds_batching_and_repeat():
    e = PromptEmbeds(torch.ones(2, 3, 4), torch.ones(2, 3), torch.ones(2, 5),
                     uncond=torch.zeros(2, 3, 4), uncond_mask=torch.zeros(2, 3), uncond_pooled=torch.zeros(2, 5))
    states, mask, pooled = e.batched()
    assert states.shape == (4, 3, 4) and states[:2].eq(1).all() and states[2:].eq(0).all()
    states, mask, pooled = e.batched(uncond_first=True)
    assert states[:2].eq(0).all() and mask[2:].eq(1).all() and pooled[:2].eq(0).all()
    r = PromptEmbeds(torch.arange(2.0).reshape(2, 1, 1)).repeat(3)
    assert r.cond.flatten().tolist() == [0, 0, 0, 1, 1, 1] and r.cond_mask is None and not r.guided
    assert r.batched() == (r.cond, None, None)


def test_output_tail_is_diffusers_image_processor():
    from diffusers.image_processor import VaeImageProcessor
    image = torch.rand(2, 3, 8, 6) * 2.4 - 1.2                         # decoded images overshoot [-1, 1]
    proc = VaeImageProcessor()
    assert_parity(torch.from_numpy(to_output(image, "np")), torch.from_numpy(proc.postprocess(image, output_type="np")),
                  tol=EXACT, what="np output vs VaeImageProcessor")
    assert_parity(to_output(image, "pt"), proc.postprocess(image, output_type="pt"), tol=EXACT,
                  what="pt output vs VaeImageProcessor")
    pil = to_output(image, "pil")
    assert len(pil) == 2 and pil[0].size == (6, 8)
    for bad in ("numpy", "PIL", None):
        with pytest.raises(ValueError, match="output_type"):
            check_output_type(bad)
