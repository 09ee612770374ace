"""The package type-checks under mypy --strict (house style, docs/design.md §4)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_mypy_strict() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
