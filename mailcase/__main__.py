"""``python -m mailcase`` and the ``mailcase`` command.

Before anything heavy is imported, a stop asked of the service (SIGTERM,
SIGINT) ends it cleanly with exit 0: systemd may stop a service that is
still starting.  The daemon installs its own handlers once it runs.  The
umask makes every file mailcase creates readable by its owner only.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _stop_before_start(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def entry() -> None:
    # every file mailcase creates (the database, mail written by the file
    # transport, keys) holds customers' mail or secrets: its owner's only
    os.umask(0o077)
    args = sys.argv[1:]
    if "run" in args and "--once" not in args:
        signal.signal(signal.SIGTERM, _stop_before_start)
    from mailcase.cli.app import main

    main()


if __name__ == "__main__":
    entry()
