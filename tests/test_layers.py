"""The package's structure, read from the source with ``ast`` (docs/architecture.md).

Layers, bottom to top: ``sklmm._engine`` (the math), ``sklmm._input`` (user data to arrays and
terms), ``sklmm._inference`` (after the fit), ``sklmm._base`` (what the estimators share), the
estimators (``sklmm.mixed``, ``sklmm.gam``), and the package ``sklmm`` itself. A module imports
only from its own layer or lower ones; the engine imports nothing from the rest of sklmm and
neither pandas nor scikit-learn estimator code; no import cycle anywhere (imports inside
functions count); no module longer than ``MAX_LINES``. ``sklmm.datasets`` stands alone.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sklmm"
MAX_LINES = 600

#: the layer of each part of the package (a module's layer is that of its longest prefix)
LAYERS = {
    "sklmm._engine": 0,
    "sklmm.datasets": 0,
    "sklmm._input": 1,
    "sklmm._inference": 2,
    "sklmm._base": 3,
    "sklmm.mixed": 4,
    "sklmm.gam": 4,
    "sklmm.glmm": 4,
    "sklmm.gam_classifier": 4,
    "sklmm": 5,
}
#: what the engine may import besides the standard library and itself
ENGINE_THIRD_PARTY = {"numpy", "scipy", "nlopt", "sksparse", "threadpoolctl", "sklearn.exceptions"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """Absolute names of every module imported anywhere in ``source`` (module ``name``).

    ``from X import y`` counts as an import of ``X.y`` when that is a module of ``known``
    (``from . import factor_cholmod``), else of ``X``.
    """
    base = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if sub in known else mod)
    return out


def layer(name: str) -> int | None:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    return None if best is None else LAYERS[best]


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, int]]:
    """``{module: imported modules}`` over the package, and each module's number of lines."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph, lines = {}, {}
    for name, path in files.items():
        text = path.read_text()
        graph[name] = imports_of(text, name, path.name == "__init__.py", set(files))
        lines[name] = len(text.splitlines())
    return graph, lines


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where a module imports from a higher layer of sklmm."""
    bad = []
    for a, targets in graph.items():
        for b in targets:
            if b == "sklmm" or b.startswith("sklmm."):
                la, lb = layer(a), layer(b)
                if a.startswith("sklmm.datasets") and not b.startswith("sklmm.datasets"):
                    bad.append((a, b))
                elif la is None or lb is None or lb > la:
                    bad.append((a, b))
    return bad


def engine_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of the engine outside itself, the standard library and ``ENGINE_THIRD_PARTY``."""
    bad = []
    for a, targets in graph.items():
        if not (a == "sklmm._engine" or a.startswith("sklmm._engine.")):
            continue
        for b in targets:
            top = b.split(".")[0]
            if b.startswith("sklmm._engine") or top in sys.stdlib_module_names or top == "__future__":
                continue
            if top in ENGINE_THIRD_PARTY or any(b == t or b.startswith(t + ".") for t in ENGINE_THIRD_PARTY):
                continue
            bad.append((a, b))
    return bad


GRAPH, LINES = import_graph()


def test_the_graph_covers_every_layer():
    assert {layer(m) for m in GRAPH} == set(LAYERS.values())
    assert "sklmm._engine.fit" in GRAPH["sklmm.mixed"]


def test_the_engine_imports_only_itself_numpy_scipy_and_nlopt():
    assert engine_violations(GRAPH) == []


def test_layers_import_only_downwards():
    assert upward_imports(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_no_module_passes_the_size_limit():
    assert {m: n for m, n in LINES.items() if n > MAX_LINES} == {}


# the checks themselves fail where they should, on a small package written for the purpose


@pytest.fixture
def broken(tmp_path):
    def write(rel, text):
        p = tmp_path / "sklmm" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    write("__init__.py", "from .mixed import M\n")
    write("mixed.py", "from ._engine.fit import fit\nclass M: pass\n")
    write("_engine/__init__.py", "")
    write("_engine/fit.py", "import pandas as pd\nfrom sklearn.base import clone\n"
                            "from sklearn.exceptions import ConvergenceWarning\nfrom . import terms\n"
                            "def fit():\n    from ..mixed import M\n")
    write("_engine/terms.py", "import numpy as np\ndef f():\n    from .fit import fit\n")
    write("_input/__init__.py", "")
    write("_input/groups.py", "\n" * (MAX_LINES + 1))
    return import_graph(tmp_path / "sklmm")


def test_the_checks_catch_what_they_look_for(broken):
    graph, lines = broken
    assert graph["sklmm._engine.fit"] == {"pandas", "sklearn.base", "sklearn.exceptions",
                                          "sklmm._engine.terms", "sklmm.mixed"}
    assert sorted(engine_violations(graph)) == [("sklmm._engine.fit", "pandas"),
                                                ("sklmm._engine.fit", "sklearn.base"),
                                                ("sklmm._engine.fit", "sklmm.mixed")]
    assert upward_imports(graph) == [("sklmm._engine.fit", "sklmm.mixed")]
    assert sorted(map(tuple, cycles(graph))) == [("sklmm._engine.fit", "sklmm._engine.terms", "sklmm.mixed")]
    assert {m for m, n in lines.items() if n > MAX_LINES} == {"sklmm._input.groups"}
