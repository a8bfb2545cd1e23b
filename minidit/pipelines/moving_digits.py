"""Moving digits: the procedural clip set of the built-in video model, and the tracker that grades it.

A clip is one of scikit-learn's real 8x8 digits (grey levels 0..16, `sklearn.datasets.load_digits`)
pasted at an integer position on a black CANVAS x CANVAS canvas and moved SPEED pixel per frame,
for FRAMES frames, in one of four directions. The conditioning of a clip is (digit class, direction);
everything else (which of the 1797 digits, where the path starts) is drawn from a seeded generator.
The path is straight and stays on the canvas: a digit moving right starts in the leftmost columns
the travel allows (CANVAS - 8 - SPEED * (FRAMES - 1) + 1 = 2 choices) and at row 3, 4 or 5 of the 9
a digit can take (`ACROSS`: the middle +- 1; every row would be 3 times the variety for the same
network to learn in the same CPU minutes); nothing is ever clipped, so every frame holds the whole digit.

    direction   index   (dy, dx) per frame
    right       0       (0, +1)
    left        1       (0, -1)
    down        2       (+1, 0)
    up          3       (-1, 0)

Grading without looking (`evaluate`): per frame, the tracker (`track`) finds the digit as the 8x8
window with the most ink (ties broken towards the ink's centre of mass) and hands that crop, in
sklearn's 0..16 grey levels, to a digit classifier (`digit_classifier`: the RBF-SVM the image toy's
tests use); per clip, the centre of mass of the ink gives a trajectory whose least-squares slope
along the requested axis must be near SPEED and across it near 0 (`MOTION_TOLERANCE`). On the
clips of this module (ground truth) the slopes are exactly SPEED and 0.

Shape legend: N clips, F frames, H = W = CANVAS pixels; clips are (N, F, H, W) floats in [0, 1]
(ink = 1), the model's pixel space is [-1, 1] (`clips_to_model`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minidit.errors import InputError

CANVAS = 16                          # pixels per side
FRAMES = 8                           # frames per clip
DIGIT = 8                            # sklearn's digits are 8x8
SPEED = 1                            # pixels per frame
DIRECTIONS = ("right", "left", "down", "up")
VELOCITY = torch.tensor([[0, 1], [0, -1], [1, 0], [-1, 0]])          # (4, 2): (dy, dx) per frame
TRAVEL = SPEED * (FRAMES - 1)        # pixels a digit moves during a clip (7)
ACROSS = (3, 4, 5)                   # the offsets across the motion a path may have (the middle +- 1)
MOTION_TOLERANCE = (0.5, 0.25)       # slope along the direction in SPEED +- 0.5, across it within +- 0.25 px/frame
INK_FLOOR = 0.2                      # the tracker ignores grey levels below this (faint background noise)
WINDOW_TIE = 0.02                    # windows within 2 % of the most ink count as tied


def direction_index(direction) -> int:
    """'right' | 'left' | 'down' | 'up' (or its index 0..3) -> the index."""
    if isinstance(direction, str) and direction in DIRECTIONS:
        return DIRECTIONS.index(direction)
    if isinstance(direction, int) and not isinstance(direction, bool) and 0 <= direction < len(DIRECTIONS):
        return direction
    raise InputError(f"direction must be one of {', '.join(DIRECTIONS)} (or 0..3), got {direction!r}")


def load_digit_sprites() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as sprites: (1797, 8, 8) float32 ink in [0, 1] (grey level / 16), labels (1797,)."""
    try:
        from sklearn.datasets import load_digits      # ships with scikit-learn, no download
    except ImportError as e:
        raise ImportError("the moving-digits clips need scikit-learn (the digits data set): "
                          "pip install scikit-learn (it is in requirements-dev.txt)") from e
    digits = load_digits()
    sprites = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    return sprites, torch.as_tensor(digits.target, dtype=torch.long)


def start_positions(directions: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random start (y0, x0) per clip, (N,) directions -> (N, 2), such that the path stays on the canvas."""
    n = len(directions)
    free = CANVAS - DIGIT + 1                                                # 9 positions per axis
    along = torch.randint(0, free - TRAVEL, (n,), generator=generator)       # 0..1
    across = torch.randint(ACROSS[0], ACROSS[-1] + 1, (n,), generator=generator)  # 3..5
    v = VELOCITY[directions]                                                 # (N, 2)
    moving = v != 0                                                          # the axis that moves
    # a negative velocity starts at the far end: along -> free - 1 - along
    along_start = torch.where(v.sum(1) > 0, along, free - 1 - along)         # (N,)
    return torch.where(moving, along_start[:, None], across[:, None])        # (N, 2)


def paths(directions: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Top-left corner of the digit in every frame: (N,), (N, 2) -> (N, F, 2) integer (y, x)."""
    f = torch.arange(FRAMES)
    return starts[:, None, :] + SPEED * f[None, :, None] * VELOCITY[directions][:, None, :]


def render(sprites: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Paste sprite n at positions[n, f] in frame f: (N, 8, 8), (N, F, 2) -> clips (N, F, H, W)."""
    N, Fr = positions.shape[:2]
    if positions.min() < 0 or positions.max() > CANVAS - DIGIT:
        raise ValueError(f"positions must be in 0..{CANVAS - DIGIT} so the digit stays on the canvas")
    clips = torch.zeros(N, Fr, CANVAS, CANVAS)
    r = torch.arange(DIGIT)
    rows = positions[..., 0, None, None] + r[:, None]                        # (N, F, 8, 1)
    cols = positions[..., 1, None, None] + r[None, :]                        # (N, F, 1, 8)
    n = torch.arange(N)[:, None, None, None]
    f = torch.arange(Fr)[None, :, None, None]
    clips[n, f, rows, cols] = sprites[:, None]                               # (N, F, 8, 8) written
    return clips


def make_clips(sprites: torch.Tensor, directions, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clips of the given sprites moving in the given directions from random starts: (N, F, H, W)."""
    directions = torch.as_tensor(directions, dtype=torch.long).reshape(-1)
    return render(sprites, paths(directions, start_positions(directions, generator)))


def draw_batch(sprites: torch.Tensor, labels: torch.Tensor, batch: int, generator: torch.Generator | None = None):
    """A random training batch: clips (B, F, H, W) in [0, 1], digit classes (B,), directions (B,)."""
    idx = torch.randint(0, len(sprites), (batch,), generator=generator)
    directions = torch.randint(0, len(DIRECTIONS), (batch,), generator=generator)
    return make_clips(sprites[idx], directions, generator), labels[idx], directions


def clips_to_model(clips: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) ink in [0, 1] -> the model's (N, 1, F, H, W) in [-1, 1] (one channel, DDPM range)."""
    return clips[:, None] * 2.0 - 1.0


def model_to_clips(x: torch.Tensor) -> torch.Tensor:
    """The model's (N, 1, F, H, W) in [-1, 1] -> (N, F, H, W) in [0, 1] (clamped)."""
    return ((x[:, 0].clamp(-1, 1) + 1) / 2).float()


# --------------------------------------------------------------------------------------------
# Grading: track the digit, classify the crop, fit the trajectory
# --------------------------------------------------------------------------------------------


def ink(clips: torch.Tensor) -> torch.Tensor:
    """What the tracker looks at: the grey levels above INK_FLOOR (faint noise a sampler leaves on the
    background would otherwise pull every centre of mass towards the middle of the canvas)."""
    return (clips - INK_FLOOR).clamp(min=0)


def centre_of_mass(clips: torch.Tensor) -> torch.Tensor:
    """Centre (y, x) of the ink (`ink`) of every frame: (N, F, H, W) -> (N, F, 2); no ink -> the canvas centre."""
    w = ink(clips).double()
    grid = torch.arange(clips.shape[-1], dtype=torch.float64)
    mass = w.sum((-2, -1))                                                   # (N, F)
    y = (w.sum(-1) * grid).sum(-1)                                           # (N, F)
    x = (w.sum(-2) * grid).sum(-1)
    centre = torch.stack([y, x], -1) / mass[..., None].clamp(min=1e-12)
    return torch.where(mass[..., None] > 0, centre, torch.full_like(centre, (CANVAS - 1) / 2)).float()


def track(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The digit in every frame: (N, F, H, W) -> (top-left corners (N, F, 2) int64, crops (N, F, 8, 8)).

    The corner is that of the 8x8 window holding the most ink; among the windows within WINDOW_TIE of
    the most (sklearn's digits leave their first column blank, so a window one pixel to the left often
    holds the same ink), the one whose centre is nearest to the ink's centre of mass. The crops are
    cut from the clips themselves (grey levels as they are, not the floored ink)."""
    N, Fr, H, W = clips.shape
    if H != CANVAS or W != CANVAS:
        raise ValueError(f"expected {CANVAS}x{CANVAS} frames, got {H}x{W}")
    frames = ink(clips).reshape(N * Fr, 1, H, W)
    window = F.avg_pool2d(frames, DIGIT, stride=1)[:, 0] * DIGIT**2          # (N*F, 9, 9) ink per window
    free = window.shape[-1]
    corner = torch.stack(torch.meshgrid(torch.arange(free), torch.arange(free), indexing="ij"), -1)   # (9, 9, 2)
    centre = centre_of_mass(clips).reshape(N * Fr, 1, 1, 2)
    distance = ((corner + (DIGIT - 1) / 2 - centre) ** 2).sum(-1)            # (N*F, 9, 9)
    best = window >= window.flatten(1).amax(1)[:, None, None] * (1 - WINDOW_TIE) - 1e-6
    flat = torch.where(best, distance, torch.inf).flatten(1).argmin(1)       # (N*F,)
    corners = torch.stack([flat // free, flat % free], -1).reshape(N, Fr, 2)
    r = torch.arange(DIGIT)
    rows = corners[..., 0, None, None] + r[:, None]                          # (N, F, 8, 1)
    cols = corners[..., 1, None, None] + r[None, :]                          # (N, F, 1, 8)
    crops = clips[torch.arange(N)[:, None, None, None], torch.arange(Fr)[None, :, None, None], rows, cols]
    return corners, crops                                                    # (N, F, 2), (N, F, 8, 8)


def trajectory_slopes(clips: torch.Tensor, directions) -> torch.Tensor:
    """Least-squares slope (px/frame) of the ink's centre of mass along and across each clip's direction:
    (N, F, H, W), (N,) -> (N, 2) [along (positive = the requested way), across]."""
    directions = torch.as_tensor(directions, dtype=torch.long).reshape(-1)
    c = centre_of_mass(clips).double()                                       # (N, F, 2)
    f = torch.arange(clips.shape[1], dtype=torch.float64)
    f = f - f.mean()
    slope = (c * f[None, :, None]).sum(1) / (f**2).sum()                     # (N, 2) dy/df, dx/df
    v = VELOCITY[directions].double()                                        # (N, 2), unit vectors
    along = (slope * v).sum(1)
    across = (slope * v.flip(1)).sum(1).abs()                                # the other axis
    return torch.stack([along, across], 1).float()


def follows(slopes: torch.Tensor) -> torch.Tensor:
    """(N, 2) slopes -> (N,) bool: the clip moves the requested way at about SPEED and not sideways."""
    along_tol, across_tol = MOTION_TOLERANCE
    return ((slopes[:, 0] - SPEED).abs() <= along_tol) & (slopes[:, 1].abs() <= across_tol)


def digit_classifier():
    """The project's digit classifier: an RBF-SVM (gamma 0.001, C 10) fitted on all of sklearn's 8x8
    digits (raw grey levels 0..16; ~99 % cross-validated accuracy). `predict` takes (M, 64) grey levels."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.svm import SVC
    except ImportError as e:
        raise ImportError("grading clips needs scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    return SVC(gamma=0.001, C=10.0).fit(digits.data, digits.target)


def evaluate(clips: torch.Tensor, digits, directions, classifier) -> dict:
    """Grade clips (N, F, H, W) in [0, 1] made for (digits (N,), directions (N,)):
    frame_accuracy  the fraction of the N*F frames whose tracked crop the classifier calls the requested digit,
    motion_accuracy the fraction of the N clips whose trajectory `follows` the requested direction,
    and the per-clip details (predicted classes (N, F), slopes (N, 2), follows (N,))."""
    digits = torch.as_tensor(digits, dtype=torch.long).reshape(-1)
    directions = torch.as_tensor(directions, dtype=torch.long).reshape(-1)
    if clips.ndim != 4 or clips.shape[0] != len(digits) or len(digits) != len(directions):
        raise ValueError(f"expected clips (N, F, H, W) with N digits and N directions, got {tuple(clips.shape)}, "
                         f"{len(digits)} digits, {len(directions)} directions")
    _, crops = track(clips)
    grey = (crops.clamp(0, 1) * 16.0).reshape(-1, DIGIT * DIGIT).numpy()    # (N*F, 64) sklearn's format
    predicted = torch.as_tensor(classifier.predict(grey)).reshape(clips.shape[:2])
    slopes = trajectory_slopes(clips, directions)
    ok = follows(slopes)
    return {"frame_accuracy": float((predicted == digits[:, None]).float().mean()),
            "motion_accuracy": float(ok.float().mean()),
            "predicted": predicted, "slopes": slopes, "follows": ok}
