"""Grader for exercise 8: python -m pytest exercises/test_ex08_bpe.py"""
import importlib.util
import os

import pytest

from exercises._grading import load
from minidit.text.tokenizers import bpe as reference
from minidit.text.tokenizers import bytes_to_unicode
from weights_loader import load_clip_tokenizer

ex = load("ex08_bpe")

# The merges of a toy vocabulary (the same as the chapter's), in the order they were learned.
TOY = {pair: rank for rank, pair in enumerate([("r", "e"), ("re", "d</w>"), ("c", "u"), ("b", "e</w>"),
                                                ("cu", "be</w>")])}


END = ("The word end is marked on the last character: \"cube\" starts as [\"c\", \"u\", \"b\", \"e</w>\"] "
       "(no separate \"</w>\" symbol, and not left out).")


def _check(word, ranks, expected, mistakes=None):
    """bpe(word, ranks) must be `expected`; `mistakes` maps what a known wrong loop returns to its hint."""
    got = ex.bpe(word, ranks)
    assert isinstance(got, list), f"bpe({word!r}) should return a list of strings, got {type(got).__name__}"
    if got != expected:
        for wrong, hint in (mistakes or {}).items():
            if got == list(wrong):
                raise AssertionError(f"bpe({word!r}) = {got}, expected {expected}. {hint}")
    assert got == expected, f"bpe({word!r}) = {got}, expected {expected}"


def test_single_character_and_no_merges():
    _check("a", TOY, ["a</w>"], {("a",): END, ("a", "</w>"): END})  # the only symbol is also the last
    _check("xyz", TOY, ["x", "y", "z</w>"], {("x", "y", "z"): END, ("x", "y", "z", "</w>"): END})  # nothing to merge


def test_hand_derived_merges():
    _check("red", TOY, ["red</w>"])                               # r e d</w> -> re d</w> -> red</w>
    _check("cube", TOY, ["cube</w>"], {("cu", "b", "e", "</w>"): END, ("cu", "b", "e"): END})
    #                                                               c u b e</w> -> cu b e</w> -> cu be</w> -> cube</w>
    _check("bed", TOY, ["b", "e", "d</w>"])                       # (b, e) is not a merge, (b, e</w>) is
    _check("rere", TOY, ["re", "r", "e</w>"])                     # "e</w>" is not "e"


def test_lowest_rank_wins_not_leftmost():
    # (b, c) was learned first, so it is applied before (a, b) although (a, b) is further left.
    ranks = {("b", "c"): 0, ("a", "b"): 1, ("a", "bc"): 2}
    leftmost = ("You merged the leftmost known pair: the pair with the LOWEST rank (the earliest-learned merge) "
                "wins, wherever it is.")
    _check("abcd", ranks, ["abc", "d</w>"], {("ab", "c", "d</w>"): leftmost})


def test_every_occurrence_left_to_right():
    _check("aaab", {("a", "a"): 0}, ["aa", "a", "b</w>"],          # left to right: (aa) a, not a (aa)
           {("a", "aa", "b</w>"): "You joined the pairs from the right: scan left to right.",
            ("aa", "aa", "a", "b</w>"): "Your joined pairs overlap: after joining symbols i and i+1, continue at "
                                        "i + 2 (each symbol joins at most one pair per pass)."})
    _check("ababx", {("a", "b"): 0}, ["ab", "ab", "x</w>"])       # both occurrences
    # a a a a</w> -> aa a a</w> -> aa aa</w> -> aaaa</w>: merges keep applying to merged symbols
    _check("aaaa", {("a", "a"): 0, ("aa", "aa</w>"): 1, ("a", "a</w>"): 2}, ["aaaa</w>"])


def test_real_clip_vocabulary_against_reference():
    # The real 48 894 merges of OpenAI's CLIP vocabulary, on real words (mapped to byte characters).
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.fail("this check uses CLIP's real vocabulary, shipped in open_clip_torch, which is not installed. "
                    "Install it with `pip install --no-deps open_clip_torch==3.3.0` (--no-deps: its dependencies "
                    "would pull a CUDA build of torch).", pytrace=False)
    tok = load_clip_tokenizer(os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz"))
    table = bytes_to_unicode()
    for word in ["astronaut", "riding", "horse", "photorealistic", "unbelievably", "東京", "🚀", "x86", "!!!"]:
        chars = "".join(table[b] for b in word.encode("utf-8"))
        _check(chars, tok.ranks, reference(chars, tok.ranks))
    _check("astronaut", tok.ranks, ["astronaut</w>"])
