"""Logs are JSON lines with a request id, and never hold a password, a token or a link."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support import PASSWORD, Browser, Outbox, verified_citizen
from vault.logs import JsonFormatter


@pytest.fixture
def json_log() -> list[str]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith(("httpx", "httpcore")):  # the test's own HTTP client
                lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_whole_account_flow_logs_no_secret(browser: Browser, outbox: Outbox, json_log: list[str]) -> None:
    verified_citizen(browser, outbox, "logs@example.org")
    browser.login("logs@example.org", "wrong password here")
    browser.login("logs@example.org")
    browser.submit("/password/forgot", {"email": "logs@example.org"})
    reset_link = outbox.last("logs@example.org").link()
    browser.get(reset_link.split("testserver", 1)[-1].replace("http://127.0.0.1:8000", ""))

    text = "\n".join(json_log)
    secrets = [PASSWORD, "wrong password here", reset_link.split("token=")[1], browser.cookies["session"]]
    secrets += [m.link().split("token=")[1] for m in outbox.all()]
    for secret in secrets:
        assert secret not in text
    entries = [json.loads(line) for line in json_log]
    requests = [e for e in entries if e["logger"] == "vault.access"]
    assert requests and all(e["request_id"] and "?" not in e["path"] for e in requests)
    assert any(e["msg"] == "login failed" for e in entries)
    assert any(e["msg"] == "mail written to the outbox" for e in entries)


def test_forbidden_fields_are_redacted() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "event", (), None)
    record.password = "hunter2hunter2"  # a careless caller
    record.token = "abc"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["password"] == "[redacted]" and entry["token"] == "[redacted]"


def test_http_clients_stay_quiet_even_at_debug(s3, tmp_path) -> None:
    """At DEBUG, botocore and urllib3 would print S3 signatures and presigned URLs."""
    import io

    from pydantic import SecretStr

    from vault.logs import configure_logging
    from vault.settings import Settings
    from vault.storage.blobs import S3BlobStore

    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in ("botocore", "urllib3")}
    try:
        configure_logging("DEBUG")
        captured = io.StringIO()
        root.handlers[0].stream = captured
        store = S3BlobStore(Settings(storage_backend="s3", s3_endpoint_url=s3.endpoint_url, s3_bucket="quiet-logs",
                                     s3_region=s3.region, s3_access_key_id=s3.access_key,
                                     s3_secret_access_key=SecretStr(s3.secret_key)))
        upload = store.start_upload("object-1")
        upload.write(b"ciphertext")
        upload.complete()
        with store.open_blob("object-1") as blob:
            assert blob.read(100) == b"ciphertext"
        logging.getLogger("vault.test").debug("our own debug lines still print")
        text = captured.getvalue()
        assert "our own debug lines still print" in text
        assert "Signature" not in text and "X-Amz" not in text and s3.access_key not in text
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
