"""isasim: an ISA-level simulator and cost model for neural networks.

    import isasim
    isasim.trace("bert-base", targets=["avx512"], seq=128).to_dict()

The functions (trace, training_step, check, compare, explain, emit, host, sweep, scale) live in isasim/api.py and load on first
use, so `import isasim` and the command line start fast.
"""

from isasim.version import __version__

_API = ("trace", "training_step", "check", "compare", "explain", "emit", "host", "sweep", "scale")
__all__ = [*_API, "UserError", "__version__"]


def __dir__() -> list[str]:
    return sorted(set(__all__) | {"api"})


def __getattr__(name: str):
    if name in _API:
        from isasim import api

        return getattr(api, name)
    if name == "UserError":
        from isasim.isa.errors import UserError

        return UserError
    raise AttributeError(f"module 'isasim' has no attribute {name!r}")
