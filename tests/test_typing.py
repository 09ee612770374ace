"""The package and its tests type-check under mypy --strict (house style, docs/design.md §4).

A plain ``mypy`` checks what pyproject.toml's [tool.mypy] names: ``files`` (the package and
tests/) less ``exclude`` (the migrations)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from helpers import ROOT


def _files_to_check() -> list[str]:
    """The Python files [tool.mypy] names, as paths from the repository's root."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    excluded = [re.compile(x) for x in cfg.get("exclude", [])]
    found = sorted({p.relative_to(ROOT).as_posix() for top in cfg["files"] for p in (ROOT / top).rglob("*.py")})
    return [f for f in found if not any(x.search(f) for x in excluded)]


def test_mypy_strict() -> None:
    files = _files_to_check()
    assert any(f.startswith("mailcase/") for f in files) and any(f.startswith("tests/") for f in files), (
        "[tool.mypy] files must name both the package and tests/"
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, (
        "mypy --strict found errors (run .venv/bin/mypy to see them all):\n" + r.stdout[-4000:] + r.stderr[-2000:]
    )
    checked = re.search(r"no issues found in (\d+) source files", r.stdout)
    assert checked and int(checked.group(1)) == len(files), (
        f"mypy checked other files than the {len(files)} [tool.mypy] names:\n{r.stdout[-2000:]}"
    )
