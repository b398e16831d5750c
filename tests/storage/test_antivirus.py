"""The wait for clamd's verdict grows with the document, from the base VAULT_CLAMD_TIMEOUT_SECONDS."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from vault.services import build_services
from vault.settings import load_settings
from vault.storage.antivirus import ClamdScanner, ScannerUnavailable, verdict_timeout

MIB = 1 << 20


def test_the_verdict_wait_is_a_base_plus_half_a_second_per_mib() -> None:
    assert verdict_timeout(30, 0) == 30
    assert verdict_timeout(30, 50 * MIB) == 55
    assert verdict_timeout(30, 1024 * MIB) == 30 + 512
    assert verdict_timeout(10, MIB // 2) == 10.25


def test_the_base_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VAULT_CLAMD_TIMEOUT_SECONDS", "75")
    settings = load_settings(data_dir=tmp_path, antivirus="clamd", clamd_address="tcp://127.0.0.1:3310")
    assert settings.clamd_timeout_seconds == 75
    assert isinstance(scanner := build_services(settings).scanner, ClamdScanner) and scanner.timeout == 75


def slow_clamd(delay: float) -> tuple[str, threading.Thread]:
    """A clamd that reads a whole INSTREAM, then takes ``delay`` seconds to say it is clean (a busy machine)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            received = b""
            while not received.endswith(b"\0\0\0\0"):  # the zero-length chunk ends the stream
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                received = received[-8:] + chunk
            time.sleep(delay)
            try:
                conn.sendall(b"stream: OK\0")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}", thread


def scan(address: str, size: int) -> bool:
    stream = ClamdScanner(address, timeout=1).start()
    stream.feed(b"\1" * size)
    return stream.finish().clean


def test_a_large_document_waits_longer_for_its_verdict() -> None:
    # 1 s base: 4 MiB get 3 s, enough for a clamd that needs 2 s.
    address, thread = slow_clamd(2)
    assert scan(address, 4 * MIB)
    thread.join()


def test_a_small_document_still_has_the_base_wait() -> None:
    address, thread = slow_clamd(2)
    with pytest.raises(ScannerUnavailable):
        scan(address, 10)
    thread.join()
