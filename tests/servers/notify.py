"""The systemd side of sd_notify(3), for tests: a datagram socket recording what the service says."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket recording what the service says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def count(self, what: str, since: float = 0.0) -> int:
        return sum(1 for t, m in self.messages if m == what and t >= since)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
