"""The built-in text-to-image model: a tiny text-conditioned DiT that draws the toy world's captions.

`python -m minidit generate --prompt "a red 3 left of a blue 7" --out t2i.png` (no --model, no
--weights) runs it offline in seconds: the weights (`minidit/assets/toy_t2i.safetensors`, a few MB)
ship with the package, and `scripts/conditioning_experiment.py --save` reproduces them on a CPU.

It is the pipeline of the real text-to-image models in miniature, one piece each:

    prompt --toy_world.parse_caption--> checked (a word or phrase outside the world is refused, named)
           --ToyTokenizer (the library's WordPiece tokenizer over the world's words)--> ids, mask (N, L)
           --BERT (minidit.text.bert, tiny, trained with the denoiser)--> tokens, pooled
    x_T ~ N(0, I) (N, 3, 24, 24) --Sampler (Euler on the flow grid, or DDIM), CFG against ""--> x_0
           --> images (N, 3, 24, 24) in [0, 1]   (pixel space: no VAE at this size)

The denoiser is `minidit.conditioning_lab.ToyT2I`, the design (adaLN with pooled text, PixArt-style
cross-attention, or MM-DiT joint attention) that won the conditioning experiment; which one, its
objective and its whole training record are in the file's metadata (`read_t2i_metadata`).
`sample_images` is also what the experiment grades its models with, so the shipped model is graded
through the code users run.

Shape legend: N images, L caption tokens, 3 RGB channels, H = W = 24.
"""
from __future__ import annotations

from pathlib import Path

import torch

from minidit.conditioning_lab import ToyT2I, ToyT2IConfig, ToyTokenizer, toy_tokenizer
from minidit.errors import InputError
from minidit.samplers import Sampler
from . import toy_world
from .checks import check_guidance, check_output_path, check_seed, check_steps
from .common import guided_model_fn, initial_noise
from .toy import BETA_SCHEDULE, NUM_TIMESTEPS, load_toy_model, read_toy_metadata, save_grid   # the DDPM arm: the digits toy's schedule

WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "toy_t2i.safetensors"
OBJECTIVES = ("flow", "ddpm")
DEFAULT_STEPS = 20                    # sampler steps
DEFAULT_GUIDANCE = 3.0                # classifier-free guidance against the empty caption


def read_t2i_metadata(path=WEIGHTS) -> tuple[ToyT2IConfig, dict]:
    """(config, training record: design, objective, vocabulary, steps, losses, quality) of a T2I-toy file."""
    config, info = read_toy_metadata(path, ToyT2IConfig)
    if info.get("objective") not in OBJECTIVES or "vocabulary" not in info:
        raise ValueError(f"{path} has no 'objective' ({' or '.join(OBJECTIVES)}) and 'vocabulary' in its metadata: "
                         "is it a file written by scripts/conditioning_experiment.py --save?")
    return config, info


def load_t2i_model(path=WEIGHTS) -> tuple[ToyT2I, ToyTokenizer, str]:
    """(the trained model (eval mode, CPU, float32, loaded strictly), its tokenizer, its objective)."""
    config, info = read_t2i_metadata(path)
    model = load_toy_model(path, ToyT2I, ToyT2IConfig).eval()
    return model, toy_tokenizer(info["vocabulary"], config.text_max_length), info["objective"]


def sampler_for(objective: str) -> Sampler:
    """The sampler of an objective: Euler on the flow grid (rectified flow), DDIM (DDPM)."""
    if objective == "flow":
        return Sampler("euler", prediction_type="flow", spacing="flow", num_train_timesteps=NUM_TIMESTEPS)
    if objective == "ddpm":
        return Sampler("ddim", clip_denoised=True, spacing="leading", num_train_timesteps=NUM_TIMESTEPS,
                       beta_schedule=BETA_SCHEDULE)
    raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")


@torch.no_grad()
def sample_images(model: ToyT2I, tokenizer: ToyTokenizer, captions: list[str], objective: str, x_T: torch.Tensor,
                  *, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                  progress: bool = False) -> torch.Tensor:
    """Denoise x_T (N, 3, H, W) towards the N captions -> images (N, 3, H, W) in [0, 1].

    Guidance > 1: one forward on [x, x] with [captions, ""] per step (the empty caption is the
    unconditional input the training's caption dropout taught); 1: the captions alone."""
    model.eval()
    length = model.config.text_max_length
    enc = tokenizer(list(captions), max_length=length)
    ids, mask = enc["input_ids"], enc["attention_mask"]                                   # (N, L)
    if guidance == 1.0:
        model_fn = lambda x, t: model(x, t, ids, mask)                                    # noqa: E731
    else:
        empty = tokenizer([""], max_length=length)
        n = len(captions)
        ids2 = torch.cat([ids, empty["input_ids"].expand(n, -1)])                         # (2N, L)
        mask2 = torch.cat([mask, empty["attention_mask"].expand(n, -1)])
        model_fn = guided_model_fn(lambda x, t: model(x, t, ids2, mask2), guidance)
    x_0 = sampler_for(objective).run(model_fn, x_T, steps, progress=progress)
    return ((x_0 + 1) / 2).clamp(0, 1)                                                    # (N, 3, H, W)


def generate_toy_images(prompts, seed: int = 0, *, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                        weights=None, progress: bool = False) -> torch.Tensor:
    """One image per prompt (a string or a list) from the shipped model -> (N, 3, 24, 24) in [0, 1].

    Every prompt must be a caption of the toy world (`toy_world.parse_caption`: its words, its
    grammar); anything else is refused (InputError, naming the word) before the weights are read.
    Deterministic given `seed` (x_T from one torch.Generator). `weights`: a T2I-toy file (default: the shipped one)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise InputError("no prompt: pass a caption, e.g. 'a red 3 left of a blue 7'")
    for p in prompts:
        if not isinstance(p, str):
            raise InputError(f"prompts must be strings, got {p!r:.60}")
        toy_world.parse_caption(p)
    check_seed(seed, "seed")
    check_steps(steps, "steps", maximum=NUM_TIMESTEPS)
    guidance = check_guidance(guidance, "guidance")
    model, tokenizer, objective = load_t2i_model(WEIGHTS if weights is None else weights)
    c = model.config
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise((len(prompts), c.in_channels, c.input_size, c.input_size), generator, "cpu")
    return sample_images(model, tokenizer, prompts, objective, x_T, steps=steps, guidance=guidance, progress=progress)


def grade_prompt_set(weights=None, seeds=(0, 1, 2)) -> dict[int, list[bool]]:
    """The fixed prompt set (`toy_world.prompt_set()`) drawn once per noise seed and graded by the caption
    checker: {level: [ok, ...]}, 10 x len(seeds) per level. The measure the built-in model is held to."""
    prompts = toy_world.prompt_set()
    by_level: dict[int, list[bool]] = {}
    for seed in seeds:
        ok = toy_world.check_batch(generate_toy_images(prompts, seed=seed, weights=weights), prompts)
        for prompt, good in zip(prompts, ok):
            by_level.setdefault(toy_world.parse_caption(prompt).level, []).append(good)
    return by_level


# --------------------------------------------------------------------------------------------
# python -m minidit generate --prompt "..."   (no --model)
# --------------------------------------------------------------------------------------------

def cli_generate(args) -> int:
    """`generate` without --model: the built-in model draws --prompt into --out (PNG, each pixel 8x8).
    (`cli.py` has refused the real models' options, --weights, sizes, windows, --dtype..., if any was given.)"""
    if args.prompt is None:
        raise InputError("give --prompt (a caption of the toy world, e.g. --prompt 'a red 3 left of a blue 7'), "
                         "or --model NAME for a downloaded model (`python -m minidit models`)")
    check_output_path(args.out)
    images = generate_toy_images(args.prompt, args.seed,
                                 steps=DEFAULT_STEPS if args.steps is None else args.steps,
                                 guidance=DEFAULT_GUIDANCE if args.guidance is None else args.guidance)
    save_grid(images, args.out, ncols=1, zoom=8)
    print(f"wrote {args.out} (the built-in text-to-image model, 24x24 shown 8x; {args.prompt!r})")
    return 0
