"""Share links, tried as the citizen and as the landlord they give a link to would: a link and a
code open chosen documents only, until the link ends; wrong codes lock it; every opening is in the
access log; nothing in the database or the log opens a link; GDPR follows."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import make_document, pdf
from tests.support import Browser
from vault.db import utcnow
from vault.gdpr import retention
from vault.gdpr.service import Staff
from vault.mail import make_mailer
from vault.storage.models import AccessLogEntry, ShareLink
from vault.storage.sharing import CODE_ALPHABET

DPO = Staff(actor="staff:test", label="DPO de test")
URL = re.compile(r'<code class="share-url">https?://[^/]+(/s/[A-Za-z0-9_-]+)</code>')
CODE = re.compile(r'<code class="share-code">([A-Z0-9]{4}-[A-Z0-9]{4})</code>')


def share(citizen: Browser, *document_ids: str, hours: str = "168", label: str = "") -> tuple[str, str]:
    """Create a link through the page; return its path (/s/…) and its code as shown."""
    page = citizen.submit("/shares/new", {"document": list(document_ids), "hours": hours, "label": label})
    assert page.status_code == 201, page.text[:2000]
    url, code = URL.search(page.text), CODE.search(page.text)
    assert url and code, page.text
    return url.group(1), code.group(1)


def visitor(vault_app) -> Browser:
    return Browser(vault_app)


def enter_code(browser: Browser, path: str, code: str):
    """Post a code as the link's form does (its CSRF token taken from any form: the link's page may
    already answer 410 when the form was loaded before)."""
    return browser.post(path, data={"code": code, "csrf_token": browser.form_token("/login")})


@pytest.fixture
def two_documents(citizen: Browser) -> tuple[dict, dict, bytes, bytes]:
    lease, payslip = pdf(4000, marker=b"LEASE"), pdf(5000, marker=b"PAYSLIP")
    first = make_document(citizen, lease, filename="bail.pdf", title="Bail", type="proof_of_address")
    second = make_document(citizen, payslip, filename="paie.pdf", title="Fiche de paie", type="income")
    return first, second, lease, payslip


def test_a_link_and_its_code_give_the_chosen_document_and_nothing_else(vault_app, citizen, two_documents,
                                                                        engine) -> None:
    lease_doc, payslip_doc, lease, _ = two_documents
    path, code = share(citizen, lease_doc["id"], label="Mon propriétaire")
    assert len(code) == 9 and all(ch in CODE_ALPHABET for ch in code.replace("-", ""))
    secret = path.removeprefix("/s/")
    assert len(secret) >= 22  # ≥ 128 bits, URL-safe

    landlord = visitor(vault_app)
    page = landlord.get(path)
    assert page.status_code == 200 and 'name="code"' in page.text and "Bail" not in page.text
    assert page.headers["X-Robots-Tag"].startswith("noindex") and page.headers["Referrer-Policy"] == "no-referrer"
    # No document before the code.
    assert landlord.get(f"{path}/documents/{lease_doc['id']}").headers["location"] == path

    opened = enter_code(landlord, path, code.lower().replace("-", " "))  # as typed from a phone call
    assert opened.status_code == 303 and opened.headers["location"] == path
    listing = landlord.get(path)
    assert listing.status_code == 200 and "Bail" in listing.text and "Fiche de paie" not in listing.text
    download = landlord.get(f"{path}/documents/{lease_doc['id']}")
    assert download.status_code == 200 and download.content == lease
    assert "attachment" in download.headers["content-disposition"]
    # The other document does not exist for the link, like a document that does not exist at all.
    assert landlord.get(f"{path}/documents/{payslip_doc['id']}").status_code == 404
    assert landlord.get(f"{path}/documents/{uuid.uuid4()}").status_code == 404

    # The link never opens the citizen's account.
    assert landlord.get("/documents").status_code in (302, 303, 401)
    assert landlord.get("/api/v1/documents").status_code == 401
    assert landlord.get(f"/documents/{lease_doc['id']}/download").status_code in (302, 303, 401)

    # The citizen sees the opening and the download, with the note they gave.
    log = citizen.get("/account/access-log")
    assert "Lien de partage « Mon propriétaire »" in log.text and "a été ouvert avec le bon code" in log.text
    with Session(engine) as db:
        actions = [e.action for e in db.exec(select(AccessLogEntry).where(AccessLogEntry.actor_kind == "link"))]
    assert sorted(actions) == ["open", "read"]
    links = citizen.get("/shares")
    assert "Mon propriétaire" in links.text and "Ouvert 1 fois" in links.text and "actif" in links.text


def test_neither_the_database_nor_the_log_opens_a_link(vault_app, citizen, two_documents, engine, caplog) -> None:
    caplog.set_level(logging.INFO)
    lease_doc, *_ = two_documents
    path, code = share(citizen, lease_doc["id"])
    secret, bare = path.removeprefix("/s/"), code.replace("-", "")
    landlord = visitor(vault_app)
    enter_code(landlord, path, code)
    landlord.get(f"{path}/documents/{lease_doc['id']}")
    with Session(engine) as db:
        row = db.exec(select(ShareLink)).one()
    stored = json.dumps(row.model_dump(mode="json"))
    assert secret not in stored and bare not in stored and row.code_hash.startswith("$argon2id$")
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                        if r.name.startswith("vault"))  # the server's records (the test client logs its own URLs)
    assert "/s/…" in logged  # the access log names the route…
    assert secret not in logged and bare not in logged  # …never the secret or the code


def test_a_wrong_code_answers_as_an_unknown_link_then_five_lock_the_link(vault_app, citizen, two_documents) -> None:
    lease_doc, *_ = two_documents
    path, code = share(citizen, lease_doc["id"])
    wrong = "ABCD-EFGH" if code != "ABCD-EFGH" else "HGFE-DCBA"
    landlord, stranger = visitor(vault_app), visitor(vault_app)
    unknown = stranger.get("/s/" + "x" * 32)
    assert unknown.status_code == 200 and 'name="code"' in unknown.text  # the same form as a real link's

    def body(response) -> str:
        return re.sub(r'name="csrf_token" value="[^"]+"', "", response.text)

    answers = []
    for attempt in range(4):
        real = enter_code(landlord, path, wrong)
        fake = enter_code(stranger, "/s/" + "x" * 32, wrong)
        assert real.status_code == fake.status_code == 400, attempt
        assert body(real) == body(fake)
        assert 'aria-invalid="true"' in real.text and 'id="code-error"' in real.text
        answers.append(real)
    # A code that cannot be a code is refused without counting a try (the same for both, too).
    for typo in ("ABC", "ABCD-EFG0", ""):
        short = enter_code(landlord, path, typo)
        assert short.status_code == 400 and "8 caractères" in short.text
        assert body(short) == body(enter_code(stranger, "/s/" + "x" * 32, typo))
    fifth = enter_code(landlord, path, wrong)
    assert fifth.status_code == 410 and "verrouillé" in fifth.text
    # Locked for good: the right code, or a browser that had opened it, get nothing any more.
    assert enter_code(visitor(vault_app), path, code).status_code == 410
    assert landlord.get(path).status_code == 410
    assert landlord.get(f"{path}/documents/{lease_doc['id']}").status_code == 410
    assert "verrouillé" in citizen.get("/shares").text
    # Five wrong codes on an unknown link lock nothing and say nothing more.
    assert enter_code(stranger, "/s/" + "x" * 32, wrong).status_code == 400


def test_revoked_and_expired_links_answer_410_with_a_plain_page(vault_app, citizen, two_documents, engine) -> None:
    lease_doc, *_ = two_documents
    path, code = share(citizen, lease_doc["id"], label="Agence")
    landlord = visitor(vault_app)
    enter_code(landlord, path, code)
    assert landlord.get(f"{path}/documents/{lease_doc['id']}").status_code == 200
    with Session(engine) as db:
        link_id = db.exec(select(ShareLink.id)).one()
    revoked = citizen.submit("/shares", {}, action=f"/shares/{link_id}/revoke")
    assert revoked.status_code == 303
    assert "n'ouvre plus rien" in citizen.get(revoked.headers["location"]).text
    gone = landlord.get(path)
    assert gone.status_code == 410 and "désactivé" in gone.text and "Mes justificatifs" not in gone.text
    assert landlord.get(f"{path}/documents/{lease_doc['id']}").status_code == 410
    assert enter_code(visitor(vault_app), path, code).status_code == 410

    path, code = share(citizen, lease_doc["id"], hours="1")
    enter_code(landlord, path, code)
    with Session(engine) as db:
        db.exec(update(ShareLink).where(ShareLink.revoked_at.is_(None)).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    expired = landlord.get(path)
    assert expired.status_code == 410 and "expiré" in expired.text
    assert landlord.get(f"{path}/documents/{lease_doc['id']}").status_code == 410
    # Another citizen cannot revoke a link that is not theirs; an unknown id is a 404.
    assert citizen.submit("/shares", {}, action=f"/shares/{uuid.uuid4()}/revoke").status_code == 404


def test_a_pass_opens_only_its_own_link(vault_app, citizen, two_documents) -> None:
    lease_doc, payslip_doc, *_ = two_documents
    first_path, first_code = share(citizen, lease_doc["id"])
    second_path, _ = share(citizen, payslip_doc["id"])
    landlord = visitor(vault_app)
    enter_code(landlord, first_path, first_code)
    assert landlord.get(f"{second_path}/documents/{payslip_doc['id']}").headers["location"] == second_path
    forged = visitor(vault_app)
    forged.cookies.set("share", landlord.cookies.get("share").replace(".", ".9", 1))
    assert forged.get(f"{first_path}/documents/{lease_doc['id']}").status_code == 303


def test_deleting_a_document_takes_it_out_of_its_links(vault_app, citizen, two_documents) -> None:
    lease_doc, payslip_doc, _, payslip = two_documents
    both_path, both_code = share(citizen, lease_doc["id"], payslip_doc["id"])
    one_path, one_code = share(citizen, lease_doc["id"])
    landlord = visitor(vault_app)
    enter_code(landlord, both_path, both_code)
    assert citizen.submit(f"/documents/{lease_doc['id']}?delete=1", {},
                          action=f"/documents/{lease_doc['id']}/delete").status_code == 303
    assert landlord.get(f"{both_path}/documents/{lease_doc['id']}").status_code == 404
    assert landlord.get(f"{both_path}/documents/{payslip_doc['id']}").content == payslip
    # A link whose every document was deleted gives nothing: 410.
    emptied = enter_code(visitor(vault_app), one_path, one_code)
    assert emptied.status_code == 410 and "supprimés" in emptied.text


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"document": [], "hours": "168"}, "document", "au moins un document"),
    ({"document": ["not-a-uuid"], "hours": "168"}, "document", "n'existe pas"),
    ({"document": [str(uuid.uuid4())], "hours": "168"}, "document", "n'existe pas"),
    ({"hours": "0"}, "hours", "entre 1 heure et 30 jours"),
    ({"hours": "721"}, "hours", "entre 1 heure et 30 jours"),
    ({"hours": "sept jours"}, "hours", "entre 1 heure et 30 jours"),
    ({"label": "x" * 101}, "label", "100 caractères"),
])
def test_a_bad_share_form_says_what_to_fix_and_creates_nothing(citizen, two_documents, engine, data, field,
                                                               message) -> None:
    lease_doc, *_ = two_documents
    form = {"document": [lease_doc["id"]], "hours": "168", "label": ""} | data
    page = citizen.submit("/shares/new", form)
    assert page.status_code == 422 and message in page.text
    assert f'href="#{field}"' in page.text  # the summary leads to the field
    assert f'id="{field}-error"' in page.text
    with Session(engine) as db:
        assert db.exec(select(ShareLink)).first() is None


def test_another_citizens_document_cannot_be_shared(vault_app, citizen, two_documents, engine) -> None:
    from tests.factories import citizen_browser

    lease_doc, *_ = two_documents
    with citizen_browser(vault_app) as other:
        page = other.submit("/shares/new", {"document": [lease_doc["id"]], "hours": "24"})
        assert page.status_code in (200, 422)  # the other citizen's vault is empty: no form to post
        assert "Bail" not in page.text
    with Session(engine) as db:
        assert db.exec(select(ShareLink)).first() is None


def test_the_document_page_offers_to_share_it_preticked(citizen, two_documents) -> None:
    lease_doc, payslip_doc, *_ = two_documents
    page = citizen.get(f"/documents/{lease_doc['id']}")
    assert f'href="/shares/new?document={lease_doc["id"]}"' in page.text
    form = citizen.get(f"/shares/new?document={lease_doc['id']}")
    assert re.search(rf'value="{lease_doc["id"]}" checked', form.text)
    assert not re.search(rf'value="{payslip_doc["id"]}" checked', form.text)
    assert re.search(r'name="hours" value="168" checked', form.text)  # 7 days unless chosen


def test_export_erasure_and_retention_follow_share_links(vault_app, citizen, two_documents, engine) -> None:
    lease_doc, *_ = two_documents
    path, code = share(citizen, lease_doc["id"], label="Notaire")
    enter_code(visitor(vault_app), path, code)
    services = vault_app.state.services
    with Session(engine) as db:
        link = db.exec(select(ShareLink)).one()
        citizen_id = link.citizen_id
        archive = b"".join(services.gdpr.export(db, citizen_id=citizen_id, by=DPO))
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        links = json.loads(zf.read("liens-de-partage.json"))
        assert "liens-de-partage.json" in zf.read("LISEZ-MOI.txt").decode()
    assert links[0]["note"] == "Notaire" and links[0]["etat"] == "active" and links[0]["ouvertures"] == 1
    assert links[0]["documents"] == [{"id": lease_doc["id"], "titre": "Bail"}]

    # Retention removes links ended more than 30 days ago, and only those.
    share(citizen, lease_doc["id"], label="Ancien")
    with Session(engine) as db:
        db.exec(update(ShareLink).where(ShareLink.label == "Ancien")
                .values(expires_at=utcnow() - timedelta(days=31)))
        db.commit()
        report = retention.run(db, gdpr=services.gdpr, mailer=make_mailer(services.settings))
        assert report.housekeeping["share_links"] == 1
        assert [row.label for row in db.exec(select(ShareLink))] == ["Notaire"]

    with Session(engine) as db:
        services.gdpr.erase(db, citizen_id=citizen_id, reason="demande", by=DPO)
    with Session(engine) as db:
        assert db.exec(select(ShareLink)).first() is None
    # After the erasure the link is nothing: the form of an unknown link, any code refused.
    after = visitor(vault_app)
    assert after.get(path).status_code == 200
    assert enter_code(after, path, code).status_code == 400


def test_the_citizen_is_mailed_at_a_links_first_opening_only(vault_app, citizen, two_documents, outbox) -> None:
    lease_doc, *_ = two_documents
    path, code = share(citizen, lease_doc["id"], label="Agence Dupont")
    before = len(outbox.to("docs@example.org"))
    enter_code(visitor(vault_app), path, code)
    mails = outbox.to("docs@example.org")[before:]
    assert len(mails) == 1 and "Votre lien de partage vient d'être ouvert" in mails[0].subject
    assert "« Agence Dupont » a été ouvert pour la première fois" in mails[0].body and "- Bail\n" in mails[0].body
    assert "/shares" in mails[0].body
    enter_code(visitor(vault_app), path, code)  # a second opening: no second mail
    assert len(outbox.to("docs@example.org")) == before + 1
    # With that alert switched off, a new link's first opening sends nothing.
    citizen.submit("/account", {"alert": ["grants", "deposits", "validity"]}, action="/account/alerts")
    other_path, other_code = share(citizen, lease_doc["id"])
    enter_code(visitor(vault_app), other_path, other_code)
    assert len(outbox.to("docs@example.org")) == before + 1
