"""An on-disk cache of cost-only captures, so a repeated `isasim trace` skips importing torch and exporting.

Capturing bert-base costs ~3 s of torch.export on top of ~6 s of importing torch and transformers; the graph
it yields depends only on the model's config, the input shape and the software versions, all of which are
in the key. Graphs are stored as JSON (never pickled), with their key and a digest of their content: an entry
that does not match both, that does not decode, or whose graph does not hold together (graph.py `check`) is
dropped and captured again, so a damaged or edited cache can cost time but never a wrong report.
ISASIM_CACHE=off disables the cache; ISASIM_CACHE_DIR moves it (default ~/.cache/isasim).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from isasim.isa.errors import UserError
from isasim.models.files import read_small
from isasim.version import __version__
from isasim.isa.dtype import DType
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta, check

FORMAT = 2  # 2: entries carry their key and a digest
BUILTIN = ("bert-base", "bert-large", "minilm")


def enabled() -> bool:
    return os.environ.get("ISASIM_CACHE", "on").lower() not in ("off", "0", "no", "false")


def cache_dir() -> Path:
    return Path(os.environ.get("ISASIM_CACHE_DIR", Path.home() / ".cache" / "isasim")) / "graphs"


def key(model: str, seq: int, batch: int, seed: int, core_aten: bool) -> str | None:
    """A digest of everything the captured graph depends on; None when the model is not cacheable (the
    normal path then reports what is wrong with it)."""
    if model in BUILTIN:
        identity = model
    else:
        folder = Path(model)
        try:  # only a regular, small config.json: anything else is for resolve() to report, unread
            identity = f"{folder.resolve()}:{hashlib.sha256(read_small(folder / 'config.json')).hexdigest()}"
        except (OSError, UserError):
            return None
        # a changed weights file must be validated again (resolve checks it against the config)
        for w in ("model.safetensors", "pytorch_model.bin"):
            if (folder / w).is_file():
                st = (folder / w).stat()
                identity += f":{w}:{st.st_size}:{st.st_mtime_ns}"
    try:
        versions = [metadata.version(p) for p in ("torch", "transformers")]
    except metadata.PackageNotFoundError:
        return None
    parts = [FORMAT, __version__, *versions, identity, seq, batch, seed, core_aten]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _enc(a):
    if isinstance(a, Ref):
        return {"$ref": [a.name, a.index]}
    if isinstance(a, (tuple, list)):
        return [_enc(x) for x in a]
    return a


def _dec(a):
    if isinstance(a, dict) and "$ref" in a:
        return Ref(a["$ref"][0], a["$ref"][1])
    if isinstance(a, list):
        return tuple(_dec(x) for x in a)
    return a


def _meta(m: TensorMeta) -> list:
    return [list(m.shape), m.dtype.value]


def _unmeta(m: list) -> TensorMeta:
    return TensorMeta(tuple(m[0]), DType(m[1]))


def to_json(g: Graph) -> dict:
    return {
        "model": g.model,
        "placeholders": [[p.name, p.kind.value, _meta(p.meta), p.target] for p in g.placeholders],
        "nodes": [[n.name, n.op, _enc(n.args), [[k, _enc(v)] for k, v in n.kwargs], [_meta(m) for m in n.outs],
                   n.module] for n in g.nodes],
        "outputs": [_enc(r) for r in g.outputs],
        "config": g.config,
    }


def from_json(d: dict) -> Graph:
    placeholders = tuple(Placeholder(n, PlaceholderKind(k), _unmeta(m), t) for n, k, m, t in d["placeholders"])
    nodes = tuple(Node(name, op, _dec(args), tuple((k, _dec(v)) for k, v in kwargs),
                       tuple(_unmeta(m) for m in outs), module)
                  for name, op, args, kwargs, outs, module in d["nodes"])
    return Graph(d["model"], placeholders, nodes, tuple(_dec(r) for r in d["outputs"]), None, d["config"])


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


MAX_ENTRY = 256 * 2**20  # bytes: bert-large at batch 128 is under 2 MB; a bigger entry is no graph of ours


def holds(k: str | None) -> bool:
    """Whether an entry is stored under key `k` (not read: `load` checks it, and captures again if it must)."""
    return k is not None and enabled() and (cache_dir() / f"{k}.json").is_file()


def load(k: str | None) -> Graph | None:
    """The cached graph for key `k`, or None: missing, unreadable, or not what was saved (then removed)."""
    if k is None or not enabled():
        return None
    path = cache_dir() / f"{k}.json"
    try:
        if not path.is_file() or path.stat().st_size > MAX_ENTRY:
            return None
        entry = json.loads(path.read_text())
        if entry["key"] != k or entry["digest"] != _digest(entry["graph"]):
            raise ValueError("the entry is not what was saved under its key")
        graph = from_json(entry["graph"])
        check(graph)
        return graph
    except OSError:
        return None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        path.unlink(missing_ok=True)  # damaged: capture again, and save a good one
        return None


def save(k: str | None, g: Graph) -> None:
    if k is None or not enabled():
        return
    body = to_json(g)
    tmp = None
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=d, suffix=".tmp", delete=False) as f:
            tmp = f.name
            json.dump({"key": k, "digest": _digest(body), "graph": body}, f)
        os.replace(tmp, d / f"{k}.json")
    except OSError:
        if tmp:  # a full disk leaves no partial file behind
            Path(tmp).unlink(missing_ok=True)
        # a read-only or full cache only costs speed
