"""Antivirus: clamd's INSTREAM over TCP or a Unix socket.

Why our own small client rather than the ``clamd`` package: that package (2014, unmaintained)
sends a whole buffer at once (``instream(buff)``), so it cannot scan *while* a document is being
encrypted and stored; it also maps an exceeded stream limit to a generic error. The protocol is
small: ``zINSTREAM\\0``, then chunks each prefixed by their length (uint32 big endian), then a
zero-length chunk; clamd answers ``stream: OK``, ``stream: <name> FOUND`` or ``... ERROR``.

Fail closed: anything but ``stream: OK`` is not clean. Past ``StreamMaxLength`` clamd answers
``INSTREAM size limit exceeded. ERROR`` and closes the socket; the service's own size limit stays
below clamd's, and ``AlertExceedsMax yes`` is expected in clamd.conf, so nothing passes unscanned.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from vault import metrics
from vault.storage.exceptions import StorageUnavailable

_CHUNK = struct.Struct(">I")
MAX_CHUNK = 1 << 20  # clamd's default StreamMaxChunk is larger; 1 MiB keeps memory flat
# The wait for clamd's verdict grows with what it has to scan: a large document on a busy machine
# must not be refused while clamd is still at work. 0.5 s per MiB assumes clamd scans at 2 MiB/s
# at worst (it does tens of MiB/s when idle).
VERDICT_SECONDS_PER_MB = 0.5


def verdict_timeout(base_seconds: float, size: int) -> float:
    """How long to wait for clamd's verdict on ``size`` bytes: ``base_seconds`` (the setting
    ``VAULT_CLAMD_TIMEOUT_SECONDS``) plus ``VERDICT_SECONDS_PER_MB`` per MiB sent."""
    return base_seconds + VERDICT_SECONDS_PER_MB * size / (1 << 20)


class ScannerUnavailable(StorageUnavailable):
    """clamd does not answer, or answered with an error (fail closed: nothing is kept)."""

    what = "antivirus"


@dataclass(frozen=True)
class Verdict:
    clean: bool
    threat: str | None = None  # e.g. "Eicar-Test-Signature.UNOFFICIAL"


class ScanSession(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> Verdict: ...

    def abort(self) -> None: ...


class Scanner(Protocol):
    def ping(self, timeout: float | None = None) -> None: ...

    def start(self) -> ScanSession: ...


class ClamdScanner:
    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(address)
        self._target: tuple[str, int] | str  # a TCP (host, port) or a Unix socket's path
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            self._family, self._target = socket.AF_INET, (parts.hostname, parts.port)
        elif parts.scheme == "unix" and parts.path:
            self._family, self._target = socket.AF_UNIX, parts.path
        else:
            raise ValueError(f"clamd address must be tcp://host:port or unix:///path, not {address!r}")
        self.timeout = timeout

    def _connect(self, timeout: float | None = None) -> socket.socket:
        conn = socket.socket(self._family, socket.SOCK_STREAM)
        conn.settimeout(self.timeout if timeout is None else timeout)
        try:
            conn.connect(self._target)
        except OSError as exc:
            conn.close()
            raise ScannerUnavailable(f"clamd unreachable ({type(exc).__name__})") from None
        return conn

    def ping(self, timeout: float | None = None) -> None:
        """clamd answers PONG; ``timeout`` (seconds per step: connecting, reading) for a probe that
        must answer sooner than a scan would wait."""
        with self._connect(timeout) as conn:
            try:
                conn.sendall(b"zPING\0")
                reply = _read_reply(conn)
            except OSError as exc:
                raise ScannerUnavailable(type(exc).__name__) from None
        if reply != "PONG":
            raise ScannerUnavailable("unexpected answer to PING")

    def start(self) -> ClamdStream:
        try:
            conn = self._connect()
        except ScannerUnavailable:
            metrics.antivirus_verdicts.labels(verdict="error").inc()
            raise
        try:
            conn.sendall(b"zINSTREAM\0")
        except OSError as exc:
            conn.close()
            metrics.antivirus_verdicts.labels(verdict="error").inc()
            raise ScannerUnavailable(type(exc).__name__) from None
        return ClamdStream(conn, base_timeout=self.timeout)


class ClamdStream:
    """One INSTREAM scan, fed chunk by chunk while the upload goes on."""

    def __init__(self, conn: socket.socket, *, base_timeout: float = 30.0) -> None:
        self._conn = conn
        self._closed_early = False
        self._base_timeout = base_timeout
        self.sent = 0  # bytes fed so far
        self._started = time.perf_counter()

    def feed(self, data: bytes) -> None:
        if self._closed_early:
            return  # clamd already answered (limit exceeded): finish() reports it
        view = memoryview(data)
        try:
            for offset in range(0, len(view), MAX_CHUNK):
                piece = view[offset:offset + MAX_CHUNK]
                self._conn.sendall(_CHUNK.pack(len(piece)))
                self._conn.sendall(piece)
                self.sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            self._closed_early = True  # clamd closes the socket past StreamMaxLength: read why
        except OSError as exc:
            self.abort()
            metrics.antivirus_verdicts.labels(verdict="error").inc()
            raise ScannerUnavailable(type(exc).__name__) from None

    def finish(self) -> Verdict:
        """clamd's verdict, counted in the metrics (clean, infected, or error when it raises)."""
        try:
            verdict = self._finish()
        except ScannerUnavailable:
            metrics.antivirus_verdicts.labels(verdict="error").inc()
            raise
        metrics.antivirus_scan_duration.observe(time.perf_counter() - self._started)
        metrics.antivirus_verdicts.labels(verdict="clean" if verdict.clean else "infected").inc()
        return verdict

    def _finish(self) -> Verdict:
        try:
            if not self._closed_early:
                self._conn.sendall(_CHUNK.pack(0))
            self._conn.settimeout(verdict_timeout(self._base_timeout, self.sent))
            reply = _read_reply(self._conn)
        except OSError as exc:
            raise ScannerUnavailable(type(exc).__name__) from None
        finally:
            self._conn.close()
        if reply == "stream: OK":
            return Verdict(clean=True)
        if reply.endswith(" FOUND"):
            return Verdict(clean=False, threat=reply.removeprefix("stream: ").removesuffix(" FOUND").strip())
        if "size limit exceeded" in reply:
            raise ScannerUnavailable("the document is larger than what the antivirus scans")
        raise ScannerUnavailable(f"clamd error: {reply[:200]}")

    def abort(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass


class NoScanner:
    """``VAULT_ANTIVIRUS=off`` (development, with a visible warning): everything is "clean"."""

    def ping(self, timeout: float | None = None) -> None:
        pass

    def start(self) -> NoScanSession:
        return NoScanSession()


class NoScanSession:
    def feed(self, data: bytes) -> None:
        pass

    def finish(self) -> Verdict:
        return Verdict(clean=True)

    def abort(self) -> None:
        pass


def _read_reply(conn: socket.socket) -> str:
    reply = bytearray()
    while not reply.endswith(b"\0") and len(reply) < 4096:
        chunk = conn.recv(4096)
        if not chunk:
            break
        reply += chunk
    return bytes(reply).rstrip(b"\0").decode("utf-8", "replace").strip()
