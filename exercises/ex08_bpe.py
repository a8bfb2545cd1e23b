"""Exercise 8 — the byte-pair-encoding merge loop (chapter 05_text_encoders).

CLIP turns a word into tokens by byte-pair encoding: start from single characters and keep
joining the adjacent pair that was learned EARLIEST (lowest merge rank) until no adjacent pair
is a known merge. Write that loop; minidit's `CLIPTokenizer` does the rest (lower-casing, the
pre-tokenisation regex, the byte -> character map, ids). Then check yourself:

    python -m pytest exercises/test_ex08_bpe.py
"""
# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"bpe": "minidit.text.tokenizers:bpe"}


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair-encode one pre-token (already mapped through `bytes_to_unicode`).

    Start from single characters, the last one marked as word end (`</w>`). Repeatedly take the
    adjacent pair with the LOWEST merge rank (the earliest-learned merge) and join every
    occurrence of it, left to right; stop when no adjacent pair is in `ranks`.
    Example with ranks {("l","o"): 0, ("lo","w</w>"): 1}: "low" -> l o w</w> -> lo w</w> -> low</w>.
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO:                                                                                      │
    # │   1. symbols = the characters of `word`, the LAST one with "</w>" appended                 │
    # │      ("cube" -> ["c", "u", "b", "e</w>"];  "a" -> ["a</w>"])                               │
    # │   2. while there are at least 2 symbols:                                                   │
    # │        - among the adjacent pairs (symbols[i], symbols[i+1]) find `best`, the one with     │
    # │          the LOWEST rank (the earliest merge; pairs missing from `ranks` never win)        │
    # │        - if no adjacent pair is in `ranks`: stop                                           │
    # │        - join EVERY occurrence of `best`, scanning left to right and continuing after      │
    # │          each joined pair. With best ("a", "a"):                                           │
    # │          ["a", "a", "a", "a</w>"] -> ["aa", "a", "a</w>"]   ("a</w>" is not "a")           │
    # │   3. return the symbols                                                                    │
    # │ Read first: chapters/05_text_encoders.ipynb, section                                       │
    # │   - Byte-level BPE, derived                                                                │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("bpe")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# bpe
# ---
#     symbols = list(word[:-1]) + [word[-1] + "</w>"]
#     while len(symbols) > 1:
#         pairs = set(zip(symbols, symbols[1:]))
#         best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
#         if best not in ranks:
#             break
#         merged, i = [], 0
#         while i < len(symbols):
#             if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
#                 merged.append(symbols[i] + symbols[i + 1])
#                 i += 2                                   # skip both halves of the joined pair
#             else:
#                 merged.append(symbols[i])
#                 i += 1
#         symbols = merged
#     return symbols
# Why:
# * "</w>" on the last character: the vocabulary learned different tokens for a piece at the end of a
#   word ("e</w>") and inside one ("e"), so "a</w>" and "a" are different symbols and never pair up.
# * the LOWEST rank, not the leftmost pair: ranks are the order in which the merges were learned during
#   training, and replaying them in that order is what reproduces the tokenizer's segmentation.
#   min(..., key=ranks.get with infinity as the default) finds it in one pass; if even the best pair has
#   no rank, nothing more can merge.
# * joining left to right and jumping past each joined pair makes the merges non-overlapping: in
#   "a a a" with best ("a", "a") the first two join and the third stays alone.
# * a set of pairs is enough: `best` is one pair, and the inner loop joins all its occurrences anyway.
