"""Uploads at their edges: a client that goes away mid-body, a page form without its CSRF token, a
name whose extension says another type than the bytes."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from sqlmodel import Session, select

from tests.factories import pdf, upload
from tests.storage.test_documents import nothing_kept
from tests.support import Browser
from vault.storage.models import Document


def _send_and_go_away(app, browser: Browser, path: str, headers: dict[str, str], parts: list[bytes]) -> list[int]:
    """Speak ASGI as the server does for a client that sends ``parts`` of a longer body, then
    disconnects (a short body, a bad chunk); the statuses the app answered, if any."""
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode()), (b"content-length", b"900000"),
                         *((k.lower().encode(), v.encode()) for k, v in headers.items())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {}}
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    statuses: list[int] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    asyncio.run(app(scope, receive, send))
    return statuses


@pytest.mark.parametrize("where", ["api", "page"])
def test_a_client_that_goes_away_mid_upload_is_no_server_error(vault_app, citizen: Browser, engine, s3_client,
                                                              bucket, caplog, where: str) -> None:
    head = (b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n' + citizen.cookies["csrf"].encode()
            + b'\r\n--B\r\nContent-Disposition: form-data; name="type"\r\n\r\nother\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n")
    headers = {"Content-Type": "multipart/form-data; boundary=B", "X-CSRF-Token": citizen.cookies["csrf"]}
    path = "/api/v1/documents" if where == "api" else "/documents"
    with caplog.at_level(logging.INFO):
        statuses = _send_and_go_away(vault_app, citizen, path, headers, [head, pdf(300_000)])
    assert all(400 <= s < 500 for s in statuses), statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any(r.getMessage() == "client went away" for r in caplog.records)
    nothing_kept(engine, s3_client, bucket)


def test_a_raw_api_upload_cut_short_keeps_nothing(vault_app, citizen: Browser, engine, s3_client, bucket,
                                                 caplog) -> None:
    headers = {"Content-Type": "application/pdf", "X-CSRF-Token": citizen.cookies["csrf"], "X-Document-Type": "other"}
    with caplog.at_level(logging.INFO):
        statuses = _send_and_go_away(vault_app, citizen, "/api/v1/documents", headers, [pdf(200_000)])
    assert all(400 <= s < 500 for s in statuses), statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    nothing_kept(engine, s3_client, bucket)


def test_the_page_upload_without_csrf_cookie_nor_field_is_refused(citizen: Browser, engine, s3_client,
                                                                   bucket) -> None:
    citizen.cookies.delete("csrf")
    refused = citizen.post("/documents", data={"type": "proof_of_address"},
                           files={"file": ("facture.pdf", io.BytesIO(pdf()), "application/pdf")})
    assert refused.status_code == 403 and "Formulaire expiré" in refused.text
    nothing_kept(engine, s3_client, bucket)


@pytest.mark.parametrize(("sent", "stored"), [
    ("x.html", "x.pdf"),
    ("x.pdf.html", "x.pdf"),
    ("facture", "facture.pdf"),
    ("J. Dupont", "J. Dupont.pdf"),
    ("Relevé.PDF", "Relevé.PDF"),
    ("x.html.pdf", "x.html.pdf"),
])
def test_the_stored_name_takes_the_sniffed_types_extension(citizen: Browser, engine, sent: str, stored: str) -> None:
    created = upload(citizen, pdf(), sent)
    assert created.status_code == 201, created.text
    assert created.json()["filename"] == stored
    download = citizen.get(f"/api/v1/documents/{created.json()['id']}/content")
    assert download.headers["content-disposition"].split("filename=")[1].split(";")[0].strip('"').lower().endswith(".pdf")
    with Session(engine) as db:
        assert db.exec(select(Document.filename)).one() == stored
