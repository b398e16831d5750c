"""An object store that stalls (it accepts requests and answers nothing) in front of SeaweedFS:
uploads and downloads answer 503 within VAULT_S3_CONNECT/READ_TIMEOUT_SECONDS (times botocore's
attempts), /readyz reports it "unavailable" within a balancer's probe timeout, and nothing hangs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from tests.factories import citizen_browser, make_document, pdf, upload
from tests.fault_proxy import FaultProxy
from tests.services import S3Service
from vault.app import create_app
from vault.storage.models import Document


@pytest.fixture
def proxy(s3: S3Service) -> Iterator[FaultProxy]:
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
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
