"""Test-wide settings: never touch the user's graph cache, never reach the network."""

import os
import tempfile

os.environ["ISASIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="isasim-test-cache-")
os.environ["HF_HUB_OFFLINE"] = "1"
