"""Alert mails to the citizen: what arrives for each kind, the switches of "Mon compte", the
one-click unsubscribe (RFC 8058) and the validity alerts of the daily retention run."""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, select

from tests.factories import make_document, make_oidc_app, pdf
from tests.gdpr.test_erasure_export import DPO, citizen_id
from tests.oidc.oidc_support import authorize, exchange
from tests.support import Browser, Mail, Outbox
from vault.alerts.models import AlertSwitch, ValidityAlert
from vault.gdpr import retention
from vault.mail import MailError

EMAIL = "docs@example.org"  # the `citizen` fixture's
PROOF = [{"type": "citizen_documents", "document_types": ["proof_of_address"], "actions": ["read"]}]
GRANTED = "Une application peut consulter vos justificatifs"
DEPOSITED = "Un document a été déposé dans votre coffre-fort"
SHARED = "Votre lien de partage vient d'être ouvert"
ENDING = "Un de vos justificatifs arrive en fin de validité"


def subjects(outbox: Outbox) -> list[str]:
    return [m.subject for m in outbox.to(EMAIL)]


def unsubscribe_path(mail: Mail) -> str:
    """The one-click URL of a mail's List-Unsubscribe header, without scheme and host."""
    match = re.fullmatch(r"<(https?://[^>]+)>", mail.headers["List-Unsubscribe"])
    assert match, mail.headers
    parts = urlsplit(match.group(1))
    return f"{parts.path}?{parts.query}"


def grant(citizen: Browser, engine, document_id: str, name: str = "Cantine") -> None:
    """The citizen lets an app read one proof of address (the consent page, a document ticked)."""
    app = make_oidc_app(engine, scope="openid documents:read", name=name)
    flow = authorize(citizen, app, scope="openid", authorization_details=json.dumps(PROOF), documents=(document_id,))
    assert exchange(citizen, flow).status_code == 200


def deposit(citizen: Browser, engine, title: str = "Facture de cantine") -> dict:
    """An app holding documents:deposit puts a document into the citizen's vault."""
    app = make_oidc_app(engine, scope="openid documents:deposit", name="Portail des démarches")
    token = exchange(citizen, authorize(citizen, app, scope="openid documents:deposit")).json()["access_token"]
    answer = citizen.post("/api/v1/documents", content=pdf(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/pdf", "X-Document-Type": "proof_of_address",
        "X-Document-Title": title})
    assert answer.status_code == 201, answer.text
    return answer.json()


def switches(citizen: Browser) -> dict[str, bool]:
    """The boxes of "Mon compte" as the citizen sees them: kind → ticked."""
    page = citizen.get("/account").text
    return {kind: "checked" in attrs for kind, attrs in re.findall(r'name="alert" value="([a-z_]+)"([^>]*)>', page)}


def test_a_grant_mails_the_chosen_titles_with_a_one_click_unsubscribe(citizen: Browser, engine,
                                                                      outbox: Outbox) -> None:
    edf = make_document(citizen, type="proof_of_address", title="Facture EDF")
    make_document(citizen, type="proof_of_address", title="Quittance de loyer")
    grant(citizen, engine, edf["id"])
    mail = outbox.last(EMAIL)
    assert mail.subject == GRANTED
    assert "L'application Cantine peut maintenant consulter :\n- Facture EDF\n" in mail.body
    assert "Quittance de loyer" not in mail.body
    # RFC 8058: the one-click headers, and the same link in the body for those who read it.
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail.headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("http://127.0.0.1:8000/alerts/unsubscribe?token=") and url in mail.body


def test_a_consent_without_a_ticked_document_mails_nothing(citizen: Browser, engine, outbox: Outbox) -> None:
    make_document(citizen, type="proof_of_address", title="Facture EDF")
    app = make_oidc_app(engine, scope="openid documents:read")
    assert exchange(citizen, authorize(citizen, app, scope="openid documents:read")).status_code == 200
    assert GRANTED not in subjects(outbox)


def test_a_deposit_by_an_app_mails_the_citizen_and_their_own_upload_does_not(citizen: Browser, engine,
                                                                           outbox: Outbox) -> None:
    make_document(citizen, title="Mon avis d'imposition")
    assert DEPOSITED not in subjects(outbox)
    deposited = deposit(citizen, engine)
    mail = outbox.last(EMAIL)
    assert mail.subject == DEPOSITED
    assert "L'application Portail des démarches a déposé le document « Facture de cantine »" in mail.body
    assert f"/documents/{deposited['id']}" in mail.body
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_share_link_opened_mails_the_label_the_time_and_the_titles(vault_app, citizen: Browser, engine,
                                                                   outbox: Outbox) -> None:
    alerts = vault_app.state.services.alerts
    with Session(engine) as db:
        sent = alerts.share_link_opened(db, citizen_id=citizen_id(engine), label="Pour le notaire",
                                        opened_at=datetime(2026, 11, 30, 13, 5, tzinfo=UTC),
                                        documents=["Facture EDF", "Livret de famille"])
        alerts.share_link_opened(db, citizen_id=citizen_id(engine), label=None,
                                 opened_at=datetime(2026, 7, 1, 8, 0, tzinfo=UTC), documents=["Facture EDF"])
        db.commit()
    assert sent is True
    named, unnamed = outbox.to(EMAIL)[-2:]
    assert named.subject == SHARED
    # 13:05 UTC is 14:05 in Paris in November, 10:00 in July: the city's time.
    assert "« Pour le notaire » a été ouvert pour la première fois le 30/11/2026 à 14:05" in named.body
    assert "- Facture EDF\n- Livret de famille\n" in named.body
    assert "Un de vos liens de partage a été ouvert pour la première fois le 01/07/2026 à 10:00" in unnamed.body
    assert named.headers["List-Unsubscribe"] == unnamed.headers["List-Unsubscribe"]  # one link per kind


def test_the_account_form_saves_the_switches_and_a_switched_off_kind_is_not_mailed(citizen: Browser, engine,
                                                                                  outbox: Outbox) -> None:
    assert switches(citizen) == {"grants": True, "deposits": True, "share_opened": True, "validity": True}
    page = citizen.get("/account").text
    assert "<fieldset>" in page and "<legend>" in page and 'action="/account/alerts"' in page
    saved = citizen.submit("/account", {"alert": ["deposits", "share_opened", "validity"]}, action="/account/alerts")
    assert saved.status_code == 303 and saved.headers["location"].startswith("/account?notice=alerts_saved")
    assert "Vos choix d'alertes sont enregistrés." in citizen.get(saved.headers["location"]).text
    assert switches(citizen) == {"grants": False, "deposits": True, "share_opened": True, "validity": True}

    edf = make_document(citizen, type="proof_of_address", title="Facture EDF")
    grant(citizen, engine, edf["id"])
    deposit(citizen, engine)
    assert GRANTED not in subjects(outbox) and DEPOSITED in subjects(outbox)

    # Nothing ticked: every kind off. A post without the page's CSRF token changes nothing.
    assert citizen.submit("/account", {}, action="/account/alerts").status_code == 303
    assert switches(citizen) == dict.fromkeys(("grants", "deposits", "share_opened", "validity"), False)
    forged = citizen.post("/account/alerts", data={"alert": "grants", "csrf_token": "x" * 43})
    assert forged.status_code == 403 and not any(switches(citizen).values())


def test_one_click_post_turns_off_that_kind_only_without_a_session(vault_app, citizen: Browser, engine,
                                                                   outbox: Outbox) -> None:
    deposit(citizen, engine)
    path = unsubscribe_path(outbox.last(EMAIL))
    with Browser(vault_app) as mail_client:  # no session, no CSRF cookie: what a mail client sends
        answer = mail_client.post(path, content=b"List-Unsubscribe=One-Click",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
        assert "C'est fait" in answer.text and "Mon compte" in answer.text
        assert mail_client.post(path).status_code == 200  # clicking twice is fine
    assert switches(citizen) == {"grants": True, "deposits": False, "share_opened": True, "validity": True}
    before = len(outbox.to(EMAIL))
    deposit(citizen, engine)
    assert len(outbox.to(EMAIL)) == before  # no more deposit mails
    edf = make_document(citizen, type="proof_of_address", title="Facture EDF")
    grant(citizen, engine, edf["id"])
    assert outbox.last(EMAIL).subject == GRANTED  # the other kinds still come


def test_opening_the_link_shows_a_button_and_changes_nothing(vault_app, citizen: Browser, engine,
                                                             outbox: Outbox) -> None:
    deposit(citizen, engine)
    path = unsubscribe_path(outbox.last(EMAIL))
    with Browser(vault_app) as scanner:
        page = scanner.get(path)
        assert page.status_code == 200
        assert "Une application dépose un document dans mon coffre-fort" in page.text
        assert '<form method="post" action="/alerts/unsubscribe?token=' in page.text and "<button" in page.text
        # The page's button posts where the mail client would.
        actions = re.findall(r'<form method="post" action="(/alerts/[^"]+)"', page.text)
        assert [a.replace("&amp;", "&") for a in actions] == [path]
    assert all(switches(citizen).values())


@pytest.mark.parametrize("forge", ["mac", "kind", "citizen", "cut", "empty"])
def test_a_forged_or_damaged_link_changes_nothing(vault_app, citizen: Browser, engine, outbox: Outbox,
                                                  forge: str) -> None:
    deposit(citizen, engine)
    path = unsubscribe_path(outbox.last(EMAIL))
    token = path.split("token=", 1)[1]
    version, citizen_hex, kind, mac = token.split(".")
    other = "0" * 32
    forged = {"mac": f"{version}.{citizen_hex}.{kind}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",
              "kind": f"{version}.{citizen_hex}.grants.{mac}",
              "citizen": f"{version}.{other}.{kind}.{mac}",
              "cut": token[:-5],
              "empty": ""}[forge]
    with Browser(vault_app) as stranger:
        for answer in (stranger.get(f"/alerts/unsubscribe?token={forged}"),
                       stranger.post(f"/alerts/unsubscribe?token={forged}")):
            assert answer.status_code == 400, answer.text[:300]
            assert "Ce lien de désinscription n'est pas valable" in answer.text
    assert all(switches(citizen).values())


def test_the_link_of_an_erased_account_is_a_404(vault_app, citizen: Browser, engine, outbox: Outbox) -> None:
    deposit(citizen, engine)
    path = unsubscribe_path(outbox.last(EMAIL))
    with Session(engine) as db:
        vault_app.state.services.gdpr.erase(db, citizen_id=citizen_id(engine), reason="demande", by=DPO)
    with Browser(vault_app) as stranger:
        assert stranger.post(path).status_code == 404


def test_a_mail_that_cannot_be_sent_fails_neither_the_deposit_nor_the_grant(
        vault_app, citizen: Browser, engine, outbox: Outbox, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def send(self, message: object, **where: object) -> None:  # noqa: ARG002  (a MailQueue's signature)
            raise MailError("the outbox cannot take it")

    monkeypatch.setattr(vault_app.state.services.alerts, "mailer", Down())
    with caplog.at_level(logging.WARNING, logger="vault.alerts.service"):
        deposited = deposit(citizen, engine)
        edf = make_document(citizen, type="proof_of_address", title="Facture EDF")
        grant(citizen, engine, edf["id"])
    assert deposited["id"] in [d["id"] for d in citizen.get("/api/v1/documents").json()["items"]]
    warnings = [r for r in caplog.records if r.getMessage() == "alert mail not sent"]
    assert [getattr(r, "kind", None) for r in warnings] == ["deposits", "grants"]
    assert all(getattr(r, "error", None) == "MailError" for r in warnings)
    assert subjects(outbox) == []


def test_no_token_reaches_the_log(vault_app, citizen: Browser, engine, outbox: Outbox,
                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        deposit(citizen, engine)
        path = unsubscribe_path(outbox.last(EMAIL))
        with Browser(vault_app) as mail_client:
            assert mail_client.get(path).status_code == 200
            assert mail_client.post(path).status_code == 200
    token = path.split("token=", 1)[1]
    mac = token.rsplit(".", 1)[1]
    # The service's own log (the test client's httpx logs URLs whole: it is not the service).
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("vault"))
    assert "alert unsubscribed" in logged
    assert mac not in logged and "Facture de cantine" not in logged


# ---- validity dates (the daily retention run) --------------------------------------------------------------


def run(vault_app, engine, **kw) -> retention.RetentionReport:
    services = vault_app.state.services
    with Session(engine) as db:
        report = retention.run(db, gdpr=services.gdpr, mailer=services.mailer, **kw)
        db.commit()
        return report


def ending_mails(outbox: Outbox) -> list[str]:
    """The first line of each validity alert's text, in sending order."""
    return [m.body.split("\n")[2] for m in outbox.to(EMAIL) if m.subject == ENDING]


def test_validity_alerts_30_then_7_days_before_once_each_and_again_for_a_new_date(
        vault_app, citizen: Browser, engine, outbox: Outbox) -> None:
    today = vault_app.state.settings.today()
    def day(n: int) -> str:
        return (today + timedelta(days=n)).isoformat()

    passport = make_document(citizen, title="Passeport", valid_until=day(20))
    card = make_document(citizen, title="Carte d'identité", valid_until=day(5))
    make_document(citizen, title="Ancienne facture", valid_until=day(-1))  # expired: its own notice
    make_document(citizen, title="Bail", valid_until=day(90))  # too far

    first = run(vault_app, engine)
    assert sorted(first.validity_alerts) == sorted([f"{passport['id']}:30", f"{card['id']}:7"])
    assert sorted(ending_mails(outbox)) == sorted([
        f"Votre justificatif « Passeport » est valable jusqu'au {date.fromisoformat(day(20)):%d/%m/%Y} : "
        "plus que 20 jours.",
        f"Votre justificatif « Carte d'identité » est valable jusqu'au {date.fromisoformat(day(5)):%d/%m/%Y} : "
        "plus que 5 jours."])
    assert [m.subject for m in outbox.to(EMAIL)].count("Un de vos justificatifs a expiré") == 1
    assert "Ancienne facture" not in " ".join(m.body for m in outbox.to(EMAIL) if m.subject == ENDING)
    last = [m for m in outbox.to(EMAIL) if m.subject == ENDING][-1]
    assert last.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    assert run(vault_app, engine).validity_alerts == []  # a second run the same day: nothing again
    assert len(ending_mails(outbox)) == 2

    # 14 days later the passport is 6 days away: its 7-day mail, once.
    later = today + timedelta(days=14)
    assert run(vault_app, engine, today=later).validity_alerts == [f"{passport['id']}:7"]
    assert run(vault_app, engine, today=later).validity_alerts == []

    # The citizen enters a new date, 26 days away: both mails may come again, for that date.
    changed = citizen.patch(f"/api/v1/documents/{passport['id']}", json={"valid_until": day(40)},
                            headers={"X-CSRF-Token": citizen.cookies["csrf"]})
    assert changed.status_code == 200, changed.text
    assert run(vault_app, engine, today=later).validity_alerts == [f"{passport['id']}:30"]
    assert ending_mails(outbox)[-1] == (f"Votre justificatif « Passeport » est valable jusqu'au "
                                        f"{date.fromisoformat(day(40)):%d/%m/%Y} : plus que 26 jours.")
    assert run(vault_app, engine, today=later).validity_alerts == []
    assert run(vault_app, engine, today=today + timedelta(days=34)).validity_alerts == [f"{passport['id']}:7"]
    assert len(ending_mails(outbox)) == 5  # 30 and 7 for each date of the passport, 7 for the card


def test_validity_alerts_respect_the_switch_and_dry_runs_send_nothing(vault_app, citizen: Browser, engine,
                                                                       outbox: Outbox) -> None:
    today = vault_app.state.settings.today()
    doc = make_document(citizen, title="Passeport", valid_until=(today + timedelta(days=10)).isoformat())
    assert run(vault_app, engine, dry_run=True).validity_alerts == [f"{doc['id']}:30"]
    assert ending_mails(outbox) == []
    citizen.submit("/account", {"alert": ["grants", "deposits", "share_opened"]}, action="/account/alerts")
    assert run(vault_app, engine).validity_alerts == [] and ending_mails(outbox) == []
    citizen.submit("/account", {"alert": ["validity"]}, action="/account/alerts")
    assert run(vault_app, engine).validity_alerts == [f"{doc['id']}:30"] and len(ending_mails(outbox)) == 1


# ---- GDPR ---------------------------------------------------------------------------------------------------


def test_the_export_lists_the_switches_and_erasure_removes_them(vault_app, citizen: Browser, engine,
                                                                 outbox: Outbox) -> None:
    today = vault_app.state.settings.today()
    make_document(citizen, title="Passeport", valid_until=(today + timedelta(days=10)).isoformat())
    run(vault_app, engine)
    citizen.submit("/account", {"alert": ["grants", "validity"]}, action="/account/alerts")
    gdpr, cid = vault_app.state.services.gdpr, citizen_id(engine)
    with Session(engine) as db:
        archive = b"".join(gdpr.export(db, citizen_id=cid, by=DPO))
        db.commit()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        exported = {a["code"]: a["activee"] for a in json.loads(zf.read("alertes.json"))}
        assert "alertes.json" in zf.read("LISEZ-MOI.txt").decode()
    assert exported == {"grants": True, "deposits": False, "share_opened": False, "validity": True}
    with Session(engine) as db:
        assert db.exec(select(AlertSwitch)).all() and db.exec(select(ValidityAlert)).all()
        gdpr.erase(db, citizen_id=cid, reason="demande de la personne", by=DPO)
    with Session(engine) as db:
        assert db.exec(select(AlertSwitch)).all() == [] and db.exec(select(ValidityAlert)).all() == []
