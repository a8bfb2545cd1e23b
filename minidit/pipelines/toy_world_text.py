"""The language of the toy world (`minidit.pipelines.toy_world`): its words, its scenes, its captions.

The grammar, the levels and the word counts are tabled in `toy_world`'s docstring; this file holds the
vocabulary (VOCABULARY, in a fixed order: grammar words, relation words, colours, digits, the words of
the distractor phrases), the Item / Scene records, `caption` (scene -> text) and `parse_caption`
(text -> the Scene it asks for, or an InputError naming the unknown word). No paper symbols: the data
are the project's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minidit.errors import InputError

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "yellow": (1.0, 1.0, 0.0), "magenta": (1.0, 0.0, 1.0), "cyan": (0.0, 1.0, 1.0)}
RELATIONS = ("left of", "right of", "above", "below")
LEVELS = (1, 2, 3, 4)
DISTRACTORS = ("drawn by hand", "on a black background", "seen from far away", "in a tiny picture",
               "as a quick sketch", "in soft light", "made with care", "for a small test")

COLOUR_NAMES = tuple(COLOURS)
_DIGIT_WORDS = tuple(str(d) for d in range(10))
_GRAMMAR_WORDS = ("a", "the", "and")
_RELATION_WORDS = ("left", "right", "of", "above", "below")
_DISTRACTOR_WORDS = tuple(dict.fromkeys(w for phrase in DISTRACTORS for w in phrase.split()))
VOCABULARY = tuple(dict.fromkeys(_GRAMMAR_WORDS + _RELATION_WORDS + COLOUR_NAMES + _DIGIT_WORDS
                                 + _DISTRACTOR_WORDS))


@dataclass(frozen=True)
class Item:
    digit: int                       # 0..9
    colour: str                      # a key of COLOURS
    cell: tuple[int, int] | None     # (row, col), row 0 at the top; None in what `parse_caption` returns

    @property
    def words(self) -> str:
        return f"{self.colour} {self.digit}"


@dataclass(frozen=True)
class Scene:
    items: tuple[Item, ...]
    relations: tuple[tuple[int, str, int], ...]     # (i, relation, j): items[i] <relation> items[j]
    distractors: tuple[str, ...] = ()               # filled only by `parse_caption`

    @property
    def level(self) -> int:
        """1, 2 or 3 from the structure; 4 when a parsed caption carried distractor phrases."""
        return 4 if self.distractors else len(self.items)


def relation_holds(a: tuple[int, int], relation: str, b: tuple[int, int]) -> bool:
    """Whether the cell a = (row, col) is `relation` of the cell b."""
    (ra, ca), (rb, cb) = a, b
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


def _check_level(level) -> int:
    if level not in LEVELS or isinstance(level, bool):
        raise InputError(f"level must be one of {LEVELS}, got {level!r}")
    return int(level)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------


def _compose(scene: Scene, plan: list[int] | None) -> str:
    """The caption of the scene; with a plan (random integers) the level-4 caption with distractors."""
    k = len(scene.items)
    new = [f"a {it.words}" for it in scene.items]
    # segments: item phrases and the words between them; a distractor may follow any NEW item but the last
    if k == 1:
        segments = [new[0]]
    else:
        (i0, rel0, j0), = scene.relations[:1]
        segments = [new[0], f"{rel0} {new[1]}"]
        if k == 3:
            _, rel1, j1 = scene.relations[1]
            segments = [new[0], f"{rel0} {new[1]}", f"and {new[2]}", f"{rel1} the {scene.items[j1].words}"]
    if plan is None:
        return " ".join(segments)
    n = 2 + plan[0] % 3                                                     # 2..4 distractor phrases
    order = sorted(range(len(DISTRACTORS)), key=lambda p: plan[4 + p])[:n]   # distinct phrases
    phrases = [DISTRACTORS[p] for p in order]
    after = {}
    slots = len(segments) - 1                                               # after segment 0 .. len-2
    for m, phrase in enumerate(phrases[2:]):
        after.setdefault(plan[1 + m] % slots, []).append(phrase)
    words = [phrases[0]]
    for s, seg in enumerate(segments):
        words += [seg] + after.get(s, [])
    return " ".join(words + [phrases[1]])


def _scene_level_ok(scene: Scene, level: int) -> bool:
    k = len(scene.items)
    return (k in (2, 3)) if level == 4 else k == level


def caption(scene: Scene, level: int, generator: torch.Generator | None = None) -> str:
    """The scene's caption at `level` (1-3: its structure's level; 4: a level-2/3 scene plus distractor
    phrases drawn from the generator; without one, the first two phrases, at the start and the end)."""
    level = _check_level(level)
    if not _scene_level_ok(scene, level) or len(scene.relations) != max(len(scene.items) - 1, 0):
        raise InputError(f"a level-{level} caption needs a scene with "
                         f"{'2 or 3' if level == 4 else level} items and one relation per item after the first, "
                         f"got {len(scene.items)} items and {len(scene.relations)} relations")
    if level < 4:
        return _compose(scene, None)
    plan = (torch.randint(0, 1 << 20, (4 + len(DISTRACTORS),), generator=generator).tolist()
            if generator is not None else [0, 0, 0, 0] + list(range(len(DISTRACTORS))))
    return _compose(scene, plan)


def tokenize(text: str) -> list[str]:
    """The words of a caption: lowercased, split on spaces; commas and full stops are ignored."""
    if not isinstance(text, str):
        raise InputError(f"a caption must be a string, got {type(text).__name__}")
    return text.lower().replace(",", " ").replace(".", " ").split()


def _vocabulary_listing() -> str:
    return (f"colours: {', '.join(COLOUR_NAMES)}; digits: 0-9; relations: {', '.join(RELATIONS)}; "
            f"words: a, the, and; phrases that change nothing: {', '.join(DISTRACTORS)}")


def parse_caption(text: str) -> Scene:
    """A caption -> the Scene it asks for (cells None; distractor phrases in `.distractors`).
    InputError names the first word outside VOCABULARY, or says where the grammar (module docstring)
    was broken."""
    words = tokenize(text)
    for w in words:
        if w not in VOCABULARY:
            raise InputError(f"the caption {text!r} uses the word {w!r}, which the toy world does not know; "
                             f"it knows {_vocabulary_listing()}")
    core, distractors, i = [], [], 0
    core_words = _GRAMMAR_WORDS + _RELATION_WORDS + COLOUR_NAMES + _DIGIT_WORDS
    while i < len(words):
        phrase = [p.split() for p in DISTRACTORS if words[i:i + len(p.split())] == p.split()]
        if phrase:
            distractors.append(" ".join(phrase[0]))
            i += len(phrase[0])
        elif words[i] not in core_words:
            raise InputError(f"the caption {text!r} has {words[i]!r} outside a known phrase; "
                             f"the phrases that change nothing are: {', '.join(DISTRACTORS)}")
        else:
            core.append(words[i])
            i += 1

    def fail(what: str):
        raise InputError(f"the caption {text!r} does not follow the toy world's grammar: {what} "
                         f"(e.g. 'a red 3', 'a red 3 left of a blue 7', "
                         f"'a red 3 left of a blue 7 and a green 1 below the blue 7')")

    items, relations, pos = [], [], 0

    def item(article: str) -> int:
        nonlocal pos
        got = core[pos:pos + 3]
        if len(got) < 3 or got[0] != article or got[1] not in COLOURS or got[2] not in _DIGIT_WORDS:
            fail(f"expected '{article} <colour> <digit>' at {' '.join(got) or 'the end'!r}")
        pos += 3
        found = [n for n, it in enumerate(items) if (it.colour, it.digit) == (got[1], int(got[2]))]
        if article == "a":
            if found:
                fail(f"'{' '.join(got)}' is mentioned twice (use 'the {got[1]} {got[2]}' to refer back)")
            items.append(Item(int(got[2]), got[1], None))
            return len(items) - 1
        if not found:
            fail(f"'{' '.join(got)}' refers to an item not introduced before")
        return found[0]

    def relation() -> str:
        nonlocal pos
        for rel in RELATIONS:
            if core[pos:pos + len(rel.split())] == rel.split():
                pos += len(rel.split())
                return rel
        fail(f"expected a relation ({', '.join(RELATIONS)}) at {' '.join(core[pos:pos + 2]) or 'the end'!r}")

    if not core:
        fail("no item")
    first = item("a")
    if pos < len(core):
        relations.append((first, relation(), item("a")))
        if pos < len(core):
            if core[pos] != "and":
                fail(f"expected 'and' at {core[pos]!r}")
            pos += 1
            third = item("a")
            relations.append((third, relation(), item("the")))
    if pos < len(core):
        fail(f"unexpected words at the end: {' '.join(core[pos:])!r}")
    return Scene(tuple(items), tuple(relations), tuple(distractors))
