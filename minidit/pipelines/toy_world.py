"""A captioned toy world: coloured digits on a 3x3 grid, captions of growing length, and a checker.

The data of the text-to-image experiment (adaLN with pooled text vs cross-attention vs MM-DiT joint
attention: DiT arXiv 2212.09748, PixArt-alpha arXiv 2310.00426, SD3 arXiv 2403.03206) and of the
built-in text-to-image model. No checkpoint: everything is procedural, from scikit-learn's 8x8 digits.

The image. A black CANVAS x CANVAS RGB canvas (3, 24, 24) cut into a 3x3 grid of CELL x CELL cells,
cell (row, col) with row 0 at the top. Each item is one of sklearn's handwritten digits (grey in
[0, 1], `moving_digits.load_digit_sprites`) times its colour's RGB, filling its cell; items sit in
distinct cells, and no two items of a scene share both digit and colour, so "the blue 7" names one.
With a generator each item is a random sklearn sample of its digit (~180 handwritings per digit);
without, the first sample of that digit.

The captions (lowercase words separated by spaces; the parser also ignores commas and a full stop):

    level  example                                                      words
    1      a red 3                                                      3
    2      a red 3 left of a blue 7                                     7-8
    3      a red 3 left of a blue 7 and a green 1 below the blue 7      15-17
    4      drawn by hand a red 3 left of a blue 7 seen from far away    13-33
           (a level-2 or level-3 caption with 2-4 distractor phrases:
           one at the start, one at the end, the others after an item)

    NEW = "a" COLOUR DIGIT      introduces an item      COLOUR in COLOURS, DIGIT "0".."9"
    REF = "the" COLOUR DIGIT    an item introduced before
    REL = "left of" | "right of" | "above" | "below"
    level 1: NEW     level 2: NEW REL NEW     level 3: NEW REL NEW "and" NEW REL REF

"X left of Y" means X's column is smaller than Y's, "X above Y" that X's row is smaller; the relation
of a caption is drawn among the true ones. The distractor phrases (DISTRACTORS: "drawn by hand",
"on a black background", ...) change nothing in the image. Word order carries the meaning:
"a red 3 left of a blue 7" and "a blue 7 left of a red 3" hold the same words and describe opposite
images, which a pooled (order-free) text embedding cannot tell apart.

The checker (`check`, `check_details`, `check_batch`) looks at an image as a generated one would be
seen: per cell, the ink (max over channels, grey levels below INK_FLOOR ignored) in the cell's inner
6x6 pixels decides whether it holds an object (OCCUPIED); the object's colour is the COLOURS entry
nearest to its ink-weighted channel means; its digit is what the project's digit classifier
(`moving_digits.digit_classifier`, an RBF-SVM on sklearn's 0..16 grey levels) says of the 8x8 grey crop,
taken at the one of the 9 positions within +-1 pixel of the cell where the classifier is most
confident (the SVM alone is right on ~57 % of 1-pixel-shifted digits, with this search on 99.9 %).
A caption holds when every item it mentions is found (digit and colour), there is no other object,
and every relation is true of the found cells.

Files: the words, the Item / Scene records, `caption` and `parse_caption` live in `toy_world_text.py`
and are re-exported here; this file samples, renders and checks.

Glossary (no paper symbols: this is the project's own data)
    c_text  caption          the prompt, `caption(scene, level)`
    x_0     image            (3, 24, 24) in [0, 1] (`render`), the model's [-1, 1] in `draw_batch`
Shape legend: B images, K <= 3 items per scene, 3 RGB channels, H = W = CANVAS.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from minidit.errors import InputError
from .moving_digits import INK_FLOOR, digit_classifier, load_digit_sprites
from .toy_world_text import (COLOUR_NAMES, COLOURS, DISTRACTORS, LEVELS, RELATIONS, VOCABULARY, Item, Scene,
                             _check_level, _compose, caption, parse_caption, relation_holds, tokenize)

__all__ = ["CANVAS", "CELL", "GRID", "COLOURS", "COLOUR_NAMES", "RELATIONS", "LEVELS", "DISTRACTORS", "VOCABULARY",
           "Item", "Scene", "relation_holds", "sample_scene", "caption", "tokenize", "parse_caption", "prompt_set",
           "render", "render_batch", "draw_batch", "find_objects", "check", "check_batch", "check_details"]

CANVAS = 24                          # pixels per side
CELL = 8                             # pixels per cell side (sklearn's digits are 8x8)
GRID = CANVAS // CELL                # 3 cells per side
OCCUPIED = 2.0                       # ink (grey above INK_FLOOR, summed over the inner 6x6) of an occupied cell
CROP_FLOOR = 0.15                    # crop pixels below this grey level are zeroed before classifying (noise)
MAX_ITEMS = 3
_COLOUR_RGB = torch.tensor([COLOURS[c] for c in COLOUR_NAMES])                  # (6, 3)


# --------------------------------------------------------------------------------------------
# Sampling scenes (vectorized: draw_batch is called every training step)
# --------------------------------------------------------------------------------------------


def _true_relations(ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
    """Flat cells (B,), (B,) -> (B, 4) bool: which of RELATIONS hold of cell i towards cell j."""
    ri, coli, rj, colj = ci // GRID, ci % GRID, cj // GRID, cj % GRID
    return torch.stack([coli < colj, coli > colj, ri < rj, ri > rj], 1)


def _sample_scenes(levels: torch.Tensor, generator, relations=RELATIONS) -> tuple[list[Scene], torch.Tensor]:
    """Scenes for the given levels (B,) -> (scenes, per-scene random numbers for the level-4 phrases).
    relations: the relations captions may use; a scene in which none of them holds between the items
    a relation joins gets its cells redrawn (never with all four: two distinct cells always satisfy one)."""
    B = len(levels)
    cells = torch.rand(B, GRID * GRID, generator=generator).argsort(1)[:, :MAX_ITEMS]        # (B, 3) distinct
    pairs = torch.rand(B, 10 * len(COLOURS), generator=generator).argsort(1)[:, :MAX_ITEMS]  # distinct (digit, colour)
    core = torch.randint(2, 4, (B,), generator=generator)                   # the level-2/3 core of a level-4 scene
    ref = torch.randint(0, 2, (B,), generator=generator)                    # which item the 2nd relation refers to
    pick = torch.rand(B, 2, len(RELATIONS), generator=generator)
    plans = torch.randint(0, 1 << 20, (B, 4 + len(DISTRACTORS)), generator=generator)
    n_items = torch.where(levels == 4, core, levels)
    allowed = torch.tensor([r in relations for r in RELATIONS])                     # (4,)
    for _ in range(1000):                       # a subset of the relations: redraw the scenes it cannot caption
        other = cells.gather(1, ref[:, None])[:, 0]
        true0 = _true_relations(cells[:, 0], cells[:, 1]) & allowed                  # (B, 4)
        true1 = _true_relations(cells[:, 2], other) & allowed
        bad = ((n_items >= 2) & ~true0.any(1)) | ((n_items == 3) & ~true1.any(1))    # (B,)
        if not bad.any():
            break
        cells[bad] = torch.rand(int(bad.sum()), GRID * GRID, generator=generator).argsort(1)[:, :MAX_ITEMS]
    else:                                       # a non-empty subset holds with probability >= 1/4 per draw
        raise RuntimeError(f"no scene found for the relations {relations} in 1000 draws")
    rel0 = torch.where(true0, pick[:, 0], -1.0).argmax(1)
    rel1 = torch.where(true1, pick[:, 1], -1.0).argmax(1)
    cells, digits, colours = cells.tolist(), (pairs // len(COLOURS)).tolist(), (pairs % len(COLOURS)).tolist()
    scenes = []
    for b, (k, r0, r1, j) in enumerate(zip(n_items.tolist(), rel0.tolist(), rel1.tolist(), ref.tolist())):
        items = tuple(Item(digits[b][i], COLOUR_NAMES[colours[b][i]], divmod(cells[b][i], GRID)) for i in range(k))
        joined = ((0, RELATIONS[r0], 1),) if k >= 2 else ()
        joined += ((2, RELATIONS[r1], j),) if k == 3 else ()
        scenes.append(Scene(items, joined))
    return scenes, plans


def sample_scene(level: int, generator: torch.Generator | None = None) -> Scene:
    """One random scene of the level (level 4: a level-2 or level-3 scene; `caption` adds the distractors)."""
    scenes, _ = _sample_scenes(torch.tensor([_check_level(level)]), generator)
    return scenes[0]


def prompt_set() -> list[str]:
    """The fixed prompt set the built-in text-to-image model is graded on: 10 distinct captions per level
    (seed 17)."""
    g = torch.Generator().manual_seed(17)
    prompts = []
    for level in LEVELS:
        mine = []
        while len(mine) < 10:
            text = caption(sample_scene(level, g), level, g)
            mine += [text] if text not in mine else []
        prompts += mine
    return prompts


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _sprite_table() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's sprites (N, 8, 8) in [0, 1], and per digit the indices of its samples (10, most) and counts (10,)."""
    sprites, labels = load_digit_sprites()
    per_digit = [torch.nonzero(labels == d)[:, 0] for d in range(10)]
    counts = torch.tensor([len(p) for p in per_digit])
    table = torch.stack([F.pad(p, (0, int(counts.max()) - len(p))) for p in per_digit])
    return sprites, table, counts


def render_batch(scenes: list[Scene], generator: torch.Generator | None = None) -> torch.Tensor:
    """Scenes -> images (B, 3, 24, 24) in [0, 1], one vectorized paste for the whole batch."""
    sprites, table, counts = _sprite_table()
    flat = [(b, it.digit, COLOUR_NAMES.index(it.colour), it.cell[0] * GRID + it.cell[1])
            for b, scene in enumerate(scenes) for it in scene.items]
    B = len(scenes)
    if not flat:
        return torch.zeros(B, 3, CANVAS, CANVAS)
    b, digit, colour, cell = torch.tensor(flat).T                           # (M,) each
    if generator is None:
        choice = table[digit, 0]                                            # the first sample of each digit
    else:
        u = torch.rand(len(digit), generator=generator)
        choice = table[digit, (u * counts[digit]).long().clamp(max=table.shape[1] - 1)]
    paint = sprites[choice][:, None] * _COLOUR_RGB[colour][:, :, None, None]      # (M, 3, 8, 8)
    cells = torch.zeros(B, GRID * GRID, 3, CELL, CELL)
    cells[b, cell] = paint
    return (cells.reshape(B, GRID, GRID, 3, CELL, CELL)                    # b, row, col, ch, y, x
            .permute(0, 3, 1, 4, 2, 5).reshape(B, 3, CANVAS, CANVAS))


def render(scene: Scene, generator: torch.Generator | None = None) -> torch.Tensor:
    """The scene as a (3, 24, 24) image in [0, 1] (random handwritings with a generator, fixed ones without)."""
    for it in scene.items:
        if it.cell is None or it.colour not in COLOURS or not 0 <= it.digit <= 9:
            raise InputError(f"cannot render {it}: needs a digit 0..9, a colour of COLOURS and a cell (row, col)")
    if len({it.cell for it in scene.items}) != len(scene.items):
        raise InputError(f"two items of the scene share a cell: {[it.cell for it in scene.items]}")
    return render_batch([scene], generator)[0]


def draw_batch(batch: int, generator: torch.Generator, levels=LEVELS, relations=RELATIONS):
    """A random training batch: images (B, 3, 24, 24) in [-1, 1], captions list[str], scenes list[Scene].
    Each example's level is drawn uniformly from `levels`; deterministic given the generator.
    `relations`: the relations the captions may use (all four by default; a subset, e.g. ("left of",
    "above"), makes a curriculum: then which item is named first alone tells where it goes)."""
    if any(level not in LEVELS for level in levels) or not levels:
        raise InputError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
    if isinstance(relations, str) or not relations or any(r not in RELATIONS for r in relations):
        raise InputError(f"relations must be a non-empty subset of {RELATIONS}, got {relations!r}")
    pick = torch.randint(0, len(levels), (batch,), generator=generator)
    level = torch.tensor(list(levels))[pick]                                # (B,)
    scenes, plans = _sample_scenes(level, generator, tuple(relations))
    images = render_batch(scenes, generator)
    captions = [_compose(s, p if lv == 4 else None) for s, p, lv in zip(scenes, plans.tolist(), level.tolist())]
    return images * 2.0 - 1.0, captions, scenes


# --------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _classifier():
    return digit_classifier()                                               # fitted once per process


_WINDOW_STARTS = torch.tensor([8 * r + d for r in range(GRID) for d in range(3)])   # padded coords, dy in -1..1


def find_objects(images: torch.Tensor) -> list[list[tuple[tuple[int, int], str, int]]]:
    """The objects of each image (B, 3, 24, 24) in [0, 1]: per image a list of (cell, colour, digit),
    cells in reading order. One classifier call for the whole batch."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, CANVAS, CANVAS):
        raise InputError(f"expected images (B, 3, {CANVAS}, {CANVAS}), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    images = images.detach().float().cpu()
    if images.numel() and images.min() < -0.02:
        raise InputError(f"expected images in [0, 1], got values down to {images.min():.3f} "
                         "(a model's [-1, 1] output maps to [0, 1] with (x + 1) / 2)")
    images = images.clamp(0, 1)
    B = len(images)
    grey = images.amax(1)                                                   # (B, 24, 24)
    ink = (grey - INK_FLOOR).clamp(min=0)
    def by_cell(x):                                                         # (B, ..., 24, 24) -> (B, 9, ..., 8, 8)
        lead = x.shape[1:-2]
        x = x.reshape(B, *lead, GRID, CELL, GRID, CELL).movedim((-4, -2), (1, 2))
        return x.reshape(B, GRID * GRID, *lead, CELL, CELL)
    inner = (slice(None), slice(None), Ellipsis, slice(1, CELL - 1), slice(1, CELL - 1))
    ink_cells = by_cell(ink)[inner]                                         # (B, 9, 6, 6)
    occupied = ink_cells.sum((-2, -1)) > OCCUPIED                           # (B, 9)
    rgb = (by_cell(images)[inner] * ink_cells[:, :, None]).sum((-2, -1))   # (B, 9, 3)
    rgb = rgb / (by_cell(grey)[inner] * ink_cells).sum((-2, -1))[..., None].clamp(min=1e-6)
    colour = torch.cdist(rgb, _COLOUR_RGB[None].expand(B, -1, -1)).argmin(-1)   # (B, 9)
    # the 8x8 grey crops at offsets -1..1 around every cell: (B, 9 cells, 9 offsets, 64)
    padded = F.pad(grey, (1, 1, 1, 1))[:, None]                             # (B, 1, 26, 26)
    windows = F.unfold(padded, CELL).reshape(B, CELL * CELL, 19, 19)[:, :, _WINDOW_STARTS][:, :, :, _WINDOW_STARTS]
    windows = (windows.reshape(B, CELL * CELL, GRID, 3, GRID, 3)            # b, pix, row, dy, col, dx
               .permute(0, 2, 4, 3, 5, 1).reshape(B, GRID * GRID, 9, CELL * CELL))
    crops = windows[occupied]                                               # (M, 9, 64)
    crops = torch.where(crops >= CROP_FLOOR, crops, 0.0) * 16.0             # sklearn's grey levels 0..16
    digits = torch.zeros(0, dtype=torch.long)
    if len(crops):
        score = torch.as_tensor(_classifier().decision_function(crops.reshape(-1, CELL * CELL).numpy()))
        score = score.reshape(len(crops), 9, 10)
        best = score.amax(-1).argmax(-1)                                    # the most confident offset
        digits = score[torch.arange(len(crops)), best].argmax(-1)
    found = [[] for _ in range(B)]
    for (b, c), d in zip(occupied.nonzero().tolist(), digits.tolist()):
        found[b].append((divmod(c, GRID), COLOUR_NAMES[colour[b, c]], d))
    return found


def _judge(objects, wanted: Scene) -> dict:
    """Match the caption's items to the found objects and test the relations (see `check_details`)."""
    free = list(range(len(objects)))
    where: list = [None] * len(wanted.items)
    items = []
    for n, it in enumerate(wanted.items):
        hit = [o for o in free if objects[o][1:] == (it.colour, it.digit)]
        if hit:
            where[n] = objects[hit[0]][0]
            free.remove(hit[0])
    for n, it in enumerate(wanted.items):
        failure = None
        if where[n] is None:
            failure = "missing"
            for kind, k, same in (("wrong colour", 2, it.digit), ("wrong digit", 1, it.colour)):
                near = [o for o in free if objects[o][k] == same]           # same digit / same colour
                if near:
                    cell, col, dig = objects[near[0]]
                    failure = f"{kind}: found a {col} {dig} at {cell}"
                    free.remove(near[0])
                    break
        items.append({"item": f"a {it.words}", "cell": where[n], "failure": failure})
    relations = []
    for i, rel, j in wanted.relations:
        holds = None if where[i] is None or where[j] is None else relation_holds(where[i], rel, where[j])
        relations.append({"relation": f"the {wanted.items[i].words} {rel} the {wanted.items[j].words}",
                          "holds": holds})
    extra = [f"a {objects[o][1]} {objects[o][2]} at {objects[o][0]}" for o in free]
    failures = ([f"{d['item']}: {d['failure']}" for d in items if d["failure"]]
                + [f"extra object: {e}" for e in extra]
                + [f"relation false: {r['relation']}" for r in relations if r["holds"] is False])
    return {"ok": not failures, "items": items, "extra": extra, "relations": relations,
            "failures": failures, "objects": objects}


def check_batch(images: torch.Tensor, captions: list[str]) -> list[bool]:
    """Whether each image (B, 3, 24, 24) in [0, 1] shows its caption (one classifier call)."""
    if len(images) != len(captions):
        raise InputError(f"got {len(images)} images and {len(captions)} captions")
    wanted = [parse_caption(c) for c in captions]
    return [_judge(o, w)["ok"] for o, w in zip(find_objects(images), wanted)]


def check_details(image: torch.Tensor, caption: str) -> dict:
    """What the checker saw in one (3, 24, 24) image and which part of the caption failed:
    ok, items [{item, cell (found) | None, failure None | 'missing' | 'wrong colour: ...' | 'wrong digit: ...'}],
    extra [objects no item explains], relations [{relation, holds True | False | None (an item is missing)}],
    failures (readable list), objects [(cell, colour, digit)] found."""
    wanted = parse_caption(caption)
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise InputError(f"expected one image (3, {CANVAS}, {CANVAS}), got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    return _judge(find_objects(image[None])[0], wanted)


def check(image: torch.Tensor, caption: str) -> bool:
    """Whether one (3, 24, 24) image in [0, 1] shows the caption: every item (digit and colour), no other
    object, every relation true."""
    return check_details(image, caption)["ok"]
