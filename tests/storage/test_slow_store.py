"""An object store that stalls (it accepts requests and answers nothing) in front of SeaweedFS:
uploads and downloads answer 503 within VAULT_S3_CONNECT/READ_TIMEOUT_SECONDS (times botocore's
attempts), /readyz reports it "unavailable" within a balancer's probe timeout, and nothing hangs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from tests.factories import citizen_browser, make_document, pdf, upload
from tests.services import S3Service
from vault.app import create_app
from vault.storage.models import Document


class StallingProxy:
    """A TCP forwarder to the S3 server; while ``stalled``, the store's answers are held back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.stalled = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b, from_store in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, from_store), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_store: bool) -> None:
        try:
            while data := source.recv(65536):
                while from_store and self.stalled.is_set() and not self._closed:
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

    def close(self) -> None:
        self._closed = True
        self._listener.close()


@pytest.fixture
def proxy(s3: S3Service) -> Iterator[StallingProxy]:
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = StallingProxy((host, int(port)))
    yield proxy
    proxy.stalled.clear()
    proxy.close()


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result, or a failure if it has not returned after ``seconds`` (a hang)."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"no answer after {seconds} s"
    return result[0]


def test_a_stalled_store_is_503_not_a_hang_and_service_resumes(vault_settings, engine, proxy) -> None:
    app = create_app(vault_settings.model_copy(update={
        "s3_endpoint_url": f"http://127.0.0.1:{proxy.port}", "s3_connect_timeout_seconds": 1,
        "s3_read_timeout_seconds": 1}), engine=engine)
    with citizen_browser(app, email="slow@example.org") as browser:
        content = pdf(200_000)
        document = make_document(browser, content)
        proxy.stalled.set()
        try:
            # Three attempts of a second each, and botocore's pauses between them: well under 20 s.
            answer = within(20, lambda: browser.get(f"/api/v1/documents/{document['id']}/content"))
            assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
            answer = within(20, lambda: upload(browser, pdf(), "second.pdf"))
            assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
            started = time.monotonic()
            ready = within(20, lambda: browser.get("/readyz"))
            assert time.monotonic() - started < 5  # inside a load balancer's usual probe timeout
            assert ready.status_code == 200 and ready.json()["checks"]["object_store"] == "unavailable"
            assert browser.get("/login").status_code in (200, 303)  # pages that need no document go on
        finally:
            proxy.stalled.clear()
        again = within(30, lambda: browser.get(f"/api/v1/documents/{document['id']}/content"))
        assert again.status_code == 200 and again.content == content
    with Session(engine) as db:  # the refused upload left no row
        assert [str(d.id) for d in db.exec(select(Document)).all()] == [document["id"]]
