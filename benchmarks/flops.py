"""The FLOP floor of a GPU run, as the benchmarks use it. The maths is in the package, `minidit/flops.py`
(the FLOPs of every model term by term, checked against torch's FlopCounterMode; the cards' dense bf16
peaks from NVIDIA's data sheets): this module only names the pieces the benchmarks import.

    floor (s)  = FLOPs of the work / the card's dense bf16 peak (FLOP/s)
    fraction   = floor / measured time          (1.0 = every tensor core busy all the time)
"""
from minidit.flops import CARDS, PEAK_TFLOPS, card_peak_tflops, denoise_flops, floor_fraction, pixart_macs

__all__ = ["CARDS", "PEAK_TFLOPS", "card_peak_tflops", "denoise_flops", "floor_fraction", "pixart_macs"]
