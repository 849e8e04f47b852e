"""The package's import graph: no cycles, no upward imports between layers, no private names across modules.

Every `import` and `from ... import` of an isasim module counts, at module level or inside a function (a
lazy import is still a dependency). The layers, bottom first, and what each may use (its own and lower):
"""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (
    ("foundation", ("isasim.version", "isasim.isa.dtype", "isasim.isa.errors")),
    ("instruction sets and machines", ("isasim.isa", "isasim.report")),
    ("captured models", ("isasim.models",)),
    ("lowering", ("isasim.lowering",)),
    ("backends", ("isasim.backends",)),
    ("engine", ("isasim.engine",)),
    ("library API", ("isasim.api", "isasim")),
    ("command line", ("isasim.cli",)),
)
PACKAGE_DIRS = ("isa", "models", "lowering", "backends", "engine", "cli")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("isasim",) + rel.parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def package_files() -> list[Path]:
    files = [p for p in ROOT.glob("*.py")]
    for d in PACKAGE_DIRS:
        files += [p for p in (ROOT / d).rglob("*.py") if "data" not in p.relative_to(ROOT / d).parts]
    return sorted(files)


def layer(module: str) -> int:
    """The layer of the longest name that holds the module: itself, or a package above it (the package
    `isasim` holds only itself, so a new top-level module must be given a layer)."""
    best, where = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "isasim" and module.startswith(p + "."))) and len(p) > best:
                best, where = len(p), i
    assert where is not None, f"{module} is in no layer: add it to LAYERS"
    return where


def imports(path: Path, modules: set[str]) -> list[tuple[str, int, str]]:
    """(imported isasim module, line, the names imported from it) for every import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, "") for a in node.names if a.name.startswith("isasim")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("isasim"):
            for a in node.names:  # `from isasim.lowering import isel` imports a module, not a name
                sub = f"{node.module}.{a.name}"
                out.append((sub, node.lineno, "") if sub in modules else (node.module, node.lineno, a.name))
    return out


@pytest.fixture(scope="module")
def graph():
    files = package_files()
    modules = {module_name(p) for p in files}
    g = nx.DiGraph()
    for p in files:
        src = module_name(p)
        g.add_node(src)
        for dst, line, name in imports(p, modules):
            assert dst in modules, f"{p.relative_to(ROOT)}:{line} imports {dst}, which does not exist"
            g.add_edge(src, dst, line=line, name=name, file=p.relative_to(ROOT))
    return g


def test_every_package_module_is_read(graph):
    assert {"isasim.isa.program", "isasim.backends", "isasim.engine.trace", "isasim.cli.main"} <= set(graph)
    assert graph.number_of_edges() > 100


def test_no_import_cycles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_no_upward_imports(graph):
    upward = [f"{d['file']}:{d['line']} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, b, d in graph.edges(data=True) if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_private_names_cross_modules():
    """A leading underscore means "this module's own": no other module, and no test, imports one."""
    files = package_files() + sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    modules = {module_name(p) for p in package_files()}
    found = []
    for p in files:
        tree = ast.parse(p.read_text())
        for dst, line, name in imports(p, modules):
            if name.startswith("_") and not name.startswith("__"):
                found.append(f"{p.relative_to(ROOT)}:{line} imports {name} from {dst}")
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and n.module and n.module.startswith("isasim") for a in n.names
                   if f"{n.module}.{a.name}" in modules}
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases \
                    and n.attr.startswith("_") and not n.attr.startswith("__"):
                found.append(f"{p.relative_to(ROOT)}:{n.lineno} reads {n.value.id}.{n.attr}")
    assert not found, "\n".join(found)
