"""The OpenAPI document (/openapi.json) says what the service does, and schemathesis holds the
service to it: every operation fuzzed from the document (valid and invalid data), as a citizen
(session cookie and CSRF header), as an app (access token) and as a stranger (whatever credentials
the fuzzer makes up), then statefully as the citizen and the app (upload → read → download → change
→ delete, following the document's links). No answer may be a 5xx, have a status the document does
not declare, another content type, or a body that does not match the declared schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Match

from tests.factories import citizen_browser, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange
from tests.support import Browser
from vault.storage.models import DOCUMENT_TYPES

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 12  # per actor and database: the whole module stays within about two minutes
OIDC_OPERATIONS = {("GET", "/.well-known/openid-configuration"), ("GET", "/jwks"), ("GET", "/authorize"),
                   ("POST", "/authorize"), ("POST", "/token"), ("POST", "/revoke"), ("POST", "/introspect"),
                   ("GET", "/userinfo"), ("POST", "/userinfo"), ("GET", "/logout"), ("POST", "/logout")}


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


# ---- the document itself ---------------------------------------------------------------------------------------


def test_the_document_describes_what_the_api_answers(app: Any) -> None:
    with Browser(app) as browser:
        document = browser.get("/openapi.json").json()
    validate(document)  # valid OpenAPI 3.1, as code generators and gateways read it
    schemas = document["components"]["schemas"]
    # Errors are the service's own shape, 422 included: never FastAPI's validation error.
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ApiError"]["required"]) == {"error", "detail"}
    for method, path, operation in _operations(document):
        if path.startswith("/api/"):
            assert {"400", "401", "503"} <= set(operation["responses"]), (method, path)
            for status, answer in operation["responses"].items():
                if status >= "400" and status != "416":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ApiError"}, (method, path, status)
            if operation.get("parameters"):
                assert "422" in operation["responses"], (method, path)
    documents = document["paths"]["/api/v1/documents"]
    upload = documents["post"]
    for status in ("400", "401", "403", "413", "415", "422", "503"):
        assert status in upload["responses"], status
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert form["properties"]["type"]["enum"] == list(DOCUMENT_TYPES)
    assert "application/octet-stream" in upload["requestBody"]["content"]  # the raw body, fields in headers
    assert schemas["DocumentPublic"]["properties"]["type"]["enum"] == list(DOCUMENT_TYPES)
    one = document["paths"]["/api/v1/documents/{document_id}"]
    assert {"404", "409"} <= set(one["delete"]["responses"]) and "404" in one["get"]["responses"]
    content = document["paths"]["/api/v1/documents/{document_id}/content"]["get"]["responses"]
    assert {"200", "206", "404", "416"} <= set(content) and "application/pdf" in content["200"]["content"]
    # Who may call what: an app's bearer token, or the citizen's session (with the CSRF header to change).
    security = document["components"]["securitySchemes"]
    assert security["appToken"] == {**security["appToken"], "type": "http", "scheme": "bearer"}
    assert security["citizenSession"]["in"] == "cookie" and security["csrfHeader"]["name"] == "X-CSRF-Token"
    assert upload["security"] == [{"appToken": [], "cityApps": ["documents:deposit"]},
                                  {"citizenSession": [], "csrfCookie": [], "csrfHeader": []}]
    assert documents["get"]["security"] == [{"appToken": [], "cityApps": ["documents:read"]},
                                            {"appToken": [], "cityApps": ["documents:deposit"]}, {"citizenSession": []}]
    flow = security["cityApps"]["flows"]["authorizationCode"]
    assert flow["tokenUrl"].endswith("/token") and {"openid", "documents:read", "documents:deposit"} <= set(flow["scopes"])
    # The OpenID Connect endpoints: their parameters, and RFC 6749's errors where apps read them.
    for method, path in OIDC_OPERATIONS:
        operation = document["paths"][path][method.lower()]
        assert operation.get("parameters") or operation.get("requestBody") or path in (
            "/.well-known/openid-configuration", "/jwks", "/userinfo"), (method, path)
    authorize_query = {p["name"]: p for p in document["paths"]["/authorize"]["get"]["parameters"]}
    assert {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge"} <= set(
        authorize_query) and authorize_query["client_id"]["required"]
    token = document["paths"]["/token"]["post"]
    token_form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert token_form["properties"]["grant_type"]["enum"] == ["authorization_code", "refresh_token"]
    for status in ("400", "401"):
        assert token["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/OAuthErrorBody"}
    assert "application/jwt" in document["paths"]["/userinfo"]["get"]["responses"]["200"]["content"]
    assert "text/html" in document["paths"]["/authorize"]["get"]["responses"]["400"]["content"]


def test_an_app_token_on_the_citizens_own_routes_is_refused_as_json(app: Any, engine: Any) -> None:
    with citizen_browser(app) as browser, Browser(app) as the_app:
        bearer = _actors(app, engine, browser)[1].headers
        for path in ("/api/v1/me", "/api/v1/me/access-log"):  # the citizen's session only, never a token
            answer = the_app.get(path, headers=bearer)
            assert answer.status_code == 401 and answer.json()["error"] == "unauthenticated", (path, answer.text)


def test_cookie_names_follow_the_issuer(settings: Any, engine: Any) -> None:
    from vault.app import create_app

    secure = create_app(settings.model_copy(update={"issuer": "https://vault.example.fr"}), engine=engine)
    schemes = secure.openapi()["components"]["securitySchemes"]
    assert schemes["citizenSession"]["name"] == "__Host-session" and schemes["csrfCookie"]["name"] == "__Host-csrf"


# ---- fuzzing -----------------------------------------------------------------------------------------------


@dataclass
class Actor:
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    generated: bool = False  # the credentials the fuzzer made up (garbage tokens, cookies, Basic headers)

    def authenticate(self, case: schemathesis.Case) -> None:
        """The actor's credentials in place of whatever the fuzzer generated for the security schemes."""
        if self.generated:
            return
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-csrf-token")}
        cookies = {k: v for k, v in (case.cookies or {}).items() if k not in ("session", "csrf")}
        case.headers = {**headers, **self.headers}
        case.cookies = {**cookies, **self.cookies}


def _actors(app: Any, engine: Any, browser: Browser) -> list[Actor]:
    citizen = Actor("citizen", headers={"X-CSRF-Token": browser.cookies["csrf"]},
                    cookies={"session": browser.cookies["session"], "csrf": browser.cookies["csrf"]})
    client = make_oidc_app(engine, scope="openid profile email documents:read documents:deposit",
                           name="Portail des démarches")
    token = exchange(browser, authorize(browser, client, scope="openid profile documents:read documents:deposit"))
    assert token.status_code == 200, token.text
    return [citizen, Actor("app", headers={"Authorization": f"Bearer {token.json()['access_token']}"}),
            Actor("stranger", generated=True)]


FUZZ_SETTINGS = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck),
                         phases=[Phase.explicit, Phase.generate, Phase.shrink])


def _fuzz(operation: Any, actor: Actor) -> None:
    @FUZZ_SETTINGS
    @given(case=st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    def fuzz(case: schemathesis.Case) -> None:
        actor.authenticate(case)
        case.call_and_validate(checks=CHECKS)

    fuzz()


def test_fuzz_every_operation_as_a_citizen_an_app_and_a_stranger(app: Any, engine: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with citizen_browser(app) as browser:
        actors = _actors(app, engine, browser)
        seen: set[tuple[str, str]] = set()
        for result in schema.get_all_operations():
            operation = result.ok()
            seen.add((operation.method.upper(), operation.path))
            for actor in actors:
                try:
                    _fuzz(operation, actor)
                except Exception as exc:
                    exc.add_note(f"{operation.method.upper()} {operation.path} as {actor.name}")
                    raise
        assert seen >= OIDC_OPERATIONS and ("POST", "/api/v1/documents") in seen


def _empty_the_vault(browser: Browser) -> None:
    csrf = {"X-CSRF-Token": browser.cookies["csrf"]}
    for document in browser.get("/api/v1/documents", params={"limit": 200}).json()["items"]:
        assert browser.delete(f"/api/v1/documents/{document['id']}", headers=csrf).status_code == 204


PDF_HEAD = b"%PDF-1.7\n"


def _a_file_the_vault_takes(case: schemathesis.Case) -> None:
    """An upload's generated bytes, behind a PDF's signature: the vault takes only the types it can
    sniff (415 otherwise), and without a 201 no scenario would go past its first step."""
    if case.operation.method.upper() != "POST" or case.operation.path != "/api/v1/documents":
        return
    if isinstance(case.body, (bytes, bytearray)):
        case.body = PDF_HEAD + bytes(case.body)
    elif isinstance(case.body, dict) and isinstance(case.body.get("file"), (bytes, str)):
        raw = case.body["file"]
        case.body = {**case.body, "file": PDF_HEAD + (raw.encode() if isinstance(raw, str) else raw)}


def test_stateful_upload_read_download_change_delete(app: Any, engine: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with citizen_browser(app) as browser:
        _empty_the_vault(browser)  # what the fuzzing left
        for actor in _actors(app, engine, browser)[:2]:
            answered: list[tuple[str, str, int]] = []

            class Machine(schema.as_state_machine()):  # type: ignore[misc]
                def before_call(self, case: schemathesis.Case, actor: Actor = actor) -> None:
                    actor.authenticate(case)
                    _a_file_the_vault_takes(case)

                def after_call(self, response: Any, case: schemathesis.Case,
                               answered: list[tuple[str, str, int]] = answered) -> None:
                    answered.append((case.operation.method.upper(), case.operation.path, response.status_code))

                def teardown(self) -> None:
                    # Each scenario starts from an empty vault (the same steps give the same answers,
                    # as Hypothesis requires; the quota is never reached by the sum of the scenarios).
                    _empty_the_vault(browser)

                def validate_response(self, response: Any, case: schemathesis.Case,
                                      additional_checks: Any = None, **kwargs: Any) -> None:  # noqa: ARG002  # noqa: ARG002
                    case.validate_response(response, checks=CHECKS)

            Machine.run(settings=settings(max_examples=8, stateful_step_count=6, deadline=None, database=None,
                                          derandomize=True, suppress_health_check=list(HealthCheck)))
            # The scenarios went past the upload: documents were stored, then reached by their links.
            stored = [a for a in answered if a[:2] == ("POST", "/api/v1/documents") and a[2] == 201]
            followed = [a for a in answered if "{document_id}" in a[1] and 200 <= a[2] < 300]
            assert stored and followed, (actor.name, sorted(set(answered)))


# ---- routing ---------------------------------------------------------------------------------------------------


def _all_routes(routes: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        flat.extend(_all_routes(inner.routes) if inner is not None else [route])
    return flat


def test_no_request_is_claimed_by_two_routes(app: Any) -> None:
    """The routers are tried in the order vault/app.py includes them (the OpenID endpoints apps call
    most first: fewer routes tried per request): that order must never decide which route answers."""
    routes = [r for r in _all_routes(app.router.routes) if getattr(r, "methods", None)]
    assert len(routes) > 100
    for route in routes:
        concrete = re.sub(r"\{[^}]+\}", "x1", route.path)
        for method in route.methods:
            scope = {"type": "http", "path": concrete, "method": method, "root_path": "", "headers": []}
            claimed = [other.path for other in routes if other.matches(scope)[0] == Match.FULL]
            assert claimed == [route.path], (method, concrete, claimed)
