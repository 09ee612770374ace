"""An injected fault for the parse pool: a worker process that dies on one mail.

Imported by the forkserver's worker processes (they share the test's
``sys.path``), so the fault happens where a real crash would: in the worker.
"""

from __future__ import annotations

import os
from typing import Any

from mailcase.mail.parse_worker import parse_many


def parse_many_or_die(raws: list[bytes], pin_key: bytes | None = None) -> list[Any]:
    if any(b"CRASH-THE-WORKER" in raw for raw in raws):
        os._exit(70)  # as a segfault or the OOM killer would: no exception, no goodbye
    return parse_many(raws, pin_key)
