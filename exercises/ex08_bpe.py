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
    # ┌──────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO:                                                                                    │
    # │   1. symbols = the characters of `word`, the LAST one with "</w>" appended               │
    # │      ("cube" -> ["c", "u", "b", "e</w>"];  "a" -> ["a</w>"])                             │
    # │   2. while there are at least 2 symbols:                                                 │
    # │        - among the adjacent pairs (symbols[i], symbols[i+1]) find `best`, the one with   │
    # │          the smallest ranks[pair] (pairs missing from `ranks` never win)                 │
    # │        - if no adjacent pair is in `ranks`: stop                                         │
    # │        - scan left to right and join EVERY occurrence of `best`, continuing after        │
    # │          each joined pair. With best ("a", "a"):                                         │
    # │          ["a", "a", "a", "a</w>"] -> ["aa", "a", "a</w>"]   ("a</w>" is not "a")         │
    # │   3. return the symbols                                                                  │
    # │ Hint: min(pairs, key=lambda p: ranks.get(p, float("inf")))                               │
    # └──────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("bpe")
    # *****END OF YOUR CODE*****
