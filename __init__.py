"""isasim: an ISA-level simulator and cost model for neural networks."""

__version__ = "0.1.0"
