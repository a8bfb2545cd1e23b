"""Shim: moved to tests/helpers/oracles.py. Kept for tests/test_pipeline_dit.py and
tests/test_pipeline_pixart.py (being rewritten elsewhere); remove once they import helpers."""
from helpers.oracles import *  # noqa: F401,F403
