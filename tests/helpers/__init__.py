"""Shared test helpers, imported as `from helpers import ...` (tests/ is on sys.path: pytest puts the
directory of the rootless tests/conftest.py there).

    parity.py        assert_parity and its tolerance levels (EXACT, FP32, ...): THE comparison policy
    weights.py       randomize / perturb / random_state_dict, assert_key_contract
    oracles.py       require(): import a test-only oracle or fail with the install command
    text.py          open_clip's reference code, real vocabularies and weights, a sentencepiece model
    pixart.py        tiny PixArt-α/Σ pipeline folders written by diffusers
    latte.py         tiny Latte transformers and LattePipeline folders written by diffusers
    sd3_text.py      a tiny SD3 text stack (two CLIPs, T5, tokenizers) written by diffusers
    windows.py       the sliding-window oracle (hand_blend, ramp)
    layouts/         the documented original checkpoint layouts (key lists, rename rules) per family
"""
from helpers.oracles import INSTALL_HINT, require
from helpers.parity import BF16, EXACT, FP16, FP32, FP32_ELEMENTWISE, FP32_OTHER_KERNEL, assert_parity
from helpers.weights import assert_key_contract, perturb, random_state_dict, randomize, shapes

__all__ = ["INSTALL_HINT", "require", "assert_parity", "EXACT", "FP32_ELEMENTWISE", "FP32", "FP32_OTHER_KERNEL",
           "FP16", "BF16", "assert_key_contract", "perturb", "random_state_dict", "randomize", "shapes"]
