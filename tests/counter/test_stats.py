"""The city's statistics (``/agent/stats`` and its CSV): exact weekly figures from known data, small
counts hidden ("< 5") and the totals that would give them away ("masqué"), the on-time rate of GDPR
requests, logins per app, the period form, and who may see them (administrators only)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select, update

from tests.factories import COUNTER, citizen_browser, make_citizen, make_document, make_oidc_app, make_staff, staff_browser
from tests.oidc.oidc_support import authorize
from vault.auth.models import Citizen
from vault.counter.models import CounterEnrolment, Mandate, MandateAction
from vault.counter.stats import monday_of
from vault.gdpr import audit
from vault.gdpr.models import AuditEntry, DataRequest
from vault.gdpr.service import Staff
from vault.storage.models import Document

PARIS = ZoneInfo("Europe/Paris")
DPO = Staff(actor="staff:test", label="Camille DPO")


class Tables(HTMLParser):
    """The page's tables as {caption: [[cell text, …] per row]} (the header row first)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: str | None = None
        self._rows: list[list[str]] = []
        self._text: list[str] | None = None
        self._in_caption = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002  (HTMLParser's signature)
        if tag == "table":
            self._caption, self._rows = "", []
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._text is not None:
            self._rows[-1].append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "table":
            self.tables[(self._caption or "").split(",")[0].strip()] = self._rows

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self._caption = (self._caption or "") + data
        elif self._text is not None:
            self._text.append(data)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A moment of ``day`` in Paris, as the database stores it (UTC)."""
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS).astimezone(UTC)


def weeks_ago(n: int) -> date:
    return monday_of(datetime.now(PARIS).date()) - timedelta(weeks=n)


def citizens(app, n: int, when: datetime, *, counter_by: uuid.UUID | None = None) -> list[uuid.UUID]:
    ids = [make_citizen(app).id for _ in range(n)]
    with Session(app.state.services.engine) as db:
        db.exec(update(Citizen).where(col(Citizen.id).in_(ids)).values(created_at=when))
        if counter_by is not None:
            for citizen_id in ids:
                db.add(CounterEnrolment(citizen_id=citizen_id, document_kind="cni", checked_by=counter_by,
                                        service=COUNTER, checked_at=when))
        db.commit()
    return ids


def mandate(db: Session, citizen_id: uuid.UUID, agent_id: uuid.UUID, procedures: list[str], when: datetime) -> Mandate:
    row = Mandate(citizen_id=citizen_id, service=COUNTER, procedures=procedures, duration="1m", granted_with="password",
                  created_by=agent_id, created_at=when, ends_at=when + timedelta(days=30))
    db.add(row)
    db.flush()
    return row


def stats(browser, **period: str):
    page = browser.get("/agent/stats", params=period)
    assert page.status_code == 200, page.text[:1000]
    answer = browser.get("/agent/stats.csv", params=period)
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    return Tables(page.text).tables, rows, page, answer


def column(rows: list[list[str]], header: str) -> list[str]:
    index = rows[0].index(header)
    return [row[index] for row in rows[1:]]


def test_weekly_figures_with_small_counts_hidden(app) -> None:
    week_a, week_b, week_c = weeks_ago(6), weeks_ago(5), weeks_ago(4)
    agent = make_staff(app, role="agent")
    # Accounts: week A, 6 online and 2 at the counter; week B, 5 and 5 — one of the online ones at
    # 00:30 on its Monday in Paris (still Sunday in UTC: it belongs to week B); week C, none.
    citizens(app, 6, at(week_a, 10))
    counter_a = citizens(app, 2, at(week_a, 11), counter_by=agent.id)
    citizens(app, 4, at(week_b + timedelta(days=2)))
    citizens(app, 1, at(week_b, 0, 30))
    counter_b = citizens(app, 5, at(week_b + timedelta(days=6), 23, 30), counter_by=agent.id)
    citizens(app, 1, at(week_a - timedelta(days=1)))  # the Sunday before the period: not counted
    services = app.state.services
    with Session(services.engine) as db:
        # Mandates: week A, 5 for "social" and 1 for "social" and "logement"; week B, 2 for "état civil".
        granted = [mandate(db, counter_a[0], agent.id, ["social"], at(week_a, 9 + i)) for i in range(5)]
        mandate(db, counter_a[1], agent.id, ["social", "logement"], at(week_a + timedelta(days=1)))
        for i in range(2):
            mandate(db, counter_b[i], agent.id, ["etat_civil"], at(week_b + timedelta(days=3)))
        # Week A: 6 assisted sessions, long forgotten (retention drops them a day after they end) but
        # in the journal; 7 actions under mandate (neither the grants nor the sessions' starts and
        # ends are counted as actions).
        for i, action in enumerate(["mandate.granted", "mandate.granted", *["documents.listed"] * 4,
                                    *["document.added"] * 3, *["session.started", "session.ended"] * 6]):
            db.add(MandateAction(mandate_id=granted[0].id, citizen_id=counter_a[0], service=COUNTER,
                                 agent_id=agent.id, action=action, at=at(week_a, 15, i)))
        db.commit()
    # Documents: week A, 5 tax notices and 1 identity document.
    with citizen_browser(app) as browser:
        ids = [make_document(browser)["id"] for _ in range(5)]
        ids.append(make_document(browser, type="identity")["id"])
    with Session(services.engine) as db:
        db.exec(update(Document).where(col(Document.id).in_([uuid.UUID(i) for i in ids]))
                .values(created_at=at(week_a + timedelta(days=4))))
        db.commit()

    with staff_browser(app, role="admin") as browser:
        tables, rows, page, answer = stats(browser, **{"from": week_a.strftime("%d/%m/%Y"),
                                                       "to": (week_c + timedelta(days=3)).isoformat()})
    accounts = tables["Comptes ouverts"]
    assert accounts[0] == ["Semaine", "En ligne", "Au guichet", "Total"]
    assert [row[1:] for row in accounts[1:]] == [["6", "< 5", "masqué"], ["5", "5", "10"], ["0", "0", "0"]]
    number = week_a.isocalendar()[1]
    assert accounts[1][0] == (f"Semaine {number} du {week_a.strftime('%d/%m')} au "
                              f"{(week_a + timedelta(days=6)).strftime('%d/%m/%Y')}")
    assert [row[1:] for row in tables["Accompagnement au guichet"][1:]] == [["6", "7"], ["0", "0"], ["0", "0"]]
    mandates = tables["Mandats donnés"]
    assert mandates[0][1:] == ["État civil", "École et enfance", "Social et solidarité", "Logement", "Élections",
                               "Autre", "Total des mandats"]
    assert [row[1:] for row in mandates[1:]] == [["0", "0", "6", "< 5", "0", "0", "masqué"],
                                                 ["< 5", "0", "0", "0", "0", "0", "< 5"],
                                                 ["0", "0", "0", "0", "0", "0", "0"]]
    documents = tables["Justificatifs ajoutés"]
    assert documents[0][1:3] == ["Pièce d'identité", "Justificatif de domicile"] and documents[0][-1] == "Total"
    assert documents[1][1] == "< 5" and documents[1][3] == "5" and documents[1][-1] == "masqué"
    assert set(documents[2][1:]) == {"0"}
    assert "Aucune application n'a été utilisée pendant cette période." in page.text
    # The page says what is counted and the rule, and links the CSV of the same period.
    assert "un nombre de 1 à 4 est affiché «\u00a0<\u00a05\u00a0»" in page.text and "«\u00a0masqué\u00a0» aussi" in page.text
    assert f'/agent/stats.csv?from={week_a.isoformat()}&to=' in page.text

    # The CSV: the same figures, hidden the same way; a byte order mark for Excel, ";" for French Excel.
    assert answer.content.startswith(b"\xef\xbb\xbf")
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    last_sunday = week_c + timedelta(days=6)
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="statistiques-{week_a.isoformat()}-{last_sunday.isoformat()}.csv"')
    assert rows[0][:3] == ["Semaine", "Du", "Au"]
    assert [row[:3] for row in rows[1:]] == [
        [f"{w.isocalendar()[0]}-W{w.isocalendar()[1]:02d}", w.isoformat(), (w + timedelta(days=6)).isoformat()]
        for w in (week_a, week_b, week_c)]
    assert column(rows, "Comptes ouverts : Au guichet") == ["< 5", "5", "0"]
    assert column(rows, "Comptes ouverts : Total") == ["masqué", "10", "0"]
    assert column(rows, "Mandats donnés : Logement") == ["< 5", "0", "0"]
    assert column(rows, "Justificatifs ajoutés : Avis d'imposition") == ["5", "0", "0"]
    assert column(rows, "Accompagnement au guichet : Actions sous mandat") == ["7", "0", "0"]
    assert column(rows, "Accompagnement au guichet : Sessions accompagnées") == ["6", "0", "0"]
    # Nothing in either names a person.
    for text in (page.text, answer.content.decode("utf-8-sig")):
        assert "Martin" not in text.replace("Camille DPO", "") and "@example.org" not in text


def test_gdpr_requests_by_kind_and_the_on_time_rate(app) -> None:
    week_a, week_b, week_c = weeks_ago(9), weeks_ago(8), weeks_ago(7)
    services = app.state.services
    person = make_citizen(app)
    made: list[uuid.UUID] = []
    with Session(services.engine) as db:
        for kind in ["access"] * 5 + ["rectification"]:
            made.append(services.gdpr.open_request(db, kind=kind, citizen_id=person.id, channel="counter", by=DPO,
                                                   received_on=week_a + timedelta(days=1)).id)
        made.append(services.gdpr.open_request(db, kind="access", citizen_id=person.id, channel="mail", by=DPO,
                                               received_on=week_b).id)
        for request_id in made:
            services.gdpr.close(db, request_id=request_id, status="done", outcome="fait", by=DPO)
        db.commit()
        # Week B: five closed, four on time (one of them thanks to its extension), one late;
        # week C: two closed (too few for a rate).
        due = week_a + timedelta(days=1 + 28)
        for request_id in made[:4]:
            db.exec(update(DataRequest).where(col(DataRequest.id) == request_id)
                    .values(closed_at=at(week_b + timedelta(days=2)), due_on=week_b + timedelta(days=2)))
        db.exec(update(DataRequest).where(col(DataRequest.id) == made[4])
                .values(closed_at=at(week_b + timedelta(days=6), 23, 30), due_on=week_b + timedelta(days=5)))
        db.exec(update(DataRequest).where(col(DataRequest.id) == made[5])
                .values(closed_at=at(week_c), due_on=due, extended_to=None))
        db.exec(update(DataRequest).where(col(DataRequest.id) == made[6])
                .values(closed_at=at(week_c, 18), due_on=week_b, extended_to=week_c + timedelta(days=30)))
        db.commit()
    with staff_browser(app, role="admin") as browser:
        tables, rows, _page, _answer = stats(browser, **{"from": week_a.isoformat(), "to": week_c.isoformat()})
    requests = tables["Demandes RGPD"]
    assert requests[0][1:] == ["Accès (art. 15)", "Rectification (art. 16)", "Effacement (art. 17)", "Total reçues",
                               "Closes", "Closes dans le délai"]
    assert [row[1:] for row in requests[1:]] == [["5", "< 5", "0", "masqué", "0", "—"],
                                                 ["< 5", "0", "0", "< 5", "5", "80 %"],
                                                 ["0", "0", "0", "0", "< 5", "< 5 demandes"]]
    assert column(rows, "Demandes RGPD : Closes dans le délai") == ["—", "80 %", "< 5 demandes"]


def test_logins_per_app_are_counted_from_the_audit_log(app, engine) -> None:
    schools = make_oidc_app(engine, name="Inscriptions scolaires")
    library = make_oidc_app(engine, name="Bibliothèque")
    person = make_citizen(app)
    with citizen_browser(app, person) as browser:
        flow = authorize(browser, schools)
        assert "code" in flow.result
    with Session(engine) as db:
        entry = db.exec(select(AuditEntry).where(AuditEntry.action == "oidc.login")).one()
        assert entry.actor == f"app:{schools.client_id}"
        assert entry.target == f"subject:{app.state.services.gdpr.subject(db, person.id)}"
        assert str(person.id) not in entry.target and not entry.details
        for _ in range(6):  # six more logins to the library this week (as the provider records them)
            app.state.services.oidc.logins.app_login(db, client_id=library.client_id, citizen_id=person.id)
        db.commit()
        assert audit.verify(db).ok
    with staff_browser(app, role="admin") as browser:
        tables, rows, _page, _answer = stats(browser)  # the default period: the last 12 weeks
    logins = tables["Connexions aux services de la ville"]
    assert logins[0] == ["Semaine", "Bibliothèque", "Inscriptions scolaires", "Total"]
    assert len(logins) == 13 and "(en cours)" in logins[-1][0]
    assert logins[-1][1:] == ["6", "< 5", "masqué"]
    assert all(row[1:] == ["0", "0", "0"] for row in logins[1:-1])
    assert column(rows, "Connexions aux services de la ville : Bibliothèque")[-1] == "6"


def test_the_period_form_explains_its_errors(app) -> None:
    today = datetime.now(PARIS).date()
    with staff_browser(app, role="admin") as browser:
        default = browser.get("/agent/stats")
        assert default.status_code == 200
        assert f'value="{(monday_of(today) - timedelta(weeks=11)).strftime("%d/%m/%Y")}"' in default.text
        assert len(Tables(default.text).tables["Comptes ouverts"]) == 13
        typed = browser.get("/agent/stats", params={"from": "1er septembre 2025", "to": "15 sept. 2025"})
        assert typed.status_code == 200 and len(Tables(typed.text).tables["Comptes ouverts"]) == 4
        only_end = browser.get("/agent/stats", params={"to": "15/09/2025"})  # the 12 weeks before it
        weeks = Tables(only_end.text).tables["Comptes ouverts"]
        assert len(weeks) == 13 and "au 21/09/2025" in weeks[-1][0] and "du 30/06" in weeks[1][0]
        for params, field, message in [
            ({"from": "31/02/2026"}, "from", "Date non valide"),
            ({"from": "12/03/26"}, "from", "Date non valide"),
            ({"to": (today + timedelta(days=1)).isoformat()}, "to", "dans le futur"),
            ({"from": "10/11/2025", "to": "03/11/2025"}, "to", "après la date de début"),
            ({"from": "01/01/2023", "to": "01/01/2025"}, "from", "104 semaines"),
        ]:
            page = browser.get("/agent/stats", params=params)
            assert page.status_code == 400, params
            assert f'id="{field}"' in page.text and 'aria-invalid="true"' in page.text
            assert message in page.text and f'href="#{field}"' in page.text  # inline and in the summary
            assert "<table" not in page.text
            assert params.get(field, "") in page.text  # the form keeps what was typed
            csv_answer = browser.get("/agent/stats.csv", params=params)
            assert csv_answer.status_code == 400 and "text/html" in csv_answer.headers["content-type"]
        longest = browser.get("/agent/stats", params={"from": "01/01/2024", "to": "28/12/2025"})
        assert longest.status_code == 200 and len(Tables(longest.text).tables["Comptes ouverts"]) == 105


def test_only_administrators_see_the_statistics(app) -> None:
    for role in ("agent", "dpo"):
        with staff_browser(app, make_staff(app, role=role)) as browser:
            for path in ("/agent/stats", "/agent/stats.csv"):
                assert browser.get(path).status_code == 404, (role, path)
    with citizen_browser(app) as browser:
        for path in ("/agent/stats", "/agent/stats.csv"):
            assert browser.get(path).status_code == 404
    with staff_browser(app, role="admin") as browser:
        home = browser.get("/agent/stats")
        assert 'href="/agent/stats"' in home.text  # the administrator's header links it
        assert browser.get("/dpo/").status_code == 404  # the register is the DPO's


def test_the_statistics_in_english(app) -> None:
    citizens(app, 2, at(weeks_ago(1)))
    with staff_browser(app, role="admin") as browser:
        browser.get("/agent/stats", params={"lang": "en"})
        tables, rows, page, _answer = stats(browser)
    assert "Statistics" in page.text and "is shown as \"<\u00a05\"" in page.text
    assert tables["Accounts opened"][0] == ["Week", "Online", "At the counter", "Total"]
    assert tables["Accounts opened"][-2][1:] == ["< 5", "0", "< 5"]
    assert rows[0][:4] == ["Week", "From", "To", "Accounts opened : Online"]
    assert column(rows, "GDPR requests : Closed in time")[-1] == "—"
