"""Whatever an app or a browser sends to the OpenID Connect endpoints — any text in any parameter
(NUL, control characters, non-ASCII, very long values, parameters repeated, bytes that are not
UTF-8), any Authorization header, junk client assertions — the provider answers with a well-formed
OAuth error (JSON with an RFC error code; a redirect to the app carrying one) or an error page,
never a 5xx, and the next request is served as usual. On SQLite and PostgreSQL (Hypothesis).

Bounded so that it fits in ``make test``: a few dozen examples per endpoint, no deadline (the
first request of a run opens the database)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes, urlencode, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwk, jws

from tests.factories import make_citizen, make_oidc_app
from tests.support import PASSWORD, RP_CALLBACK, RP_LOGGED_OUT, App, Browser

# RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, OIDC Core §3.1.2.6, RFC 9396 §5, and
# FranceConnect's invalid_acr (vault.oidc.profiles). Never server_error: that would be a 5xx in disguise.
OAUTH_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
    "invalid_client", "invalid_grant", "unsupported_grant_type", "invalid_token", "insufficient_scope",
    "unsupported_token_type", "interaction_required", "login_required", "account_selection_required",
    "consent_required", "invalid_request_uri", "invalid_request_object", "request_not_supported",
    "request_uri_not_supported", "registration_not_supported", "invalid_authorization_details", "invalid_acr",
})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

PROPERTIES = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])

# ---- strategies ------------------------------------------------------------------------------------------

# Any text: NUL and other control characters, non-ASCII, letters of every script (no lone surrogates:
# a request carries bytes, and those are what ``raw_bytes`` sends).
junk = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\u00e9\u202e\ufeff\U0001f600%+&=;\"'<>\\"),
            max_size=20),
    st.integers(min_value=1_000, max_value=70_000).map(lambda n: "é" * (n // 2)),  # very long
)
raw_bytes = st.binary(max_size=64)


def plausible(*values: str) -> st.SearchStrategy[str]:
    """Mostly the values a real request carries (so that requests get deep into the checks), else junk."""
    return st.one_of(st.sampled_from(values), junk)


def parameters(known: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Some of ``known`` (each maybe repeated), plus names nobody knows."""
    pairs = st.one_of(*(st.tuples(st.just(name), values) for name, values in known.items()),
                      st.tuples(junk, junk))
    return st.lists(pairs, max_size=12)


def send(client: httpx.Client, method: str, path: str, pairs: list[tuple[str, str]], *, raw: bytes | None = None,
         headers: dict[str, Any] | None = None) -> httpx.Response:
    """A GET with ``pairs`` (or ``raw``, percent-encoded bytes) as its query, or a form POST."""
    if method == "GET":
        if raw is not None:
            return client.get(f"{path}?{quote_from_bytes(raw, safe='=&')}", headers=headers)
        # A URL has room for less than a body (servers refuse a request line of more than some KiB).
        query = urlencode([(k[:2000], v[:2000]) for k, v in pairs])
        query = query if len(query) <= 16_000 else query[:16_000].rsplit("%", 1)[0]
        return client.get(f"{path}?{query}", headers=headers)
    body = raw if raw is not None else urlencode(pairs).encode()
    return client.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                     **(headers or {})})


# ---- what every answer must be ----------------------------------------------------------------------------


def oauth_json(answer: httpx.Response, *, ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
    """An endpoint apps call: its JSON answer, an RFC error when it is not a success."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    body = answer.json()
    assert isinstance(body, dict), body
    if answer.status_code not in ok:
        if "error" in body:
            assert body["error"] in OAUTH_ERRORS, body
            assert isinstance(body.get("error_description", ""), str), body
        else:  # RFC 6750 §3.1: a request without credentials gets a bare challenge
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", (answer, body)
    return body


def page_or_redirect(answer: httpx.Response) -> None:
    """A page a browser meets: an HTML page (the error explained), or a redirect — to the app with a
    code or an RFC error, or within this site (the login page, a logged-out notice)."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    if answer.status_code in (302, 303):
        location = answer.headers["location"]
        if location.startswith(("https://rp.example.org/", RP_CALLBACK, RP_LOGGED_OUT)):
            result = dict(parse_qsl(urlsplit(location).query))
            assert "code" in result or result.get("error") in OAUTH_ERRORS or location.startswith(RP_LOGGED_OUT), \
                location
        else:
            assert location.startswith("/"), location
        return
    content_type = answer.headers.get("content-type", "")
    if content_type.startswith("application/json"):  # a body /authorize cannot read (RFC 6749 §5.2 shape)
        oauth_json(answer, ok=())
        return
    assert content_type.startswith("text/html"), (answer.status_code, content_type)
    assert "<html" in answer.text[:500].lower()


def still_serves(client: httpx.Client, app: App) -> None:
    """The next request, which reads the database, is served as usual."""
    answer = client.post("/introspect", data={"token": "nothing", "client_id": app.client_id,
                                              "client_secret": app.secret or ""})
    assert answer.status_code == 200 and answer.json() == {"active": False}, answer.text


# ---- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture
def apps(engine) -> dict[str, Any]:
    key = jwk.ECKey.generate_key("P-256", private=True)
    public = {"keys": [key.as_dict(private=False) | {"kid": "rp-1", "use": "sig"}]}
    return {
        "post": make_oidc_app(engine, allow_refresh=True),
        "basic": make_oidc_app(engine, auth_method="client_secret_basic", allow_refresh=True),
        "public": make_oidc_app(engine, auth_method="none"),
        "jwt": make_oidc_app(engine, auth_method="private_key_jwt", jwks_json=json.dumps(public)),
        "fc": make_oidc_app(engine, profile="fc-v2"),
        "key": key,
    }


@pytest.fixture
def browsers(app) -> Iterator[dict[str, Browser]]:
    """A browser with nobody logged in, and one where a citizen is."""
    citizen = make_citizen(app)
    with Browser(app) as anonymous, Browser(app) as logged_in:
        assert logged_in.login(citizen.email, PASSWORD).status_code == 303
        yield {"anonymous": anonymous, "logged_in": logged_in}


def client_ids(apps: dict[str, Any]) -> list[str]:
    return [a.client_id for a in apps.values() if isinstance(a, App)]


# ---- /authorize -----------------------------------------------------------------------------------------


@PROPERTIES
@given(data=st.data())
def test_authorize_answers_any_request(apps: dict[str, Any], browsers: dict[str, Browser], data: st.DataObject) -> None:
    ids = client_ids(apps)
    pairs = data.draw(parameters({
        "response_type": plausible("code", "token", "code id_token"),
        "client_id": plausible(*ids),
        "redirect_uri": plausible(RP_CALLBACK),
        "scope": plausible("openid", "openid profile email", "openid documents:read", "profile"),
        "state": plausible("s"), "nonce": plausible("n"),
        "prompt": plausible("none", "login", "consent", "none login"),
        "max_age": plausible("0", "60", "-1", "99999999999"),
        "login_hint": junk, "ui_locales": plausible("en", "fr-FR"),
        "id_token_hint": plausible("eyJhbGciOiJFUzI1NiJ9.e30.AA", "a.b.c"),
        "acr_values": plausible("eidas1", "eidas2"),
        "code_challenge": plausible("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        "code_challenge_method": plausible("S256", "plain"),
        "response_mode": plausible("query", "form_post"),
        "authorization_details": plausible('[{"type":"citizen_documents","document_types":["x"]}]', "[]", "{}"),
        "request": junk, "request_uri": junk,
    }))
    method = data.draw(st.sampled_from(["GET", "POST"]))
    path = data.draw(st.sampled_from(["/authorize", "/api/v2/authorize"]))
    browser = browsers[data.draw(st.sampled_from(["anonymous", "logged_in"]))]
    raw = data.draw(st.none() | raw_bytes)
    page_or_redirect(send(browser, method, path, pairs, raw=raw))
    still_serves(browser, apps["post"])


# ---- /token ---------------------------------------------------------------------------------------------


def _b64url(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


@st.composite
def client_authentication(draw: st.DrawFn, apps: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(form fields, headers) of some way to authenticate an app, most of them wrong."""
    ids = client_ids(apps)
    kind = draw(st.sampled_from(["none", "post", "basic", "basic-raw", "jwt", "jwt-signed"]))
    if kind == "none":
        return draw(st.lists(st.tuples(st.just("client_id"), plausible(*ids)), max_size=2)), {}
    if kind == "post":
        return [("client_id", draw(plausible(*ids))), ("client_secret", draw(plausible(apps["post"].secret)))], {}
    if kind == "basic":
        user, secret = draw(plausible(*ids)), draw(plausible(apps["basic"].secret))
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return [], {"Authorization": f"Basic {token}"}
    if kind == "basic-raw":  # any bytes an HTTP header can carry (no CR, no LF)
        value = draw(st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b))
        return [], {"Authorization": draw(st.sampled_from([b"Basic ", b"basic ", b"Bearer ", b""])) + value}
    # private_key_jwt: a JWT-shaped junk assertion, or one signed with the app's real key but odd claims.
    odd = st.text(alphabet=st.characters(categories=["Cs", "Cc"]), min_size=1, max_size=4)  # lone surrogates, NUL
    claims = draw(st.fixed_dictionaries({}, optional={
        "iss": plausible(apps["jwt"].client_id) | odd, "sub": plausible(apps["jwt"].client_id) | odd,
        "aud": plausible("http://127.0.0.1:8000/token", "http://127.0.0.1:8000"),
        "exp": st.one_of(st.integers(), st.floats(), st.just(int(time.time()) + 60), junk),
        "jti": st.one_of(junk, st.integers(), odd),
        "iat": st.one_of(st.integers(), junk),
    }))
    payload = json.dumps(claims).encode()  # JSON escapes what UTF-8 cannot carry (\ud800)
    if kind == "jwt-signed":
        assertion = jws.serialize_compact({"alg": "ES256", "kid": "rp-1"}, payload, apps["key"])
    else:
        header = draw(st.sampled_from([b'{"alg":"ES256"}', b'{"alg":"none"}', b"[]", b"{", b'{"alg":"HS256"}']))
        assertion = draw(st.one_of(junk, st.just(".".join([_b64url(header), _b64url(payload),
                                                             "c2ln"]))))
    return [("client_assertion_type", draw(plausible(ASSERTION_TYPE))), ("client_assertion", assertion)], {}


@PROPERTIES
@given(data=st.data())
def test_token_answers_any_request(apps: dict[str, Any], browsers: dict[str, Browser], data: st.DataObject) -> None:
    browser = browsers["anonymous"]
    fields = data.draw(parameters({
        "grant_type": plausible("authorization_code", "refresh_token", "client_credentials", "password",
                                "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "code": junk, "refresh_token": junk, "redirect_uri": plausible(RP_CALLBACK),
        "code_verifier": junk, "scope": plausible("openid", "openid profile"),
    }))
    auth, headers = data.draw(client_authentication(apps))
    raw = data.draw(st.none() | raw_bytes) if data.draw(st.integers(0, 9)) == 0 else None
    path = data.draw(st.sampled_from(["/token", "/token", "/api/v2/token"]))
    oauth_json(send(browser, "POST", path, [*fields, *auth], raw=raw, headers=headers))
    still_serves(browser, apps["post"])


@PROPERTIES
@given(data=st.data())
def test_introspection_and_revocation_answer_any_request(apps: dict[str, Any], browsers: dict[str, Browser],
                                                          data: st.DataObject) -> None:
    browser = browsers["anonymous"]
    fields = data.draw(parameters({"token": junk, "token_type_hint": plausible("access_token", "refresh_token")}))
    auth, headers = data.draw(client_authentication(apps))
    path = data.draw(st.sampled_from(["/introspect", "/revoke"]))
    oauth_json(send(browser, "POST", path, [*fields, *auth], headers=headers))
    still_serves(browser, apps["post"])


# ---- /userinfo ------------------------------------------------------------------------------------------


@PROPERTIES
@given(data=st.data())
def test_userinfo_answers_any_request(apps: dict[str, Any], browsers: dict[str, Browser], data: st.DataObject) -> None:
    browser = browsers["anonymous"]
    scheme = data.draw(st.sampled_from([b"Bearer ", b"bearer ", b"DPoP ", b"Basic ", b""]))
    value = data.draw(st.one_of(st.binary(max_size=80), junk.map(lambda s: s.encode()[:4000]))
                      .filter(lambda b: b"\r" not in b and b"\n" not in b))
    headers: dict[str, Any] = {}
    if data.draw(st.booleans()):
        headers["Authorization"] = scheme + value
    if data.draw(st.booleans()):
        headers["DPoP"] = data.draw(st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b))
    path = data.draw(st.sampled_from(["/userinfo", "/api/v2/userinfo"]))
    method = data.draw(st.sampled_from(["GET", "POST"])) if path == "/userinfo" else "GET"  # FranceConnect: GET
    answer = send(browser, method, path, data.draw(parameters({"access_token": junk})), headers=headers)
    oauth_json(answer, ok=())
    still_serves(browser, apps["post"])


# ---- logout, discovery, keys ------------------------------------------------------------------------------


@PROPERTIES
@given(data=st.data())
def test_end_session_answers_any_request(apps: dict[str, Any], browsers: dict[str, Browser], data: st.DataObject) -> None:
    pairs = data.draw(parameters({
        "id_token_hint": plausible("eyJhbGciOiJFUzI1NiJ9.e30.AA", "a.b.c"),
        "post_logout_redirect_uri": plausible(RP_LOGGED_OUT, "https://evil.example/"),
        "client_id": plausible(*client_ids(apps)), "state": junk, "csrf_token": junk, "ui_locales": junk,
    }))
    method = data.draw(st.sampled_from(["GET", "POST"]))
    path = data.draw(st.sampled_from(["/logout", "/api/v1/logout", "/api/v2/session/end"]))
    if path != "/logout":
        method = "GET"
    # The logged-in browser keeps its session: the site's logout needs the CSRF token of its pages.
    browser = browsers[data.draw(st.sampled_from(["anonymous", "logged_in"]))]
    page_or_redirect(send(browser, method, path, pairs, raw=data.draw(st.none() | raw_bytes)))
    still_serves(browser, apps["post"])


@PROPERTIES
@given(path=st.sampled_from(["/.well-known/openid-configuration", "/api/v2/.well-known/openid-configuration",
                             "/jwks", "/api/v2/jwks"]),
       raw=raw_bytes)
def test_discovery_and_keys_ignore_any_query(apps: dict[str, Any], browsers: dict[str, Browser], path: str,
                                             raw: bytes) -> None:
    browser = browsers["anonymous"]
    answer = send(browser, "GET", path, [], raw=raw)
    if b"\x00" in raw:  # refused before any route reads it, like every request carrying a NUL
        assert answer.status_code == 400
        page_or_redirect(answer)
    else:
        body = oauth_json(answer, ok=(200,))
        assert answer.status_code == 200 and ("keys" in body or "issuer" in body), body
    still_serves(browser, apps["post"])


# ---- served as in production ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kept_alive(live_server) -> Iterator[httpx.Client]:
    """One kept-alive connection to a real server (uvicorn, PostgreSQL)."""
    with httpx.Client(base_url=live_server.url, limits=httpx.Limits(max_connections=1), timeout=30) as client:
        yield client


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_real_server_keeps_serving_the_connection(kept_alive: httpx.Client, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(["/authorize", "/token", "/introspect", "/revoke", "/userinfo", "/logout",
                                      "/api/v2/token"]))
    method = "POST" if path in ("/token", "/introspect", "/revoke", "/api/v2/token") else data.draw(
        st.sampled_from(["GET", "POST"]))
    pairs = data.draw(parameters({"client_id": plausible("nobody"), "grant_type": plausible("authorization_code"),
                                  "token": junk, "code": junk, "id_token_hint": junk, "scope": junk}))
    answer = send(kept_alive, method, path, pairs, raw=data.draw(st.none() | raw_bytes))
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    assert answer.headers.get("connection") != "close", answer.headers
    assert kept_alive.get("/.well-known/openid-configuration").status_code == 200
