"""Wrong byte-pair-encoding merge loops (exercise 8)."""
from helpers.mutants import Mutant


def _bpe(end="last", pick="lowest_rank", scan="left", step=2):
    def bpe(word, ranks):
        if end == "last":
            symbols = list(word[:-1]) + [word[-1] + "</w>"]
        elif end == "separate":
            symbols = list(word) + ["</w>"]
        else:
            symbols = list(word)
        while len(symbols) > 1:
            pairs = list(zip(symbols, symbols[1:]))
            known = [p for p in pairs if p in ranks]
            if not known:
                break
            best = known[0] if pick == "leftmost" else min(known, key=ranks.get)
            seq = symbols[::-1] if scan == "right" else symbols
            merged, i = [], 0
            while i < len(seq):
                pair = (seq[i + 1], seq[i]) if scan == "right" and i + 1 < len(seq) else tuple(seq[i:i + 2])
                if i + 1 < len(seq) and pair == best:
                    merged.append(pair[0] + pair[1])
                    i += step
                else:
                    merged.append(seq[i])
                    i += 1
            symbols = merged[::-1] if scan == "right" else merged
            if step == 1:                # overlapping joins: stop after one pass, or the word grows forever
                break
        return symbols
    return bpe


MUTANTS = [
    Mutant("no </w>", {"bpe": _bpe(end="none")}, "the word end is marked on the last character"),
    Mutant("</w> as a separate symbol", {"bpe": _bpe(end="separate")}, "no separate"),
    Mutant("leftmost known pair first", {"bpe": _bpe(pick="leftmost")}, "you merged the leftmost known pair"),
    Mutant("pairs joined from the right", {"bpe": _bpe(scan="right")}, "scan left to right"),
    Mutant("overlapping joins", {"bpe": _bpe(step=1)}, "your joined pairs overlap"),
]
