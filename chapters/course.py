"""What every chapter runs first: `from course import setup, mine; setup()`.

* `setup(seed)`: one CPU thread (the chapter's tiny models run faster on one; results do not depend
  on the machine's core count), a fixed seed, and one figure style for every chapter: PNG at
  100 dpi (sharp lines and text; JPEG smears them), readable title and label sizes, pixel images
  drawn as pixels.
* `mine(exercise, name)`: your solution of an exercise when you have filled it in, minidit's
  otherwise (see `exercises/use.py`; the switch is the environment variable MINIDIT_USE_MINE).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:                 # the kernel starts in chapters/; exercises/ is beside it
    sys.path.insert(0, str(ROOT))

from exercises.use import mine  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "image.interpolation": "nearest",
}


def setup(seed: int = 0) -> None:
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    plt.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")


__all__ = ["mine", "setup", "STYLE"]
