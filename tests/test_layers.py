"""The layout is enforced, not described: layers, no cycles, small modules, imports at the top.

The contracts are in pyproject.toml ([tool.importlinter]); lint-imports runs in a
subprocess so that its import graph is built fresh from the files on disk.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailcase"
LAYERS = ["cli", "ops", "cutoff", "outbound", "rules", "ingest", "domain", "mail", "config", "core"]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_no_layer_imports_a_higher_one() -> None:
    """The same rule checked directly on the graph, so a contract left out of pyproject.toml is noticed."""
    graph = grimp.build_graph("mailcase", cache_dir=None)
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in rank:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = imported.split(".")
            if len(target) > 1 and target[1] in rank and rank[target[1]] < rank[parts[1]]:
                upward.append(f"{module} -> {imported}")
    assert upward == []
    # every folder of the package is a layer (a new folder must be placed)
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS)


def test_modules_are_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert big == {}


def test_imports_of_mailcase_are_at_module_level() -> None:
    """Function-local imports hide the dependency graph; only the entry point defers its import."""
    local = []
    for path in _modules():
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import) and node.col_offset > 0:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n == "mailcase" or n.startswith("mailcase.") for n in names):
                    local.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert local == []


def test_package_folders_export_nothing() -> None:
    """A folder's __init__ is its docstring: every import names the module that defines the name."""
    for init in PACKAGE.rglob("__init__.py"):
        if "migrations" in init.parts or init.parent == PACKAGE:  # the package itself carries __version__
            continue
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init
