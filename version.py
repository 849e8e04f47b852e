"""isasim's version: the bottom layer, so the graph cache (models/graph_cache.py) can key on it."""

__version__ = "0.1.0"
