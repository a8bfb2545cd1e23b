"""The hand-written tokenizers, token for token against transformers on REAL vocabularies:
CLIP's byte-level BPE on OpenAI's bpe_simple_vocab_16e6 (from open_clip_torch) vs CLIPTokenizer
(and vs open_clip's original Python tokenizer); WordPiece on all-MiniLM-L6-v2's vocab.txt vs
BertTokenizer; the sentencepiece wrapper with a model trained here vs T5Tokenizer. Plus
hand-derived cases, truncation warnings, padding, and the loaders' errors."""
import shutil
import warnings

import pytest
import torch

from minidit.text.tokenizers import CLIPTokenizer, WordPieceTokenizer, bpe, bytes_to_unicode, pre_tokenize
from weights_loader import CheckpointError, load_bert_tokenizer, load_clip_tokenizer, load_t5_tokenizer

from helpers import require
from helpers.text import (minilm_dir, open_clip_tokenizer_module, openai_bpe_gz, train_spiece,
                          write_clip_vocab_folder)

transformers = require("transformers")

CORPUS = [
    "a photo of an astronaut riding a horse on the moon", "A RED cube, 3.5 m wide!!", "", " ",
    "naïve café — 東京 🚀 it's", "  multiple   spaces\tand\nnewlines  ", "Tom &amp; Jerry",
    "don't you'll we've I'M he'd", "1234567890 and 3.14159, $100.00 (50%)",
    "Crème brûlée, jalapeño, Ångström, Øresund, façade", "ΟΔΟΣ σοφός Ελλάδα", "Привет, мир! Ёжик",
    "안녕하세요 세계", "こんにちは世界、カタカナ", "中文测试：你好，世界！《三国演义》",
    "emoji 👍🏽 👨‍👩‍👧 🇺🇸 ❤️ 🐈‍⬛", "e-mail: user@example.com, url https://x.y/z?q=1&r=2#frag",
    "tabs\tand\u00a0nbsp\u3000ideographic\u2028line\u2009thin space", "zero\u200bwidth\u200djoiner",
    "ﬁne ligature ½ ² Ⅻ ①", "ÀÉÎÕÜ àéîõü İstanbul ß ẞ", "quote's \"double\" `back` ~tilde^ [brackets]{braces}|pipe\\",
    "a" * 300, " ".join(["long prompt with many words"] * 40), "mixedCASE WordsWithCaps HTML5 GPT-4o x86_64",
    "ascii control \x01\x02 chars \x7f end", "Ünïcödé ñ ç ø å ł đ", "Ελληνικά και العربية עברית हिन्दी ไทย",
    "\x1cfile\x1c separator", "tab\x0bvt\x0cff", "\xadsoft\xadhyphen \ufeffbom", "next\x85line",
]


@pytest.fixture(scope="session")
def clip_vocab_folder(tmp_path_factory):
    return write_clip_vocab_folder(tmp_path_factory.mktemp("clip_vocab"))


@pytest.fixture(scope="session")
def hf_clip(clip_vocab_folder):
    return transformers.CLIPTokenizer.from_pretrained(clip_vocab_folder, model_max_length=77)


@pytest.fixture(scope="session")
def ours_clip():
    return load_clip_tokenizer(openai_bpe_gz())


# --------------------------------------------------------------------------------------------
# CLIP BPE
# --------------------------------------------------------------------------------------------

def test_bpe_hand_derived():
    # The recipe's 5 merges; vocab = 256 bytes, 256 bytes + </w>, 5 merged tokens, then the 2 specials.
    merges = [("r", "e"), ("re", "d</w>"), ("c", "u"), ("b", "e</w>"), ("cu", "be</w>")]
    ranks = {m: i for i, m in enumerate(merges)}
    assert bpe("red", ranks) == ["red</w>"]                      # r e d</w> -> re d</w> -> red</w>
    assert bpe("cube", ranks) == ["cube</w>"]                    # c u b e</w> -> cu b e</w> -> cu be</w> -> cube</w>
    assert bpe("bed", ranks) == ["b", "e", "d</w>"]              # (b, e) is no merge: only (b, e</w>) is
    assert bpe("rere", ranks) == ["re", "r", "e</w>"]            # e</w> is not e
    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
                                        + ["<|startoftext|>", "<|endoftext|>"])}
    tok = CLIPTokenizer(vocab, merges)
    # "a</w>" = 256 + index of "a" among the printable bytes (97 - 33 = 64); "!</w>" = 256 + 0.
    assert tok("A red cube!", padding="longest")["input_ids"].tolist() == [[517, 320, 513, 516, 256, 518]]


def test_byte_map_and_pre_tokenizer():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256 and table[ord("a")] == "a" and table[ord(" ")] == "Ġ"
    assert list(table)[:3] == [33, 34, 35]                       # printable bytes first: vocab ids follow this order
    assert pre_tokenize("it's 2024, ok?!") == ["it", "'s", "2", "0", "2", "4", ",", "ok", "?!"]
    assert pre_tokenize("<|endoftext|>東京🚀") == ["<|endoftext|>", "東京", "🚀"]


def test_clip_bpe_on_the_real_vocabulary_matches_transformers(ours_clip, hf_clip, clip_vocab_folder):
    from_folder = load_clip_tokenizer(clip_vocab_folder)
    assert len(ours_clip.encoder) == len(hf_clip) == 49408
    for text in CORPUS:
        expected = hf_clip(text).input_ids
        assert [ours_clip.bos_token_id] + ours_clip.encode(text) + [ours_clip.eos_token_id] == expected, text
        assert from_folder.encode(text) == ours_clip.encode(text)
    # Batches: 77 tokens, truncated (EOS kept), padded with EOS (CLIP-L) or "!" = id 0 (SD3's bigG).
    with pytest.warns(UserWarning, match=r"prompt 23 has 202 tokens; the last 125 were dropped"):
        ours = ours_clip(CORPUS)
    ref = hf_clip(CORPUS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], ref["input_ids"]) and torch.equal(ours["attention_mask"], ref["attention_mask"])
    # transformers registers the pad token "!" as a special token, so diffusers' SD3 tokenizer_2
    # also turns every "!" *inside* a prompt into the bare "!" (id 0) instead of BPE "!</w>" /
    # "!!</w>"; SD3's reference code tokenizes bigG prompts with the CLIP-L tokenizer and only
    # pads with 0. minidit follows the reference: pad_token changes the padding only.
    hf_g = transformers.CLIPTokenizer.from_pretrained(clip_vocab_folder, model_max_length=77, pad_token="!")
    ours_g = load_clip_tokenizer(clip_vocab_folder, pad_token="!")
    plain = [t for t in CORPUS if "!" not in t]
    ref = hf_g(plain, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with pytest.warns(UserWarning, match="dropped"):
        assert ours_g.pad_token_id == 0 and torch.equal(ours_g(plain)["input_ids"], ref["input_ids"])
    assert ours_g.encode("wow!! hi!") == ours_clip.encode("wow!! hi!") == hf_clip("wow!! hi!").input_ids[1:-1]


def test_clip_bpe_matches_openai_simple_tokenizer(ours_clip):
    """The original Python tokenizer (OpenAI's, as shipped in open_clip). It cleans text with
    ftfy + html.unescape first, and Python's str.lower() makes a word-final capital sigma "ς"."""
    oc = open_clip_tokenizer_module()
    ref = oc.SimpleTokenizer()
    for text in CORPUS:
        if "Σ" in text:
            continue
        assert ours_clip.encode(oc.basic_clean(text)) == ref.encode(text), text


# --------------------------------------------------------------------------------------------
# WordPiece
# --------------------------------------------------------------------------------------------

def test_wordpiece_hand_derived():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "aff",
                                          "able", "##a", "a", ",", "東", "京"])}
    tok = WordPieceTokenizer(vocab)
    assert tok.tokenize("Unaffable, UNAFFA") == ["un", "##aff", "##able", ",", "un", "##aff", "##a"]
    assert tok.tokenize("unx") == ["[UNK]"]                      # no partial words
    assert tok.tokenize("東京") == ["東", "京"]                      # every CJK ideograph is a word
    assert tok.tokenize("Àble") == ["able"]                      # accents stripped when lower-casing
    assert WordPieceTokenizer(vocab, do_lower_case=False).tokenize("able Able") == ["able", "[UNK]"]
    out = tok(["able", "un aff able"], max_length=6)
    assert out["input_ids"].tolist() == [[2, 8, 3, 0, 0, 0], [2, 4, 7, 8, 3, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]


def test_wordpiece_on_minilm_vocab_matches_transformers():
    folder = minilm_dir()
    ours = load_bert_tokenizer(folder)
    assert len(ours.vocab) == 30522 and ours.model_max_length == 512
    for options in [{}, {"do_lower_case": False}, {"strip_accents": False}, {"tokenize_chinese_chars": False}]:
        hf = transformers.BertTokenizer.from_pretrained(folder, **options)
        tok = WordPieceTokenizer(ours.vocab, **options)
        for text in CORPUS:
            assert [tok.cls_token_id] + tok.encode(text) + [tok.sep_token_id] == hf(text).input_ids, (options, text)
    with pytest.warns(UserWarning, match="dropped to fit max_length=77"):
        mine = ours(CORPUS, max_length=77)
    hf = transformers.BertTokenizer.from_pretrained(folder)
    ref = hf(CORPUS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert torch.equal(mine["input_ids"], ref["input_ids"]) and torch.equal(mine["attention_mask"], ref["attention_mask"])


# --------------------------------------------------------------------------------------------
# T5 / sentencepiece
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def spiece_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spiece")
    train_spiece(folder)
    return folder


def test_t5_wrapper_matches_transformers(spiece_folder, tmp_path):
    require("google.protobuf")
    hf = transformers.T5Tokenizer.from_pretrained(spiece_folder, extra_ids=0)
    ours = load_t5_tokenizer(spiece_folder / "spiece.model")
    # transformers (tokenizers backend) treats U+0085 (NEXT LINE) as whitespace; sentencepiece,
    # which T5 was trained with and which minidit wraps, keeps it as a character (-> <unk>).
    corpus = [t for t in CORPUS if "\x85" not in t]
    for text in corpus:
        assert ours.encode(text) + [1] == hf(text).input_ids, text
    assert ours.encode("next\x85line") != hf("next\x85line").input_ids[:-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = ours(corpus, max_length=48)
    ref = hf(corpus, padding="max_length", max_length=48, truncation=True, return_tensors="pt")
    assert torch.equal(mine["input_ids"], ref["input_ids"]) and torch.equal(mine["attention_mask"], ref["attention_mask"])
    lengths = [len(ours.encode(t)) + 1 for t in corpus]
    assert sorted(str(w.message) for w in caught) == sorted(
        f"T5Tokenizer: prompt {i} has {n} tokens; the last {n - 48} were dropped to fit max_length=48"
        for i, n in enumerate(lengths) if n > 48)
    longest = ours(["a red cube", "a photo of a cat"], padding="longest")   # no max_length needed
    assert longest["input_ids"].shape[1] == max(len(ours.encode(t)) + 1 for t in ["a red cube", "a photo of a cat"])


def test_t5_tokenizer_files_and_errors(spiece_folder, tmp_path):
    require("google.protobuf")
    # transformers 5 saves only tokenizer.json: minidit says which file is missing and how to get it.
    hf = transformers.T5Tokenizer.from_pretrained(spiece_folder, extra_ids=0)
    hf.save_pretrained(tmp_path / "pipe" / "tokenizer_3")
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"has no spiece\.model.*huggingface-cli download"):
        load_t5_tokenizer(tmp_path / "pipe")
    shutil.copy(spiece_folder / "spiece.model", tmp_path / "pipe" / "tokenizer_3")
    tok = load_t5_tokenizer(tmp_path / "pipe")
    ref = hf("a red cube", padding="max_length", max_length=16)
    assert tok("a red cube", max_length=16)["input_ids"][0].tolist() == ref.input_ids
    assert tok("a red cube", max_length=16)["attention_mask"][0].tolist() == ref.attention_mask
    with pytest.raises(ValueError, match="pass max_length"):
        load_t5_tokenizer(spiece_folder)("a red cube")


def test_clip_and_bert_tokenizer_folders(clip_vocab_folder, hf_clip, tmp_path):
    hf_clip.save_pretrained(tmp_path / "pipe" / "tokenizer")
    transformers.CLIPTokenizer.from_pretrained(clip_vocab_folder, pad_token="!").save_pretrained(
        tmp_path / "pipe" / "tokenizer_2")
    with pytest.raises(CheckpointError, match=r"has no vocab\.json, merges\.txt"):
        load_clip_tokenizer(tmp_path / "pipe" / "tokenizer")
    for sub in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(clip_vocab_folder / name, tmp_path / "pipe" / sub)
    with pytest.raises(CheckpointError, match="component="):
        load_clip_tokenizer(tmp_path / "pipe")
    assert load_clip_tokenizer(tmp_path / "pipe", component="tokenizer").pad_token_id == 49407
    assert load_clip_tokenizer(tmp_path / "pipe", component="tokenizer_2").pad_token_id == 0   # from its config
    with pytest.raises(CheckpointError, match="not a BERT tokenizer"):
        load_bert_tokenizer(tmp_path / "pipe" / "tokenizer")
    bert_folder = tmp_path / "bert_tokenizer"
    transformers.BertTokenizer.from_pretrained(minilm_dir()).save_pretrained(bert_folder)
    (bert_folder / "vocab.txt").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"has no vocab\.txt"):
        load_bert_tokenizer(bert_folder)
