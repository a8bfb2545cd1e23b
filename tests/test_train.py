"""minidit.train: the DDPM training step, and DiT's force_drop_ids (who decides which labels drop).

The step's values are graded against the formulas by exercises/test_ex16_ddpm_training_step.py
(run on minidit's reference in CI by tests/test_exercises.py); here: the label-dropout contract."""
import pytest
import torch

from minidit.diffusion import get_beta_schedule, make_schedule
from minidit.dit import DiT, DiTConfig
from minidit.train import ddpm_training_loss

CFG = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=32, depth=1, num_heads=2,
                num_classes=10, class_dropout_prob=0.1, learn_sigma=True)


def _model():
    torch.manual_seed(0)
    model = DiT(CFG)
    with torch.no_grad():                   # adaLN-Zero starts at zero output: make the labels matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_force_drop_ids_decides_in_train_mode():
    model = _model()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([1, 200, 500, 999]), torch.tensor([3, 1, 4, 1])
    eval_out = model.eval()(x, t, y)
    null_out = model(x, t, torch.full_like(y, CFG.num_classes))
    model.train()
    torch.testing.assert_close(model(x, t, y, force_drop_ids=torch.zeros(4, dtype=torch.long)), eval_out)
    mixed = model(x, t, y, force_drop_ids=torch.tensor([1, 0, 1, 0]))
    torch.testing.assert_close(mixed[[0, 2]], null_out[[0, 2]])
    torch.testing.assert_close(mixed[[1, 3]], eval_out[[1, 3]])
    assert not torch.allclose(null_out, eval_out)


def test_step_drops_exactly_the_labels_of_its_mask():
    model = _model().train()
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    seen = []
    model.y_embedder.register_forward_hook(lambda m, args, out: seen.append(args))
    x0, y = torch.rand(64, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (64,))
    terms = ddpm_training_loss(model, schedule, x0, y, p_uncond=0.25, generator=torch.Generator().manual_seed(0))
    labels, train, force = seen[-1]
    assert train and torch.equal(force.bool(), terms["drop"])
    assert 0 < terms["drop"].sum() < 64
    assert set(terms) == {"loss", "mse", "vb", "t", "drop"}
    again = ddpm_training_loss(model, schedule, x0, y, p_uncond=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["loss"], terms["loss"])          # seeded: the same draws, the same loss


@pytest.mark.parametrize("p", [-0.01, 1.01])
def test_step_rejects_a_bad_probability(p):
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    with pytest.raises(ValueError, match="probability"):
        ddpm_training_loss(_model(), schedule, torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), p_uncond=p)
