"""A TCP forwarder in front of a service (the S3 server, PostgreSQL), for the fault tests: cut, cut
mid-transfer, stalled."""

from __future__ import annotations

import socket
import threading
import time


class FaultProxy:
    """A TCP forwarder to a service that can be cut (every connection reset, new ones refused),
    cut after some bytes (mid-transfer), or stalled (while ``stalled`` is set, the store's answers
    are held back: a store that accepts requests and answers nothing)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))  # a port nobody can take in between
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cut_off = False
        self._budget: int | None = None  # bytes from the store still let through before a cut
        self.stalled = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                if self.cut_off:  # cut while this one was being set up
                    client.close()
                    upstream.close()
                    continue
                self._conns += [client, upstream]
            for a, b, from_store in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, from_store), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_store: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_store and self._spend(len(data)):
                    self.cut()
                    return
                while from_store and self.stalled.is_set() and not self.cut_off:
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _spend(self, size: int) -> bool:
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= size
            return self._budget < 0

    def cut_after(self, size: int) -> None:
        """Let ``size`` more bytes come from the store, then die (in the middle of a transfer)."""
        with self._lock:
            self._budget = size

    def cut(self) -> None:
        with self._lock:
            self.cut_off = True
            for conn in self._conns:
                # shutdown() before close(): closing alone does not wake a thread blocked in recv(),
                # and the connection would stay open (a silent store, not a dead one).
                for step in (lambda c: c.shutdown(socket.SHUT_RDWR), lambda c: c.close()):
                    try:
                        step(conn)
                    except OSError:
                        pass
            self._conns.clear()

    def restore(self) -> None:
        with self._lock:
            self.cut_off, self._budget = False, None

    def close(self) -> None:
        self._listener.close()
        self.cut()
