"""The README's picture of the built-in text-to-image model: two prompts per level of the fixed prompt set
(`toy_world.prompt_set()[::5]`), seed 0, default steps and guidance, graded by the caption checker.

    python scripts/toy_t2i_figure.py            # -> docs/toy_t2i.png, and the captions as a Markdown list

Nothing is picked by hand: the prompts are every fifth of the set and every image is shown, pass or fail.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                                   # run from a checkout without installing
from minidit.pipelines import toy_t2i, toy_world  # noqa: E402
from minidit.pipelines.toy import save_grid  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--png", default=str(ROOT / "docs" / "toy_t2i.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    prompts = toy_world.prompt_set()[::5]
    images = toy_t2i.generate_toy_images(prompts, seed=args.seed)
    ok = toy_world.check_batch(images, prompts)
    save_grid(images, args.png, ncols=4, zoom=6)
    print(f"wrote {args.png}: {sum(ok)} of {len(ok)} pass the caption checker (left to right, top to bottom)")
    for i, (text, good) in enumerate(zip(prompts, ok)):
        print(f"{i + 1}. {'pass' if good else 'FAIL'}: \"{text}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
