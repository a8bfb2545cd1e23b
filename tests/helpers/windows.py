"""The sliding-window oracle: a network called on each window by hand, merged with hand-written weights
(independent of `minidit/windows.py`: its own loops, its own ramps, float64)."""
import torch


def hand_blend(model_fn, x, t, starts_y, starts_x, n, weight_1d=None):
    """The oracle: the network on each n x n window, merged with separable 1-D weights (default 1)."""
    out = torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=torch.float64)
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    for i, y in enumerate(starts_y):
        for j, x0 in enumerate(starts_x):
            w = torch.ones(n, n, dtype=torch.float64) if weight_1d is None else \
                weight_1d(i, len(starts_y))[:, None] * weight_1d(j, len(starts_x))[None, :]
            piece = model_fn(x[..., y:y + n, x0:x0 + n], t).double()
            if out.shape[1] != piece.shape[1]:
                out = out.expand(-1, piece.shape[1], -1, -1).clone()
            out[..., y:y + n, x0:x0 + n] += piece * w
            total[y:y + n, x0:x0 + n] += w
    return (out / total).float()


def ramp(i, count, n=8, overlap=4):
    """Linear weights of window i of `count` at step 4: up over the overlap on the left, down on the right."""
    k = torch.arange(n, dtype=torch.float64)
    w = torch.ones(n, dtype=torch.float64)
    if i > 0:
        w = torch.minimum(w, (k + 1) / (overlap + 1))
    if i < count - 1:
        w = torch.minimum(w, (n - k) / (overlap + 1))
    return w
