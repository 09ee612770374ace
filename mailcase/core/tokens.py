"""Random tokens for the mail we write (Message-ID parts, MIME boundaries), drawn
from the system's generator a page at a time.

``secrets.token_hex`` asks the kernel for every token: a cutoff writes some
13,000 mails with two tokens each, a system call apiece.  The bytes here are
the same kernel randomness, read 4 KiB at once and handed out once each.  A
forked child starts with an empty pool (``os.register_at_fork``), so parent
and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

_PAGE = 4096
_pool = bytearray()
_lock = threading.Lock()


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as lower-case hex (as ``secrets.token_hex``)."""
    with _lock:
        if len(_pool) < nbytes:
            _pool.extend(os.urandom(max(_PAGE, nbytes)))
        out = bytes(_pool[:nbytes])
        del _pool[:nbytes]
    return out.hex()


def _forget() -> None:
    """In a forked child: drop what the parent had drawn (and a lock a parent thread held)."""
    global _lock
    _lock = threading.Lock()
    _pool.clear()


os.register_at_fork(after_in_child=_forget)
