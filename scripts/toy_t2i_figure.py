"""The README's picture and figures of the built-in text-to-image model.

    python scripts/toy_t2i_figure.py                          # -> docs/toy_t2i.png, and its captions graded
    python scripts/toy_t2i_figure.py --grade [FILE ...]       # the quality figures (default: the shipped file)

The picture: two prompts per level of the fixed prompt set (`toy_world.prompt_set()[::5]`), seed 0, the
default steps and guidance, every image shown, pass or fail. `--grade`, per level, with the caption checker:
the whole prompt set from noise seeds 0, 1, 2 (`toy_t2i.grade_prompt_set`, what `tests/test_toy_t2i.py`
asserts), and 64 other captions per level (`toy_world.draw_batch` seeded 5000 + level; not the experiment's
evaluation set, seeded 1000 + level, on which the training runs were compared) from seeds 1 and 2. Each
call of `generate_toy_images` draws the noise for its whole batch from one generator, so an image depends
on the batch it was drawn in: the picture's eight are not the test's first eight.
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
    p.add_argument("--grade", nargs="*", default=None, metavar="FILE", help="T2I-toy files to grade (none: the shipped one)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.grade is not None:
        for path in args.grade or [toy_t2i.WEIGHTS]:
            grade(path)
        return 0
    prompts = toy_world.prompt_set()[::5]
    images = toy_t2i.generate_toy_images(prompts, seed=args.seed)
    ok = toy_world.check_batch(images, prompts)
    save_grid(images, args.png, ncols=4, zoom=6)
    print(f"wrote {args.png}: {sum(ok)} of {len(ok)} pass the caption checker (left to right, top to bottom)")
    for i, (text, good) in enumerate(zip(prompts, ok)):
        print(f"{i + 1}. {'pass' if good else 'FAIL'}: \"{text}\"")
    return 0


def grade(path) -> None:
    graded = toy_t2i.grade_prompt_set(path)
    right = sum(map(sum, graded.values()))
    total = sum(map(len, graded.values()))
    print(f"{path}: prompt set, 3 seeds: " + ", ".join(f"level {k} {sum(v)}/{len(v)}" for k, v in sorted(graded.items()))
          + f"; all {right}/{total} = {right / total:.1%}")
    other = {}
    for level in toy_world.LEVELS:
        captions = toy_world.draw_batch(64, torch.Generator().manual_seed(5000 + level), levels=(level,))[1]
        other[level] = sum(sum(toy_world.check_batch(toy_t2i.generate_toy_images(captions, seed=s, weights=path),
                                                     captions)) for s in (1, 2)) / (2 * len(captions))
    print(f"{' ' * len(str(path))}  64 other captions per level, 2 seeds: "
          + ", ".join(f"level {k} {v:.0%}" for k, v in other.items()) + f"; mean {sum(other.values()) / len(other):.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
