"""Bytes no app should send: the provider answers with an OAuth error (a page on /authorize, JSON
on the endpoints apps call), the same on SQLite and PostgreSQL, and never a 500."""

from __future__ import annotations

import base64
import json
import socket
from urllib.parse import quote, urlencode, urlsplit

import pytest

from tests.factories import make_oidc_app
from tests.oidc.oidc_support import auth_params
from tests.support import RP_CALLBACK, App, Browser

HOSTILE = ["cödé", 'co"de', "co\x01de", "co\\de", "co\x7fde"]


@pytest.fixture
def app_(engine) -> App:
    return make_oidc_app(engine, allow_refresh=True)


def _authorize(browser: Browser, params: dict[str, str], method: str):
    return browser.get("/authorize?" + urlencode(params)) if method == "GET" else browser.post("/authorize", data=params)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("value", HOSTILE)
def test_a_malformed_response_type_is_an_oauth_error(browser: Browser, app_: App, method: str, value: str) -> None:
    params = auth_params(app_, response_type=value)
    answer = _authorize(browser, params, method)
    assert answer.status_code in (303, 400), answer.status_code
    if answer.status_code == 303:  # the app and its redirect_uri are known: the app is told
        assert answer.headers["location"].startswith(RP_CALLBACK + "?")
        assert "error=unsupported_response_type" in answer.headers["location"]
    else:
        assert "Demande de connexion incorrecte" in answer.text


@pytest.mark.parametrize("value", HOSTILE)
def test_a_malformed_response_type_for_an_unknown_app_is_a_page(browser: Browser, value: str) -> None:
    answer = _authorize(browser, auth_params(App(client_id="nobody", secret=None), response_type=value), "GET")
    assert answer.status_code == 400 and "location" not in answer.headers


@pytest.mark.parametrize("value", HOSTILE)
def test_malformed_authorization_details_are_an_oauth_error(browser: Browser, app_: App, value: str) -> None:
    details = json.dumps([{"type": "citizen_documents", "document_types": [value], "actions": ["read"]}])
    answer = _authorize(browser, auth_params(app_, authorization_details=details), "GET")
    assert answer.status_code == 303
    assert "error=invalid_authorization_details" in answer.headers["location"]
    details = json.dumps([{"type": "citizen_documents", "document_types": ["x"], value: 1}])
    assert _authorize(browser, auth_params(app_, authorization_details=details), "GET").status_code == 303


@pytest.mark.parametrize("credentials", [
    "w6k6w6k=",                                         # fine base64, fine UTF-8 ("é:é"): an unknown app
    "Basic-is-not-base64###",
    "YQ",                                               # base64 without its padding
    "/w==",                                             # one byte that is not UTF-8
    base64.b64encode(b"a\x00b:secret").decode(),        # NUL in the client id
    base64.b64encode(b"a%00b:secret").decode(),         # NUL once percent-decoded
])
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_bad_basic_credentials_are_invalid_client(browser: Browser, app_: App, path: str, credentials: str) -> None:
    answer = browser.post(path, data={"grant_type": "authorization_code", "code": "x", "token": "x"},
                          headers={"Authorization": f"Basic {credentials}"})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_non_ascii_basic_credentials_are_invalid_client(browser: Browser, path: str) -> None:
    answer = browser.post(path, data={"grant_type": "authorization_code", "code": "x", "token": "x"},
                          headers={"Authorization": "Basic é:é".encode()})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize("field", ["client_id", "nonce", "state", "scope", "redirect_uri", "login_hint",
                                   "code_challenge", "prompt", "max_age", "ui_locales"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nul_in_an_authorization_parameter_is_refused(browser: Browser, app_: App, field: str, method: str) -> None:
    answer = _authorize(browser, auth_params(app_, **{field: "a\x00b"}), method)
    assert answer.status_code == 400 and "location" not in answer.headers


@pytest.mark.parametrize("field", ["client_id", "client_secret", "code", "refresh_token", "token", "redirect_uri",
                                   "code_verifier", "token_type_hint", "grant_type"])
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_nul_in_a_token_request_is_refused(browser: Browser, app_: App, path: str, field: str) -> None:
    data = {"grant_type": "refresh_token", "client_id": app_.client_id, "client_secret": app_.secret or "",
            "refresh_token": "r", "code": "c", "token": "t", field: "a\x00b"}
    answer = browser.post(path, data=data)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"


def test_nul_in_a_bearer_token_or_a_query_is_refused(browser: Browser) -> None:
    assert browser.get("/userinfo", headers={"Authorization": "Bearer a\x00b"}).status_code in (400, 401)
    answer = browser.post("/userinfo", data={"access_token": "a\x00b"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert browser.get("/logout?" + urlencode({"client_id": "a\x00b"})).status_code == 400
    assert browser.get("/authorize/continue/a%00b").status_code == 400


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers


def test_a_real_server_keeps_the_connection_after_a_malformed_request(live_server) -> None:
    """Served as in production (uvicorn): a clean 400, and the kept-alive connection still serves."""
    address = urlsplit(live_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        for value in [*HOSTILE, "code"]:
            query = "response_type=" + quote(value) + "&client_id=nobody&redirect_uri=" + quote(RP_CALLBACK)
            sock.sendall(f"GET /authorize?{query} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
            status, headers = _read_response(sock)
            assert status == 400 and headers.get("connection") != "close", (value, status, headers)


@pytest.mark.parametrize("sub", ["\ud800", "a\x00b", "é" * 10, "x" * 65])
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_a_client_assertion_naming_an_impossible_app_is_invalid_client(browser: Browser, path: str, sub: str) -> None:
    """JSON carries what a form cannot (a lone surrogate, escaped): the app it names does not exist."""
    def b64(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    assertion = ".".join([b64(b'{"alg":"ES256"}'), b64(json.dumps({"iss": sub, "sub": sub}).encode()), "c2ln"])
    answer = browser.post(path, data={"grant_type": "authorization_code", "code": "x", "token": "x",
                                      "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                      "client_assertion": assertion})
    assert answer.status_code in (400, 401) and answer.json()["error"] == "invalid_client", answer.text
