"""The captioned toy world (minidit/pipelines/toy_world.py): its captions, its renders, its checker.

The oracles are the scenes themselves: the test writes its own captions and minimal edits from a
scene's items and cells (never from the module's caption code), decides the relations from the cells,
and asks the checker about ground-truth renders (>= 95 % accepted) and about captions made false
(<= 10 % accepted, per kind of edit).
"""
import random

import pytest
import torch

pytest.importorskip("sklearn")

from minidit.errors import InputError
from minidit.pipelines import toy_world as W

torch.set_num_threads(1)
N = 240                                      # scenes per measurement
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def truth(a, relation, b) -> bool:           # the relation from two cells, written here
    return {"left of": a[1] < b[1], "right of": a[1] > b[1], "above": a[0] < b[0], "below": a[0] > b[0]}[relation]


def words(items, relations) -> str:
    """A caption written by the test: items [(digit, colour)], relations [(i, rel, j)] (level-3 form)."""
    phrase = lambda n, art: f"{art} {items[n][1]} {items[n][0]}"
    if not relations:
        return phrase(0, "a")
    text = f"{phrase(0, 'a')} {relations[0][1]} {phrase(1, 'a')}"
    if len(relations) == 2:
        i, rel, j = relations[1]
        text += f" and {phrase(i, 'a')} {rel} {phrase(j, 'the')}"
    return text


def parts(scene):
    return [(it.digit, it.colour) for it in scene.items], list(scene.relations)


@pytest.fixture(scope="module")
def batch():
    images, captions, scenes = W.draw_batch(N, torch.Generator().manual_seed(0))
    return (images + 1) / 2, captions, scenes


def rate(images, captions) -> float:
    ok = W.check_batch(images, captions)
    return sum(ok) / len(ok)


def test_ground_truth_renders_pass_at_every_level(batch):
    images, captions, scenes = batch
    ok = W.check_batch(images, captions)
    assert sum(ok) / N >= 0.95
    for level in W.LEVELS:
        mine = [o for o, c in zip(ok, captions) if W.parse_caption(c).level == level]
        assert len(mine) > 20 and sum(mine) / len(mine) >= 0.95, level


def edit(scene, kind, rng):
    """The test's minimal edits: a caption that the scene's image does not show, or None if not applicable."""
    items, rels = parts(scene)
    taken = set(items)
    free = [(d, c) for d in range(10) for c in W.COLOURS if (d, c) not in taken]
    n = rng.randrange(len(items))
    if kind == "colour swapped":
        d, c = items[n]
        items[n] = (d, rng.choice([c2 for c2 in W.COLOURS if c2 != c and (d, c2) not in taken]))
    elif kind == "digit swapped":
        d, c = items[n]
        items[n] = (rng.choice([d2 for d2 in range(10) if d2 != d and (d2, c) not in taken]), c)
    elif kind == "relation reversed":
        if not rels:
            return None
        m = rng.randrange(len(rels))
        i, rel, j = rels[m]
        rels[m] = (i, OPPOSITE[rel], j)
    elif kind == "order swapped":                # the same words in another order
        if len(items) != 2:
            return None
        items, rels = items[::-1], rels
    elif kind == "extra item":
        if len(items) == 3:
            return None
        items.append(rng.choice(free))
        rels.append((len(items) - 1, rng.choice(W.RELATIONS), 0) if len(items) == 3 else (0, rng.choice(W.RELATIONS), 1))
    elif kind == "missing item":
        if len(items) == 1:
            return None
        items, rels = items[:-1], rels[:-1]
    return words(items, rels)


KINDS = ("colour swapped", "digit swapped", "relation reversed", "order swapped", "extra item", "missing item")


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_edits_are_rejected(batch, kind):
    images, _, scenes = batch
    rng = random.Random(kind)
    pairs = [(img, edit(s, kind, rng)) for img, s in zip(images, scenes)]
    pairs = [(img, c) for img, c in pairs if c is not None]
    assert len(pairs) > 50
    assert rate(torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]) <= 0.10


def test_another_scenes_caption_is_rejected(batch):
    images, captions, _ = batch
    assert rate(images, captions[1:] + captions[:1]) <= 0.10


def shifted(image, dy, dx):
    return torch.nn.functional.pad(image, (1, 1, 1, 1))[:, 1 - dy:1 - dy + W.CANVAS, 1 - dx:1 - dx + W.CANVAS]


def test_one_pixel_shifts_and_faint_noise_still_pass():
    g = torch.Generator().manual_seed(1)
    rng = random.Random(1)
    _, captions, scenes = W.draw_batch(N, g)
    images = []
    for s in scenes:          # every object moved by its own 1-pixel shift, on the canvas (neighbours may touch)
        alone = [W.render(W.Scene((it,), ()), g) for it in s.items]
        moves = [rng.choice([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
                             and 0 <= 8 * it.cell[0] + dy <= 16 and 0 <= 8 * it.cell[1] + dx <= 16])
                 for it in s.items]
        images.append(torch.stack([shifted(a, *m) for a, m in zip(alone, moves)]).amax(0))
    images = torch.stack(images)
    assert rate(images, captions) >= 0.95
    noisy = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0, 1)
    assert rate(noisy, captions) >= 0.95
    faint = (images + 0.12 * torch.rand(images.shape, generator=g)).clamp(0, 1)
    assert rate(faint, captions) >= 0.95
    background = (0.05 * torch.randn(8, 3, W.CANVAS, W.CANVAS, generator=g)).abs().clamp(0, 1)
    assert W.find_objects(background) == [[] for _ in range(8)]


def test_relations_and_items_of_scenes_are_true_in_their_cells(batch):
    _, captions, scenes = batch
    for c, s in zip(captions, scenes):
        cells = [it.cell for it in s.items]
        assert len(set(cells)) == len(cells) and all(0 <= r < 3 and 0 <= k < 3 for r, k in cells)
        assert len({(it.digit, it.colour) for it in s.items}) == len(s.items)
        parsed = W.parse_caption(c)
        assert [(it.digit, it.colour) for it in parsed.items] == [(it.digit, it.colour) for it in s.items]
        assert parsed.relations == s.relations
        assert all(truth(cells[i], rel, cells[j]) for i, rel, j in parsed.relations), c


def test_renders_put_each_item_in_its_cell_in_its_colour():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        s = W.sample_scene(3, g)
        img = W.render(s, g)
        assert img.shape == (3, 24, 24) and 0 <= img.min() and img.max() <= 1
        mask = torch.zeros(24, 24, dtype=torch.bool)
        for it in s.items:
            r, c = it.cell
            patch = img[:, 8 * r:8 * r + 8, 8 * c:8 * c + 8]
            rgb = torch.tensor(W.COLOURS[it.colour])
            assert patch.amax() > 0.5
            assert torch.equal(patch[rgb == 0], torch.zeros_like(patch[rgb == 0]))
            mask[8 * r:8 * r + 8, 8 * c:8 * c + 8] = True
        assert img[:, ~mask].abs().max() == 0                  # black outside the items' cells
    fixed = W.Scene((W.Item(7, "blue", (1, 2)),), ())
    assert torch.equal(W.render(fixed), W.render(fixed))      # no generator: one fixed handwriting


def test_captions_follow_the_grammar_and_the_vocabulary(batch):
    _, captions, scenes = batch
    assert len(set(W.VOCABULARY)) == len(W.VOCABULARY)
    core = {"a", "the", "and", "left", "right", "of", "above", "below", *W.COLOURS, *map(str, range(10))}
    assert core <= set(W.VOCABULARY)
    assert all(p.split()[0] not in core for p in W.DISTRACTORS)   # the parser can skip phrases unambiguously
    counts = {}
    for c, s in zip(captions, scenes):
        assert set(c.split()) <= set(W.VOCABULARY) and c == " ".join(c.split())
        level = W.parse_caption(c).level
        counts.setdefault(level, []).append(len(c.split()))
        if level < 4:
            assert c == words(*parts(s))                       # the test's own composition
        else:
            assert c.split()[:3] != words(*parts(s)).split()[:3]   # starts with a distractor
            core_text = c
            for p in sorted(W.DISTRACTORS, key=len, reverse=True):
                core_text = core_text.replace(p, " ")
            assert " ".join(core_text.split()) == words(*parts(s))
            assert 2 <= len(W.parse_caption(c).distractors) <= 4
    assert set(counts) == set(W.LEVELS)
    assert set(counts[1]) == {3} and set(counts[2]) <= {7, 8} and set(counts[3]) <= {15, 16, 17}
    assert min(counts[4]) >= 13 and sum(counts[4]) / len(counts[4]) > 1.3 * sum(counts[3]) / len(counts[3])


def test_level_4_checks_as_its_core(batch):
    images, captions, scenes = batch
    long = [(n, c) for n, c in enumerate(captions) if W.parse_caption(c).level == 4]
    cores = [words(*parts(scenes[n])) for n, _ in long]
    for shift in (0, 1):                                       # its own image, and another scene's image
        imgs = torch.stack([images[(n + shift) % N] for n, _ in long])
        assert W.check_batch(imgs, [c for _, c in long]) == W.check_batch(imgs, cores)
    a = W.parse_caption(long[0][1])
    b = W.parse_caption(cores[0])
    assert (a.items, a.relations) == (b.items, b.relations)


def test_word_order_changes_the_meaning():
    red3, blue7 = W.Item(3, "red", (0, 0)), W.Item(7, "blue", (0, 2))
    img = W.render(W.Scene((red3, blue7), ((0, "left of", 1),)))
    assert W.check(img, "a red 3 left of a blue 7")
    assert W.check(img, "a blue 7 right of a red 3")
    assert not W.check(img, "a blue 7 left of a red 3")
    d = W.check_details(img, "a blue 7 left of a red 3")
    assert d["failures"] == ["relation false: the blue 7 left of the red 3"]


def test_check_details_name_the_failed_part():
    scene = W.Scene((W.Item(3, "red", (0, 0)), W.Item(7, "blue", (2, 2))), ((0, "above", 1),))
    img = W.render(scene)
    assert W.check_details(img, "a red 3 above a blue 7")["ok"]
    d = W.check_details(img, "a green 3 above a blue 7")
    assert d["items"][0]["failure"].startswith("wrong colour") and not d["ok"]
    d = W.check_details(img, "a red 5 above a blue 7")
    assert d["items"][0]["failure"].startswith("wrong digit")
    d = W.check_details(img, "a red 3")
    assert d["extra"] == ["a blue 7 at (2, 2)"] and d["items"][0]["cell"] == (0, 0)
    d = W.check_details(img, "a red 3 above a blue 7 and a cyan 1 left of the blue 7")
    assert d["items"][2]["failure"] == "missing" and d["relations"][1]["holds"] is None


def test_parse_errors_name_the_bad_word():
    with pytest.raises(InputError, match=r"'purple'.*colours: red, green, blue, yellow, magenta, cyan"):
        W.parse_caption("a purple 3")
    with pytest.raises(InputError, match=r"'12'.*digits: 0-9"):
        W.parse_caption("a red 12 left of a blue 7")
    with pytest.raises(InputError, match="refers to an item not introduced"):
        W.parse_caption("a red 3 left of a blue 7 and a green 1 below the green 2")
    with pytest.raises(InputError, match="mentioned twice"):
        W.parse_caption("a red 3 left of a red 3")
    with pytest.raises(InputError, match="expected a relation"):
        W.parse_caption("a red 3 a blue 7")
    with pytest.raises(InputError, match="outside a known phrase"):
        W.parse_caption("a red 3 drawn by care")
    assert W.parse_caption("A red 3, left of a blue 7.") == W.parse_caption("a red 3 left of a blue 7")


def test_draw_batch_is_deterministic_with_shapes_and_ranges():
    a = W.draw_batch(16, torch.Generator().manual_seed(5))
    b = W.draw_batch(16, torch.Generator().manual_seed(5))
    c = W.draw_batch(16, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert not torch.equal(a[0], c[0])
    images, captions, scenes = a
    assert images.shape == (16, 3, 24, 24) and images.min() == -1 and images.max() <= 1
    assert len(captions) == len(scenes) == 16
    only = W.draw_batch(32, torch.Generator().manual_seed(5), levels=(2,))[1]
    assert all(W.parse_caption(t).level == 2 for t in only)
    with pytest.raises(InputError, match="levels"):
        W.draw_batch(4, torch.Generator(), levels=(5,))


@pytest.mark.parametrize("subset", [("left of", "above"), ("below",)])
def test_draw_batch_keeps_to_a_relation_subset(subset):
    """A curriculum's batches: every relation of every caption is one of the subset, and true of the drawn
    cells (level-3 scenes' second relation too); each relation of the subset is used; bad subsets are refused."""
    _, captions, scenes = W.draw_batch(400, torch.Generator().manual_seed(3), levels=(2, 3, 4), relations=subset)
    used = [(s, i, r, j) for s in scenes for i, r, j in s.relations]
    assert {r for _, _, r, _ in used} == set(subset)
    assert sum(len(s.relations) == 2 for s in scenes) > 100                       # level-3 cores are there
    assert all(W.relation_holds(s.items[i].cell, r, s.items[j].cell) for s, i, r, j in used)
    assert [W.parse_caption(t).relations for t in captions] == [s.relations for s in scenes]
    for bad in [(), ("left",), "left of", ("left of", "beside")]:
        with pytest.raises(InputError, match="relations"):
            W.draw_batch(4, torch.Generator(), relations=bad)


def test_prompt_set_is_fixed_and_covers_every_level():
    prompts = W.prompt_set()
    assert prompts == W.prompt_set() and 30 <= len(prompts) <= 50 and len(set(prompts)) == len(prompts)
    assert {W.parse_caption(p).level for p in prompts} == set(W.LEVELS)


def test_bad_images_are_refused():
    with pytest.raises(InputError, match=r"\(x \+ 1\) / 2"):
        W.check(-torch.ones(3, 24, 24), "a red 3")
    with pytest.raises(InputError, match="expected images"):
        W.check_batch(torch.zeros(2, 1, 24, 24), ["a red 3", "a red 3"])
    with pytest.raises(InputError, match="level"):
        W.caption(W.sample_scene(2, torch.Generator()), 3)


def test_save_grid_writes_rgb_renders(tmp_path):
    from PIL import Image
    from minidit.pipelines.toy import save_grid
    images = torch.stack([W.render(W.Scene((W.Item(d, "magenta", (1, 1)),), ())) for d in (0, 8)])
    save_grid(images, tmp_path / "grid.png", ncols=2, zoom=2, pad=2)
    png = torch.tensor(__import__("numpy").array(Image.open(tmp_path / "grid.png"))).permute(2, 0, 1)
    assert png.shape == (3, 2 + 48 + 2, 2 + 2 * (48 + 2)) and png[:, 2:50, 2:50].float().div(255).allclose(
        images[0].repeat_interleave(2, 1).repeat_interleave(2, 2), atol=1 / 255)
