"""Antivirus: clamd over TCP or a Unix socket (the INSTREAM scanner arrives with the document vault).

Only the readiness probe lives here for now: ``/readyz`` must say when clamd does not answer,
since uploads will fail closed without it.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


class ScannerUnavailable(Exception):
    """clamd does not answer (down, unreachable, or not speaking the protocol)."""


class ClamdScanner:
    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(address)
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            self._family, self._target = socket.AF_INET, (parts.hostname, parts.port)
        elif parts.scheme == "unix" and parts.path:
            self._family, self._target = socket.AF_UNIX, parts.path
        else:
            raise ValueError(f"clamd address must be tcp://host:port or unix:///path, not {address!r}")
        self.timeout = timeout

    def _command(self, command: bytes) -> bytes:
        """One NUL-delimited command ("z" prefix) and its reply."""
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(self._target)
                conn.sendall(b"z" + command + b"\0")
                reply = bytearray()
                while not reply.endswith(b"\0"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except OSError as exc:
            raise ScannerUnavailable(type(exc).__name__) from None
        return bytes(reply).rstrip(b"\0")

    def ping(self) -> None:
        if self._command(b"PING") != b"PONG":
            raise ScannerUnavailable("unexpected answer to PING")
