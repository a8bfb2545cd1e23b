"""Grader for exercise 17: python -m pytest exercises/test_ex17_spacetime_patches.py"""
import torch

from exercises._grading import EXACT, FP32, check_close, check_raises, check_shape, load

ex = load("ex17_spacetime_patches")

# Every size different, so that a mix-up of two axes changes the values (or the shape).
B, C, PATCH = 2, 3, (2, 3, 2)                    # tubelet pt x ph x pw
GRID = (2, 2, 3)                                 # token grid F x H x W
F_, S_, D_ = 3, 4, 5                             # the reshapes: 3 frames of 4 tokens, width 5


def _blocks(x, patch=PATCH):
    (pt, ph, pw), (F, H, W) = patch, GRID
    return x.reshape(x.shape[0], x.shape[1], F, pt, H, ph, W, pw)   # (B, C, F, pt, H, ph, W, pw)


def _tokens(x, *order):
    """patchify3d with another permute of (B, C, F, pt, H, ph, W, pw): what a wrong solution gives."""
    return _blocks(x).permute(0, *order).reshape(x.shape[0], -1, C * PATCH[0] * PATCH[1] * PATCH[2])


def test_patchify3d_shape():
    x = torch.randn(B, C, 4, 6, 6)
    check_shape(ex.patchify3d(x, PATCH), (B, 12, 36), "patchify3d(x of shape (2, 3, 4, 6, 6), patch (2, 3, 2))")
    check_shape(ex.patchify3d(torch.randn(1, 4, 4, 4, 8), 2), (1, 16, 32),
                "patchify3d(x of shape (1, 4, 4, 4, 8), patch 2) (an int is the same size on every axis)")


def test_patchify3d_equals_the_strided_conv3d():
    # Open-Sora's PatchEmbed3D is a Conv3d with kernel = stride = the tubelet, flattened T-H-W:
    # patchify3d + a matmul with the flattened weight must reproduce it.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, 4, 6, 6, generator=g)
    conv = torch.nn.Conv3d(C, 7, kernel_size=PATCH, stride=PATCH)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        expected = conv(x).flatten(2).transpose(1, 2)                       # (B, N, D), T-H-W
        W_, b_ = conv.weight.flatten(1).T, conv.bias

        def embed(tokens):
            return tokens @ W_ + b_
        mistakes = {
            "Your tokens are not frame-major: the frame f must be the OUTER grid index (T-H-W order, token "
            "(f*H + i)*W + j), as Conv3d(...).flatten(2) orders them; permute the grid to (B, F, H, W, ...).":
                embed(_tokens(x, 4, 6, 2, 1, 3, 5, 7)),
            "Your tokens go column by column inside a frame: the rows and columns of the grid (H and W) are "
            "swapped. Tokens are row-major within each frame.": embed(_tokens(x, 2, 6, 4, 1, 3, 5, 7)),
            "Each token is ordered (dt, di, dj, c), channels last; patchify3d's token is ordered "
            "(c, dt, di, dj), the order of the Conv3d weight's (C, pt, ph, pw) dims.":
                embed(_tokens(x, 2, 4, 6, 3, 5, 7, 1)),
            "Inside each tubelet the offsets are in the wrong order: the token is ordered (c, dt, di, dj), "
            "time first, then row, then column, as the Conv3d weight's (C, pt, ph, pw) dims.":
                embed(_tokens(x, 2, 4, 6, 1, 5, 7, 3)),
            "Inside each tubelet the row and column offsets (di, dj) are swapped: the token is ordered "
            "(c, dt, di, dj).": embed(_tokens(x, 2, 4, 6, 1, 3, 7, 5)),
        }
        got = embed(ex.patchify3d(x, PATCH))
    check_close(got, expected, "patchify3d(x, (2, 3, 2)) @ W.T + b vs the strided Conv3d", tol=FP32,
                mistakes=mistakes)


def test_patchify3d_by_hand():
    # Pixel (c, t, y, x) holds 1000*c + 100*t + 10*y + x: token (f, i, j), entry (c, dt, di, dj) must hold
    # 1000*c + 100*(f*pt + dt) + 10*(i*ph + di) + (j*pw + dj).
    (pt, ph, pw), (F, H, W) = PATCH, GRID
    c, t, y, x_ = torch.meshgrid(torch.arange(C), torch.arange(F * pt), torch.arange(H * ph), torch.arange(W * pw),
                                 indexing="ij")
    clip = (1000 * c + 100 * t + 10 * y + x_).double()[None]               # (1, C, F0, H0, W0)
    expected = torch.zeros(1, F * H * W, C * pt * ph * pw, dtype=torch.float64)
    for f in range(F):
        for i in range(H):
            for j in range(W):
                n = (f * H + i) * W + j
                for cc in range(C):
                    for dt in range(pt):
                        for di in range(ph):
                            for dj in range(pw):
                                k = ((cc * pt + dt) * ph + di) * pw + dj
                                expected[0, n, k] = 1000 * cc + 100 * (f * pt + dt) + 10 * (i * ph + di) + j * pw + dj
    check_close(ex.patchify3d(clip, PATCH), expected, "patchify3d of a clip whose pixel (c, t, y, x) holds "
                "1000*c + 100*t + 10*y + x", tol=EXACT,
                mistakes={"Your tokens are not frame-major: the frame f must be the OUTER grid index (T-H-W order).":
                          _tokens(clip, 4, 6, 2, 1, 3, 5, 7)})


def test_patchify3d_with_one_frame_per_tubelet_is_the_2d_patchify_per_frame():
    # STDiT's tubelet is (1, 2, 2): each frame is patchified on its own, frame after frame.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, C, 3, 4, 6, generator=g)
    per_frame = [x[:, :, f].reshape(B, C, 2, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, 6, C * 4)
                 for f in range(3)]
    check_close(ex.patchify3d(x, (1, 2, 2)), torch.cat(per_frame, dim=1),
                "patchify3d(x, (1, 2, 2)) vs the 2-D patchify of each frame, frames concatenated", tol=EXACT)


def test_patchify3d_rejects_bad_sizes():
    check_raises(ValueError, lambda: ex.patchify3d(torch.randn(1, 3, 5, 6, 6), (2, 3, 2)),
                 "patchify3d(x of shape (1, 3, 5, 6, 6), patch (2, 3, 2)): 5 frames is not divisible by pt = 2")
    check_raises(ValueError, lambda: ex.patchify3d(torch.randn(1, 3, 4, 7, 6), (2, 3, 2)),
                 "patchify3d(x of shape (1, 3, 4, 7, 6), patch (2, 3, 2)): H0 = 7 is not divisible by ph = 3")
    check_raises(ValueError, lambda: ex.patchify3d(torch.randn(1, 3, 4, 6, 5), (2, 3, 2)),
                 "patchify3d(x of shape (1, 3, 4, 6, 5), patch (2, 3, 2)): W0 = 5 is not divisible by pw = 2")


def _labelled(b=B, F=F_, S=S_, D=D_):
    """Tokens (b, F*S, D) in T-H-W order whose token f*S + s of clip bb holds 100*bb + 10*f + s (+ d/10)."""
    bb, f, s, d = torch.meshgrid(torch.arange(b), torch.arange(F), torch.arange(S), torch.arange(D), indexing="ij")
    return (100 * bb + 10 * f + s + d / 10).double().reshape(b, F * S, D)


def test_to_spatial_by_hand():
    x = _labelled()
    got = ex.to_spatial(x, F_, S_)
    check_shape(got, (B * F_, S_, D_), "to_spatial(x of shape (2, 12, 5), F=3, S=4)")
    expected = torch.stack([x[bb, f * S_:(f + 1) * S_] for bb in range(B) for f in range(F_)])   # row bb*F + f
    frame_outer = torch.stack([x[bb, f * S_:(f + 1) * S_] for f in range(F_) for bb in range(B)])
    check_close(got, expected, "to_spatial of labelled tokens (sequence b*F + f should be frame f of clip b)",
                tol=EXACT, mistakes={
                    "Your sequences are ordered frame-major (f*B + b): the clip b must stay the outer index, "
                    "sequence b*F + f.": frame_outer,
                    "Each of your spatial sequences mixes frames: S = H*W tokens of ONE frame are contiguous in "
                    "T-H-W order, so to_spatial is a plain reshape to (B*F, S, D).":
                        x.reshape(B, S_, F_, D_).transpose(1, 2).reshape(B * F_, S_, D_)})


def test_to_temporal_by_hand():
    x = _labelled()
    got = ex.to_temporal(x, F_, S_)
    check_shape(got, (B * S_, F_, D_), "to_temporal(x of shape (2, 12, 5), F=3, S=4)")
    expected = torch.stack([torch.stack([x[bb, f * S_ + s] for f in range(F_)]) for bb in range(B) for s in range(S_)])
    position_outer = torch.stack([torch.stack([x[bb, f * S_ + s] for f in range(F_)])
                                  for s in range(S_) for bb in range(B)])
    check_close(got, expected, "to_temporal of labelled tokens (sequence b*S + s should hold tokens f*S + s, "
                "f = 0 .. F-1)", tol=EXACT, mistakes={
                    "You reshaped without transposing: reshape(B*S, F, D) cuts the T-H-W tokens into runs of F "
                    "neighbours of one frame. Split into (B, F, S, D), transpose to (B, S, F, D), then merge.":
                        x.reshape(B * S_, F_, D_),
                    "F and S are swapped in your split: the tokens are frame-outer, (B, F*S, D) -> "
                    "(B, F, S, D) (not (B, S, F, D)), then transpose(1, 2).":
                        x.reshape(B, S_, F_, D_).transpose(1, 2).reshape(B * S_, F_, D_),
                    "Your sequences are ordered position-major (s*B + b): the clip b must stay the outer index, "
                    "sequence b*S + s.": position_outer})


def test_from_spatial_and_from_temporal_by_hand():
    x = _labelled()
    spatial = torch.stack([x[bb, f * S_:(f + 1) * S_] for bb in range(B) for f in range(F_)])          # (B*F, S, D)
    check_close(ex.from_spatial(spatial, F_, S_), x, "from_spatial of hand-built frame sequences", tol=EXACT,
                mistakes={"Your frames come back in the wrong order: sequence b*F + f is frame f of clip b; "
                          "from_spatial is a plain reshape to (B, F*S, D).":
                          spatial.reshape(F_, B, S_, D_).transpose(0, 1).reshape(B, F_ * S_, D_)})
    temporal = torch.stack([torch.stack([x[bb, f * S_ + s] for f in range(F_)])
                            for bb in range(B) for s in range(S_)])                                 # (B*S, F, D)
    check_close(ex.from_temporal(temporal, F_, S_), x, "from_temporal of hand-built temporal sequences", tol=EXACT,
                mistakes={"You did not transpose back: reshaping (B*S, F, D) straight to (B, F*S, D) leaves the "
                          "tokens position-major. Go (B, S, F, D) -> transpose(1, 2) -> (B, F, S, D) -> (B, F*S, D).":
                          temporal.reshape(B, F_ * S_, D_),
                          "F and S are swapped in your split: the rows are (b, s), so (B*S, F, D) -> (B, S, F, D), "
                          "then transpose(1, 2).":
                          temporal.reshape(B, F_, S_, D_).transpose(1, 2).reshape(B, F_ * S_, D_)})


def test_round_trips():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, F_ * S_, D_, generator=g)
    check_close(ex.from_spatial(ex.to_spatial(x, F_, S_), F_, S_), x, "from_spatial(to_spatial(x))", tol=EXACT)
    check_close(ex.from_temporal(ex.to_temporal(x, F_, S_), F_, S_), x, "from_temporal(to_temporal(x))", tol=EXACT)


def test_a_per_sequence_operation_acts_along_the_right_axis():
    # What attention needs from the reshapes: an operation on each sequence (here a running sum) must act
    # along time for the temporal sequences and along the positions of one frame for the spatial ones.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, F_ * S_, D_, generator=g)
    grid = x.reshape(B, F_, S_, D_)
    check_close(ex.from_temporal(ex.to_temporal(x, F_, S_).cumsum(1), F_, S_),
                grid.cumsum(1).reshape(B, F_ * S_, D_),
                "from_temporal(to_temporal(x).cumsum(1)) (a running sum over the frames at each position)", tol=FP32)
    check_close(ex.from_spatial(ex.to_spatial(x, F_, S_).cumsum(1), F_, S_),
                grid.cumsum(2).reshape(B, F_ * S_, D_),
                "from_spatial(to_spatial(x).cumsum(1)) (a running sum over the positions of each frame)", tol=FP32)


def test_reshapes_reject_bad_shapes():
    check_raises(ValueError, lambda: ex.to_temporal(torch.randn(2, 11, 5), F_, S_),
                 "to_temporal(x of shape (2, 11, 5), F=3, S=4): 11 tokens is not F*S = 12")
    check_raises(ValueError, lambda: ex.to_spatial(torch.randn(2, 11, 5), F_, S_),
                 "to_spatial(x of shape (2, 11, 5), F=3, S=4): 11 tokens is not F*S = 12")
    check_raises(ValueError, lambda: ex.to_temporal(torch.randn(24, 5), F_, S_),
                 "to_temporal(x of shape (24, 5)): not (B, F*S, D)")
