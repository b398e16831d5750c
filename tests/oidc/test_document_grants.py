"""Documents the citizen chooses (RFC 9396, Rich Authorization Requests): an app asks for types of
documents, the citizen ticks which ones, and the app's tokens open those and nothing else."""

from __future__ import annotations

import json
import re

import pytest

from tests.factories import make_document, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange
from tests.support import Browser, query_of

PROOF = {"type": "citizen_documents", "document_types": ["proof_of_address"], "actions": ["read"],
         "purpose": "Inscription à la cantine"}


@pytest.fixture
def vault(citizen: Browser) -> dict[str, dict]:
    """Three documents: two proofs of address, one tax notice."""
    return {"edf": make_document(citizen, type="proof_of_address", title="Facture EDF"),
            "bail": make_document(citizen, type="proof_of_address", title="Quittance de loyer"),
            "impots": make_document(citizen, type="tax_notice", title="Avis d'imposition 2026")}


def details(*objects: dict) -> str:
    return json.dumps(list(objects))


def test_consent_offers_the_requested_types_and_the_token_opens_only_the_chosen_document(
        citizen: Browser, engine, vault: dict[str, dict]) -> None:
    """Nothing ticked in advance; the tax notice is not offered; the token carries the one choice."""
    app = make_oidc_app(engine, scope="openid documents:read", name="Cantine")
    asked = authorize(citizen, app, scope="openid", authorization_details=details(PROOF), consent=None)
    page = asked.response.text
    assert asked.steps == ["consent"] and "Inscription à la cantine" in page
    offered = re.findall(r'name="document" value="([^"]+)"', page)
    assert sorted(offered) == sorted([vault["edf"]["id"], vault["bail"]["id"]])
    assert "checked" not in page and "Avis d'imposition 2026" not in page

    flow = authorize(citizen, app, scope="openid", authorization_details=details(PROOF), documents=(vault["edf"]["id"],))
    tokens = exchange(citizen, flow).json()
    assert tokens["authorization_details"] == [{**PROOF, "documents": [vault["edf"]["id"]]}]
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    listed = citizen.get("/api/v1/documents", headers=bearer).json()
    assert [d["id"] for d in listed["items"]] == [vault["edf"]["id"]] and listed["total"] == 1
    assert citizen.get(f"/api/v1/documents/{vault['edf']['id']}/content", headers=bearer).status_code == 200
    for other in ("bail", "impots"):
        for path in ("", "/content"):
            assert citizen.get(f"/api/v1/documents/{vault[other]['id']}{path}", headers=bearer).status_code == 404

    introspected = citizen.post("/introspect", data={"token": tokens["access_token"], "client_id": app.client_id,
                                                     "client_secret": app.secret}).json()
    assert introspected["active"] is True
    assert introspected["authorization_details"] == tokens["authorization_details"]


def test_the_scope_alone_lets_the_citizen_choose_among_every_type_and_nothing_ticked_grants_nothing(
        citizen: Browser, engine, vault: dict[str, dict]) -> None:
    app = make_oidc_app(engine, scope="openid documents:read")
    asked = authorize(citizen, app, scope="openid documents:read", consent=None)
    assert len(re.findall(r'name="document"', asked.response.text)) == 3
    tokens = exchange(citizen, authorize(citizen, app, scope="openid documents:read")).json()
    assert tokens["authorization_details"][0]["documents"] == []
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert citizen.get("/api/v1/documents", headers=bearer).json()["total"] == 0
    assert citizen.get(f"/api/v1/documents/{vault['edf']['id']}", headers=bearer).status_code == 404


def test_a_new_choice_applies_to_the_new_tokens_only(citizen: Browser, engine, vault: dict[str, dict]) -> None:
    app = make_oidc_app(engine, scope="openid documents:read")
    first = exchange(citizen, authorize(citizen, app, scope="openid", authorization_details=details(PROOF),
                                        documents=(vault["edf"]["id"],))).json()["access_token"]
    second = exchange(citizen, authorize(citizen, app, scope="openid", authorization_details=details(PROOF),
                                         documents=(vault["bail"]["id"],))).json()["access_token"]
    def ids(token: str) -> list[str]:
        return [d["id"] for d in citizen.get("/api/v1/documents", headers={"Authorization": f"Bearer {token}"})
                .json()["items"]]
    assert ids(first) == [vault["edf"]["id"]] and ids(second) == [vault["bail"]["id"]]


@pytest.mark.parametrize("bad", [
    "pas du json",
    json.dumps({"type": "citizen_documents"}),                                  # not an array
    json.dumps([]),                                                              # empty
    details({**PROOF, "type": "payment_initiation"}),                            # unknown type
    details({**PROOF, "document_types": ["passport_of_the_moon"]}),              # unknown document type
    details({**PROOF, "document_types": []}),
    details({**PROOF, "actions": ["read", "delete"]}),                           # only read
    details({**PROOF, "purpose": "x" * 201}),                                    # purpose too long
    details({**PROOF, "max_documents": 0}),
])
def test_malformed_authorization_details_go_back_to_the_app(citizen: Browser, engine, bad: str) -> None:
    """The app is told, at its redirect URI with its state; nothing is asked of the citizen."""
    app = make_oidc_app(engine, scope="openid documents:read")
    flow = authorize(citizen, app, scope="openid", authorization_details=bad, consent=None)
    assert flow.response.status_code in (302, 303) and flow.steps == []
    answer = query_of(flow.response.headers["location"])
    assert answer["error"] == "invalid_authorization_details" and answer["state"] == flow.params["state"]
    assert "code" not in answer


def test_an_app_not_registered_for_documents_may_not_ask_for_them(citizen: Browser, engine) -> None:
    app = make_oidc_app(engine, scope="openid profile")
    flow = authorize(citizen, app, scope="openid", authorization_details=details(PROOF), consent=None)
    assert query_of(flow.response.headers["location"])["error"] == "invalid_authorization_details"


def test_a_choice_that_was_not_offered_grants_nothing(citizen: Browser, engine, vault: dict[str, dict],
                                                      vault_app) -> None:
    """A document of another type, another citizen's, or more than max_documents: 400, no code."""
    from tests.factories import citizen_browser

    with citizen_browser(vault_app, email="voisin@example.org") as neighbour:
        theirs = make_document(neighbour, type="proof_of_address", title="Chez le voisin")
    app = make_oidc_app(engine, scope="openid documents:read")
    for chosen, limit in (((vault["impots"]["id"],), None), ((theirs["id"],), None),
                          ((vault["edf"]["id"], vault["bail"]["id"]), 1)):
        request = {**PROOF, **({"max_documents": limit} if limit else {})}
        flow = authorize(citizen, app, scope="openid", authorization_details=details(request), documents=chosen)
        assert flow.response.status_code == 400, flow.response.text[:300]
        assert "code=" not in flow.response.headers.get("location", "")


def test_mes_applications_shows_and_withdraws_one_document_at_once(citizen: Browser, engine,
                                                                   vault: dict[str, dict]) -> None:
    """The page lists what the app can read (since when) and what it deposited; "Ne plus partager"
    takes one document back: the very next call with the same token answers 404 for it."""
    app = make_oidc_app(engine, scope="openid documents:read documents:deposit", name="Cantine")
    tokens = exchange(citizen, authorize(citizen, app, scope="openid documents:deposit",
                                         authorization_details=details(PROOF),
                                         documents=(vault["edf"]["id"], vault["bail"]["id"]))).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    deposit = citizen.post("/api/v1/documents", content=b"%PDF-1.7\nmenu\n%%EOF", headers={
        **bearer, "Content-Type": "application/pdf", "X-Document-Type": "other", "X-Document-Title": "Menu"})
    assert deposit.status_code == 201
    page = citizen.get("/account/apps").text
    assert "Facture EDF" in page and "Quittance de loyer" in page and "Avis d'imposition 2026" not in page
    assert "Justificatifs qu'il a déposés" in page and "Menu" in page

    withdrawn = citizen.submit("/account/apps", {"client_id": app.client_id, "document_id": vault["edf"]["id"]},
                               action="/account/apps/withdraw-document")
    assert withdrawn.status_code == 303
    assert citizen.get(f"/api/v1/documents/{vault['edf']['id']}", headers=bearer).status_code == 404
    assert citizen.get(f"/api/v1/documents/{vault['bail']['id']}", headers=bearer).status_code == 200
    assert "Facture EDF" not in citizen.get("/account/apps").text
    again = citizen.submit("/account/apps", {"client_id": app.client_id, "document_id": vault["edf"]["id"]},
                           action="/account/apps/withdraw-document")
    assert again.status_code == 404


def test_a_type_asked_for_that_the_citizen_has_none_of_is_named_with_the_way_to_add_one(
        citizen: Browser, engine, vault: dict[str, dict]) -> None:
    """Proofs of address and an identity document asked in one request, no identity document in the
    vault: the proofs are offered, and the page names the missing type beside "Ajouter un justificatif"."""
    app = make_oidc_app(engine, scope="openid documents:read")
    both = {**PROOF, "document_types": ["proof_of_address", "identity"]}
    page = authorize(citizen, app, scope="openid", authorization_details=details(both), consent=None).response.text
    assert len(re.findall(r'name="document"', page)) == 2
    assert "Pas encore dans votre coffre-fort : Pièce d'identité." in page
    assert re.search(r'href="/documents\?next=/authorize/continue/[^"]+">Ajouter un justificatif</a>', page)


def test_a_citizen_without_the_document_adds_one_and_comes_back_to_the_request(citizen: Browser, engine) -> None:
    """No proof of address yet: the consent page says so and links to the upload, which comes back
    to the same pending request, now offering the new document. Nowhere else is a way back."""
    import io

    from tests.factories import pdf

    app = make_oidc_app(engine, scope="openid documents:read")
    asked = authorize(citizen, app, scope="openid", authorization_details=details(PROOF), consent=None)
    page = asked.response.text
    assert "aucun justificatif de ce type" in page and 'name="document"' not in page
    add = re.search(r'href="(/documents\?next=[^"]+)"', page).group(1)
    upload_page = citizen.get(add).text
    action = re.search(r'<form method="post" action="([^"]+)" enctype="multipart/form-data" id="upload-form"', upload_page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', upload_page).group(1)
    sent = citizen.post(action.group(1).replace("&amp;", "&"), data={"csrf_token": token, "type": "proof_of_address",
                                                                    "title": "Facture d'eau"},
                        files={"file": ("eau.pdf", io.BytesIO(pdf()), "application/pdf")})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/authorize/continue/")
    back = citizen.get(sent.headers["location"]).text
    assert "Facture d'eau" in back and len(re.findall(r'name="document"', back)) == 1

    evil = citizen.post("/documents?next=https://evil.example/", data={"csrf_token": token, "type": "other"},
                        files={"file": ("a.pdf", io.BytesIO(pdf()), "application/pdf")})
    assert evil.status_code == 303 and evil.headers["location"] == "/documents?notice=added"


def test_the_export_says_which_documents_each_app_may_read(citizen: Browser, engine, vault_app,
                                                           vault: dict[str, dict]) -> None:
    import io
    import uuid
    import zipfile

    from sqlmodel import Session

    from vault.gdpr.service import Staff

    app = make_oidc_app(engine, scope="openid documents:read", name="Cantine")
    exchange(citizen, authorize(citizen, app, scope="openid", authorization_details=details(PROOF),
                                documents=(vault["bail"]["id"],)))
    citizen_id = uuid.UUID(citizen.get("/api/v1/me").json()["id"])
    with Session(engine) as db:
        archive = b"".join(vault_app.state.services.gdpr.export(db, citizen_id=citizen_id, by=Staff("system:test", "t")))
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        cantine = json.loads(zf.read("applications.json"))[0]
    assert [d["titre"] for d in cantine["justificatifs_consultables"]] == ["Quittance de loyer"]


def test_matrix_of_apps_citizens_endpoints_and_methods(citizen: Browser, engine, vault_app,
                                                       vault: dict[str, dict]) -> None:
    """Three apps acting for one citizen — reading with a grant of one document out of three,
    depositing only, and without any document scope — against every document endpoint and method,
    on the citizen's documents, another app's deposit and another citizen's document: only the
    intended cells succeed; a document the app may not see answers 404, a missing scope 403."""
    from tests.factories import citizen_browser

    with citizen_browser(vault_app, email="voisine@example.org") as neighbour:
        theirs = make_document(neighbour, type="proof_of_address", title="Chez la voisine")
    reader = make_oidc_app(engine, scope="openid documents:read", name="Lecteur")
    depositor = make_oidc_app(engine, scope="openid documents:deposit", name="Dépôt")
    outsider = make_oidc_app(engine, scope="openid profile", name="Sans justificatif")

    def bearer(app, **kw) -> dict[str, str]:
        token = exchange(citizen, authorize(citizen, app, **kw)).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    tokens = {
        "reader": bearer(reader, scope="openid", authorization_details=details(PROOF), documents=(vault["edf"]["id"],)),
        "depositor": bearer(depositor, scope="openid documents:deposit"),
        "outsider": bearer(outsider, scope="openid profile"),
    }
    deposit = citizen.post("/api/v1/documents", content=b"%PDF-1.7\nrecu\n%%EOF", headers={
        **tokens["depositor"], "Content-Type": "application/pdf", "X-Document-Title": "Re%C3%A7u"}).json()
    targets = {"granted": vault["edf"]["id"], "same_type": vault["bail"]["id"], "other_type": vault["impots"]["id"],
               "deposit": deposit["id"], "neighbour": theirs["id"]}
    reads = {"GET": "", "GET content": "/content", "HEAD content": "/content"}
    expected = {  # app → the targets it may read; changes allowed on its own deposit only
        "reader": {"granted"}, "depositor": {"deposit"}, "outsider": set(),
    }
    for app_name, headers in tokens.items():
        for target, document_id in targets.items():
            for label, suffix in reads.items():
                method = label.split()[0]
                got = citizen.request(method, f"/api/v1/documents/{document_id}{suffix}", headers=headers).status_code
                want = 403 if app_name == "outsider" else 200 if target in expected[app_name] else 404
                assert got == want, (app_name, target, label, got)
            got = citizen.patch(f"/api/v1/documents/{document_id}", headers=headers, json={"title": "Changé"}).status_code
            want = 403 if app_name != "depositor" else 200 if target == "deposit" else 404
            assert got == want, (app_name, target, "PATCH", got)
        listed = [d["id"] for d in citizen.get("/api/v1/documents", headers=headers).json().get("items", [])]
        assert sorted(listed) == sorted(targets[t] for t in expected[app_name]), app_name
        posted = citizen.post("/api/v1/documents", content=b"%PDF-1.7\nx\n%%EOF",
                              headers={**headers, "Content-Type": "application/pdf"}).status_code
        assert posted == (201 if app_name == "depositor" else 403), (app_name, posted)
    for app_name, headers in tokens.items():  # deletions last: they change the vault
        for target, document_id in targets.items():
            got = citizen.delete(f"/api/v1/documents/{document_id}", headers=headers).status_code
            want = 403 if app_name != "depositor" else 204 if target == "deposit" else 404
            assert got == want, (app_name, target, "DELETE", got)
    titles = {d["title"] for d in citizen.get("/api/v1/documents").json()["items"]}
    assert {"Facture EDF", "Quittance de loyer", "Avis d'imposition 2026"} <= titles  # the citizen's, untouched
    assert not titles & {"Reçu", "Changé"}  # the deposit went, by its own app's hand


def test_an_app_that_lost_document_access_while_the_citizen_chose_gets_nothing(citizen: Browser, engine,
                                                                               vault: dict[str, dict]) -> None:
    """The registration changed while the consent page was open: the app is told, no code, no 500."""
    from sqlmodel import Session

    from vault.oidc.models import OAuthClient

    app = make_oidc_app(engine, scope="openid documents:read")
    asked = authorize(citizen, app, scope="openid", authorization_details=details(PROOF), consent=None)
    assert asked.steps == ["consent"]
    with Session(engine) as db:
        row = db.get(OAuthClient, app.client_id)
        row.scope = "openid profile"
        db.add(row)
        db.commit()
    action = asked.response.text.split('action="/authorize/continue/')[1].split('"')[0]
    answer = citizen.post(f"/authorize/continue/{action}", data={
        "decision": "allow", "document": vault["edf"]["id"], "csrf_token": citizen.form_token("/login")})
    assert answer.status_code in (302, 303)
    result = query_of(answer.headers["location"])
    assert result["error"] == "invalid_authorization_details" and "code" not in result
