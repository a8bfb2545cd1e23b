"""Shim: moved to tests/helpers/pixart.py. Kept for tests/test_pipeline_pixart.py (being rewritten
elsewhere); remove once it imports helpers.pixart."""
from helpers.pixart import *  # noqa: F401,F403
