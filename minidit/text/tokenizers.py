"""The three tokenizers the text encoders need, two of them written out by hand.

* `T5Tokenizer`        a thin wrapper around sentencepiece (a *unigram* language model over pieces,
                       Kudo, arXiv:1804.10959; T5 v1.1 and mT5's `spiece.model`): adds EOS, pads,
                       truncates (with a warning) and builds the attention mask.
* `CLIPTokenizer`      byte-level BPE (Sennrich et al., arXiv:1508.07909; GPT-2's byte map), as
                       OpenAI's CLIP `simple_tokenizer.py` defines it: lower-case, split with one
                       regex, map bytes to printable characters, apply merges in rank order, end
                       each word with `</w>`, wrap in <|startoftext|> ... <|endoftext|>, 77 tokens.
* `WordPieceTokenizer` BERT's WordPiece (Devlin et al., arXiv:1810.04805; Wu et al.,
                       arXiv:1609.08144): clean, split CJK characters, lower-case and strip
                       accents, split punctuation, then greedy longest match with `##` pieces.

Each is called like transformers' tokenizers and returns tensors the encoders take as they are:

    tok(["a red cube", "a photo"], max_length=77)  ->  {"input_ids": (B, L), "attention_mask": (B, L)}
    encoder(**tok(prompts))

Padding is to `max_length` (or to the longest prompt with padding="longest"). A prompt longer
than `max_length` is cut (the end-of-text token is kept) and a warning says how many tokens were
dropped. The files are read by `weights_loader.load_{t5,clip,bert}_tokenizer`.
"""
from __future__ import annotations

import functools
import re
import unicodedata
import warnings

import torch

from minidit.errors import InputError


def _batch(sequences, prefix, suffix, max_length, padding, pad_id, what):
    """[prefix + ids + suffix] for every prompt, cut to `max_length` (warning), padded, as tensors."""
    if padding not in ("max_length", "longest"):
        raise ValueError(f"padding must be 'max_length' or 'longest', not {padding!r}")
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        raise InputError(f"max_length must be a positive integer, got {max_length!r}")
    if max_length is None:              # only reachable with padding="longest": nothing is cut
        max_length = max(len(ids) for ids in sequences) + len(prefix) + len(suffix)
    room = max_length - len(prefix) - len(suffix)
    if room < 0:
        raise ValueError(f"max_length={max_length} leaves no room for the special tokens {prefix + suffix}")
    rows = []
    for i, ids in enumerate(sequences):
        if len(ids) > room:
            warnings.warn(f"{what}: prompt {i} has {len(ids) + len(prefix) + len(suffix)} tokens; the last "
                          f"{len(ids) - room} were dropped to fit max_length={max_length}", stacklevel=3)
            ids = ids[:room]
        rows.append(prefix + ids + suffix)
    length = max_length if padding == "max_length" else max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, :len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def lowercase(text: str) -> str:
    """Lower-case character by character, as transformers' (Rust) tokenizers do. Python's
    `str.lower()` — used by OpenAI's CLIP and Google's BERT code — differs in one place: it turns a
    word-final capital sigma into "ς" (here "σ"); the encoders were deployed with transformers."""
    return "".join(c.lower() for c in text)


def _as_list(texts):
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"texts must be a string or a list of strings, not {texts!r:.60}")
    if not texts:
        raise ValueError("no prompts given (an empty prompt is the empty string \"\")")
    return list(texts)


# --------------------------------------------------------------------------------------------
# T5 / mT5: sentencepiece
# --------------------------------------------------------------------------------------------

class T5Tokenizer:
    """sentencepiece pieces + `</s>` (id 1), padded with `<pad>` (id 0); no BOS."""

    def __init__(self, model_file, model_max_length: int | None = None):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.pad_token_id, self.eos_token_id = self.sp.pad_id(), self.sp.eos_id()
        if self.pad_token_id < 0 or self.eos_token_id < 0:
            raise ValueError(f"{model_file} defines no pad and/or eos piece (pad id {self.pad_token_id}, eos id "
                             f"{self.eos_token_id}): this is not a T5/mT5 spiece.model")
        self.model_max_length = model_max_length
        self.vocab_size = self.sp.get_piece_size()

    def tokenize(self, text: str) -> list[str]:
        """The pieces of `text` (characters the model does not know show as "<unk>")."""
        return [self.sp.id_to_piece(i) for i in self.sp.encode(text)]

    def encode(self, text: str) -> list[int]:
        """Piece ids of `text`, without EOS."""
        return self.sp.encode(text)

    def __call__(self, texts, max_length: int | None = None, padding: str = "max_length"):
        max_length = self.model_max_length if max_length is None else max_length
        if max_length is None and padding == "max_length":
            raise ValueError("pass max_length= (PixArt-α 120, PixArt-Σ 300, SD3 256 in diffusers, "
                             "Hunyuan-DiT's mT5 256), or padding='longest'")
        return _batch([self.encode(t) for t in _as_list(texts)], [], [self.eos_token_id], max_length,
                      padding, self.pad_token_id, "T5Tokenizer")


# --------------------------------------------------------------------------------------------
# CLIP: byte-level BPE
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """A printable character for each of the 256 byte values (GPT-2 / CLIP).

    BPE merges strings of characters; to merge *bytes* (so any UTF-8 text, emoji included, is
    covered by 256 base symbols and nothing is ever unknown) each byte gets a visible stand-in:
    the 188 printable Latin-1 bytes stand for themselves, the other 68 (controls, space, ...)
    are shifted to chr(256 + n) in byte order. The dict lists the printable bytes first: CLIP's
    vocabulary numbers its 256 base symbols in exactly this order ("!" = 0, "a" = 64).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


# Unicode's White_Space characters: what `\s` matches in the regexes CLIP's tokenizers use.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_WHITESPACE_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")
CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _char_class(c: str) -> str:
    """'s' whitespace, 'L' letter (\\p{L}), 'N' number (\\p{N}), 'o' anything else."""
    if c in WHITESPACE:
        return "s"
    return unicodedata.category(c)[0] if unicodedata.category(c)[0] in "LN" else "o"


def pre_tokenize(text: str) -> list[str]:
    """Split normalised text into words the way CLIP's regex does, written out as a scanner:

        <\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+

    i.e. at each position try, in this order: a special token, a contraction, a run of letters,
    ONE digit (numbers are split digit by digit), a run of other non-space characters.
    Whitespace only separates words and is dropped.
    """
    words, i = [], 0
    while i < len(text):
        kind = _char_class(text[i])
        if kind == "s":
            i += 1
            continue
        fixed = next((w for w in CLIP_SPECIALS + CONTRACTIONS if text.startswith(w, i)), None)
        if fixed:
            j = i + len(fixed)
        elif kind == "N":
            j = i + 1
        else:                                       # a run of letters, or of "other" characters
            j = i + 1
            while j < len(text) and _char_class(text[j]) == kind:
                j += 1
        words.append(text[i:j])
        i = j
    return words


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair-encode one pre-token (already mapped through `bytes_to_unicode`).

    Start from single characters, the last one marked as word end (`</w>`). Repeatedly take the
    adjacent pair with the LOWEST merge rank (the earliest-learned merge) and join every
    occurrence of it, left to right; stop when no adjacent pair is in `ranks`.
    Example with ranks {("l","o"): 0, ("lo","w</w>"): 1}: "low" -> l o w</w> -> lo w</w> -> low</w>.
    """
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


class CLIPTokenizer:
    """CLIP's byte-level BPE: <|startoftext|> word pieces <|endoftext|>, 77 tokens.

    `pad_token`: CLIP-L pads with "<|endoftext|>" (49407); SD3's bigG tokenizer pads with "!" (id 0).
    The text is NFC-normalised, whitespace runs become one space and it is lower-cased, as
    transformers' `CLIPTokenizer` does; OpenAI's code also runs `ftfy.fix_text` and
    `html.unescape` first (pass such text in already cleaned if you need that).
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 pad_token: str = "<|endoftext|>", model_max_length: int = 77):
        missing = [t for t in (*CLIP_SPECIALS, pad_token) if t not in vocab]
        if missing:
            raise ValueError(f"the CLIP vocabulary has no {missing}: is this a CLIP vocab.json?")
        self.encoder = vocab
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.byte_to_char = bytes_to_unicode()
        self.bos_token_id, self.eos_token_id = vocab[CLIP_SPECIALS[0]], vocab[CLIP_SPECIALS[1]]
        self.pad_token_id = vocab[pad_token]
        self.model_max_length = model_max_length
        self._cache: dict[str, list[str]] = {}

    @staticmethod
    def normalize(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        return lowercase(_WHITESPACE_RUN.sub(" ", text).strip(" "))

    def bpe(self, word: str) -> list[str]:
        if word in CLIP_SPECIALS:
            return [word]
        if word not in self._cache:
            chars = "".join(self.byte_to_char[b] for b in word.encode("utf-8"))
            self._cache[word] = bpe(chars, self.ranks)
        return self._cache[word]

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in pre_tokenize(self.normalize(text)) for piece in self.bpe(word)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without <|startoftext|> / <|endoftext|>."""
        return [self.encoder[piece] for piece in self.tokenize(text)]

    def __call__(self, texts, max_length: int | None = None, padding: str = "max_length"):
        return _batch([self.encode(t) for t in _as_list(texts)], [self.bos_token_id], [self.eos_token_id],
                      self.model_max_length if max_length is None else max_length, padding, self.pad_token_id,
                      "CLIPTokenizer")


# --------------------------------------------------------------------------------------------
# BERT: WordPiece
# --------------------------------------------------------------------------------------------

# CJK Unified Ideographs blocks (original BERT `_is_chinese_char`); kana and hangul are not in them.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(c: str) -> bool:
    return any(lo <= ord(c) <= hi for lo, hi in CJK_RANGES)


def is_punctuation(c: str) -> bool:
    """BERT counts all non-alphanumeric ASCII (e.g. $ + ^ `) as punctuation, plus Unicode P*."""
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


class WordPieceTokenizer:
    """BERT's tokenizer: [CLS] word pieces [SEP], padded with [PAD].

    do_lower_case: lower-case (uncased models such as MiniLM); strip_accents: None = follow
    do_lower_case; tokenize_chinese_chars: put spaces around every CJK ideograph so each is a word.
    """

    def __init__(self, vocab: dict[str, int], do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512,
                 max_input_chars_per_word: int = 100):
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]") if t not in vocab]
        if missing:
            raise ValueError(f"the WordPiece vocabulary has no {missing}: is this a BERT vocab.txt?")
        self.vocab = vocab
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.cls_token_id, self.sep_token_id = vocab["[CLS]"], vocab["[SEP]"]
        self.pad_token_id, self.unk_token_id = vocab["[PAD]"], vocab["[UNK]"]

    def normalize(self, text: str) -> str:
        """Clean (drop NUL, U+FFFD and control characters; any whitespace -> ' '), space out CJK
        ideographs, strip accents (NFD, drop combining marks), lower-case — in transformers' order."""
        out = []
        for c in text:
            if c in ("\x00", "\ufffd") or (unicodedata.category(c).startswith("C") and c not in "\t\n\r"):
                continue
            if c in WHITESPACE or unicodedata.category(c) == "Zs":
                out.append(" ")
            elif self.tokenize_chinese_chars and is_cjk(c):
                out.append(f" {c} ")
            else:
                out.append(c)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return lowercase(text) if self.do_lower_case else text

    def basic_tokenize(self, text: str) -> list[str]:
        """Whitespace split, then every punctuation character becomes its own word."""
        words = []
        for chunk in self.normalize(text).split():
            current = ""
            for c in chunk:
                if is_punctuation(c):
                    words += [current, c] if current else [c]
                    current = ""
                else:
                    current += c
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest match, left to right: the longest prefix in the vocabulary, then the
        longest `##`-continuation of the rest, ... If some position matches nothing, the whole
        word is [UNK] (BERT does not emit a partial word)."""
        if len(word) > self.max_input_chars_per_word:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(piece)
                    start = end
                    break
            else:
                return ["[UNK]"]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in self.basic_tokenize(text) for piece in self.wordpiece(word)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without [CLS] / [SEP]."""
        return [self.vocab[piece] for piece in self.tokenize(text)]

    def __call__(self, texts, max_length: int | None = None, padding: str = "max_length"):
        return _batch([self.encode(t) for t in _as_list(texts)], [self.cls_token_id], [self.sep_token_id],
                      self.model_max_length if max_length is None else max_length, padding, self.pad_token_id,
                      "WordPieceTokenizer")
