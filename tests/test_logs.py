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
