"""What ``import trajinfer`` and the command line load: heavy libraries wait for the functions that use them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import trajinfer

# Libraries the top-level package and ``trajinfer --help`` must not load.
DEFERRED = ("ot", "scanpy", "matplotlib.pyplot", "anndata", "torchdiffeq", "sklearn", "scipy", "pandas")

_PROBE = """
import json, sys
import trajinfer
package = [m for m in {deferred!r} if m in sys.modules]
import trajinfer.cli
cli = [m for m in {deferred!r} if m in sys.modules]
print(json.dumps({{"package": package, "cli": cli}}))
"""


def test_import_trajinfer_leaves_heavy_libraries_unloaded():
    probe = _PROBE.format(deferred=DEFERRED)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded == {"package": [], "cli": []}


# ------------------------------------------------------------------ no import cycles
def _module_names(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of ``package`` (a folder under ``root``): dotted name -> (file, is a package ``__init__``)."""
    modules = {}
    for file in sorted((root / package).rglob("*.py")):
        parts = list(file.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (file, is_package)
    return modules


def _lazy(tree: ast.Module) -> set[int]:
    """The nodes of a module-level ``__getattr__``: a package's lazy imports, run on first use."""
    return {id(node) for top in tree.body if isinstance(top, ast.FunctionDef) and top.name == "__getattr__" for node in ast.walk(top)}


def _imports(name: str, file: Path, is_package: bool, package: str) -> list[tuple[str, str | None]]:
    """The ``package`` imports of a module, anywhere in it (functions and ``TYPE_CHECKING`` blocks
    included, the lazy ``__getattr__`` of a package ``__init__`` excepted): (module, imported name)
    pairs, relative imports resolved; the name is None for ``import a.b``."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    here = name if is_package else name.rpartition(".")[0]
    lazy = _lazy(tree) if is_package else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found += [(target, alias.name) for alias in node.names]
    return [(target, what) for target, what in found if target == package or target.startswith(package + ".")]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Which modules of ``package`` each module imports.

    ``from P import X`` imports the module ``P.X`` when there is one; when ``P``'s ``__init__``
    merely re-exports ``X`` (``from .T import X``) it imports ``P.T``, where ``X`` is defined;
    otherwise (a name defined in ``P`` itself, or ``import P``) it imports ``P``'s ``__init__``.
    So a package ``__init__`` that only re-exports its submodules is on no cycle, while a
    module that imports the package that imports it is.
    """
    modules = _module_names(root, package)
    imports = {name: _imports(name, file, is_package, package) for name, (file, is_package) in modules.items()}
    reexports = {
        name: {what: target for target, what in imports[name] if what is not None and target != name and target in modules}
        for name, (_, is_package) in modules.items() if is_package
    }
    graph = {}
    for name, found in imports.items():
        targets = set()
        for target, what in found:
            if what is not None and f"{target}.{what}" in modules:
                target = f"{target}.{what}"
            elif what is not None and what in reexports.get(target, {}):
                target = reexports[target][what]
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected group of modules."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:  # the shortest way back to the group's first module
        start = min(group)
        paths, seen = {start: [start]}, {start}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    cycles.append(paths[node] + [start])
                    queue = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths[nxt] = paths[node] + [nxt]
                    queue.append(nxt)
    return cycles


def test_no_two_trajinfer_modules_import_each_other():
    root = Path(trajinfer.__file__).resolve().parents[1]
    graph = import_graph(root, "trajinfer")
    assert {"trajinfer", "trajinfer.estimator", "trajinfer.tl._fit"} <= set(graph)
    assert "trajinfer.dynamics" in graph["trajinfer.estimator"]  # the graph does see the imports
    assert "trajinfer.dynamics" in graph["trajinfer.diagnostics"]  # TYPE_CHECKING imports count too
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among trajinfer modules:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_cycles(tmp_path):
    """The check above can fail: cycles through function-level and TYPE_CHECKING imports, and a
    submodule importing a name defined in the package that imports it, are reported; a package
    ``__init__`` re-exporting its submodules and importing lazily in ``__getattr__`` is not."""
    files = {
        "__init__.py": "VERSION = '1'\nfrom .a import A\nfrom . import b\ndef __getattr__(name):\n    from . import lazy\n    return lazy\n",
        "a.py": "from .b import B\nA = 1\n",
        "b.py": "from typing import TYPE_CHECKING\nB = 2\ndef f():\n    from pkg import A\nif TYPE_CHECKING:\n    from . import c\n",
        "c.py": "from pkg import VERSION\n",
        "lazy.py": "import pkg\n",
        "sub/__init__.py": "from .d import D\n",
        "sub/d.py": "from ..b import B\nD = 3\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.b"] == {"pkg.a", "pkg.c"}  # ``from pkg import A`` is an import of pkg.a, where A is defined
    assert graph["pkg.c"] == {"pkg"} and graph["pkg.lazy"] == {"pkg"} and "pkg.lazy" not in graph["pkg"]
    assert graph["pkg.sub"] == {"pkg.sub.d"} and graph["pkg.sub.d"] == {"pkg.b"}
    cycles = find_cycles(graph)
    assert cycles == [["pkg", "pkg.b", "pkg.c", "pkg"]], cycles  # one cycle of the group pkg, a, b, c
    # without the import of the package's own VERSION, only a and b import each other
    (tmp_path / "pkg" / "c.py").write_text("")
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]
