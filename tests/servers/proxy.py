"""A TCP proxy that can cut its connections: an IMAP link failing mid-FETCH or mid-IDLE.

``cut_after = N`` closes a connection once N bytes have come from the server;
``cut_all()`` closes every open connection now; ``down()`` cuts them and
refuses new ones (a database or server outage) until ``up()``.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from servers.dovecot import free_port


@dataclass
class Proxy:
    target_port: int
    port: int = field(default_factory=free_port)
    cut_after: int | None = None
    server_bytes: int = 0
    cuts: int = 0
    _conns: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None

    def start(self) -> Proxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down while this one was being accepted
                    client.close()
                    upstream.close()
                    continue
                self._conns.append((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server:
                    with self._lock:
                        self.server_bytes += len(data)
                        over = self.cut_after is not None and self.server_bytes >= self.cut_after
                    if over:
                        self.cut_after = None
                        self.cut_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
            self.cuts += len(conns)
        for a, b in conns:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.cut_all()

    def down(self) -> None:
        """An outage: every connection cut, new ones refused, until :meth:`up`."""
        self.stop()

    def up(self) -> None:
        """Back: accept connections again on the same port."""
        if self._listener is None:
            self.start()
