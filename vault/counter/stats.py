"""The city's statistics (``/agent/stats``, for administrators): per week, accounts opened online
and at the counter, assisted sessions and actions under mandate, mandates granted by procedure,
documents added by type, logins per app, GDPR requests by kind and how many were answered on time.

Aggregates only, and small counts hidden, so that no figure points at a person:

- **primary rule**: a count from 1 to 4 is shown as "< 5" (0 stays 0: that nobody did something
  that week singles nobody out); a rate computed on fewer than 5 requests is shown as
  "< 5 demandes" instead of a percentage (over 5 or more, the rate and the count of requests
  closed tell how many were late: that describes how the city kept its deadlines, not who asked);
- **secondary rule**: a row's total is the sum of the cells beside it, so a hidden cell could be
  recomputed from it (the total minus the shown cells; two hidden cells summing to 2 or 8 are
  known as well). Whenever one cell of a row is hidden, that row's total is hidden too ("masqué")
  unless it is itself below 5 (then it is "< 5" already). Tables whose cells do not add up to a
  total (assisted sessions and actions) need only the primary rule. No column totals are shown, so
  nothing else can give a hidden cell away.

Weeks are ISO weeks (Monday to Sunday) in the city's time zone (``settings.timezone``). Each
indicator is one ``GROUP BY`` query over a ``CASE`` that maps a timestamp to its week: the week
boundaries are computed here (local midnights as UTC instants, daylight saving included) and sent
as parameters, so the same SQL runs on SQLite and PostgreSQL and the database returns at most one
row per week and category, however many citizens there are. The one exception is the on-time rate
(the deadline is a local date per request): the requests closed in the period are read row by row,
a few columns each, in batches.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, case, cast, func, literal_column
from sqlmodel import Session, col, select

from vault.auth.models import Citizen
from vault.counter.models import PROCEDURES, CounterEnrolment, Mandate, MandateAction
from vault.dates import OLDEST_DATE, parse_date
from vault.gdpr.audit import LOGIN_ACTION
from vault.gdpr.models import REQUEST_KINDS, AuditEntry, DataRequest
from vault.oidc.models import OAuthClient
from vault.storage.models import DOCUMENT_TYPES, Document
from vault.translation import N_

THRESHOLD = 5  # counts below this (but above 0) are hidden
DEFAULT_WEEKS = 12
MAX_WEEKS = 104

SMALL = N_("< 5")
MASKED = N_("masqué")
NO_RATE = "—"  # no request closed that week
SMALL_RATE = N_("< 5 demandes")

INVALID = N_("Date non valide : écrivez-la par exemple 07/09/2026 ou 7 septembre 2026.")
FUTURE = N_("Cette date est dans le futur : les statistiques s'arrêtent à aujourd'hui.")
TOO_OLD = N_("Cette date est trop ancienne.")
REVERSED = N_("La date de fin doit être après la date de début.")
TOO_LONG = N_("La période ne peut pas dépasser 104 semaines (deux ans) : rapprochez les deux dates.")


# ---- the period -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole weeks: from the Monday of ``first`` to the Sunday ``weeks`` weeks later."""

    first: date  # a Monday
    weeks: int

    @property
    def last(self) -> date:
        return self.first + timedelta(days=7 * self.weeks - 1)

    def mondays(self) -> list[date]:
        """The Mondays that start each week, and the one after the last (``weeks + 1`` dates)."""
        return [self.first + timedelta(weeks=i) for i in range(self.weeks + 1)]

    def instants(self, timezone: str) -> list[datetime]:
        """The same boundaries as UTC instants: each Monday's midnight in the city's time zone."""
        zone = ZoneInfo(timezone)
        return [datetime.combine(day, time(), tzinfo=zone).astimezone(UTC) for day in self.mondays()]


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def default_period(today: date) -> Period:
    """The last 12 weeks, the current one included."""
    return Period(first=monday_of(today) - timedelta(weeks=DEFAULT_WEEKS - 1), weeks=DEFAULT_WEEKS)


def read_period(raw_from: str, raw_to: str, *, today: date) -> tuple[Period | None, dict[str, str]]:
    """The period typed in the form (any format ``vault.dates`` reads; either may be left empty:
    the end defaults to today, the start to 12 weeks before the end), or the errors by field."""
    errors: dict[str, str] = {}
    dates: dict[str, date] = {}
    for name, raw in (("from", raw_from), ("to", raw_to)):
        if not raw.strip():
            continue
        try:
            value = parse_date(raw)
        except ValueError:
            errors[name] = INVALID
            continue
        if value > today:
            errors[name] = FUTURE
        elif value < OLDEST_DATE:
            errors[name] = TOO_OLD
        else:
            dates[name] = value
    if errors:
        return None, errors
    end = dates.get("to", today)
    start = dates.get("from", monday_of(end) - timedelta(weeks=DEFAULT_WEEKS - 1))
    if start > end:
        return None, {"to": REVERSED}
    weeks = (monday_of(end) - monday_of(start)).days // 7 + 1
    if weeks > MAX_WEEKS:
        return None, {"from": TOO_LONG}
    return Period(first=monday_of(start), weeks=weeks), {}


# ---- what a table shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """What one cell shows: a figure (``text`` as is) or a sentence of the catalogue (``translate``)."""

    text: str
    translate: bool = False
    hidden: bool = False  # "< 5" or "masqué": the true figure is not shown


def count_cell(n: int) -> Cell:
    """The primary rule: 1 to 4 → "< 5"; 0 and 5 or more as they are."""
    if 0 < n < THRESHOLD:
        return Cell(SMALL, translate=True, hidden=True)
    return Cell(str(n))


def with_total(counts: Sequence[int], total: int | None = None) -> list[Cell]:
    """A row of counts and its total (their sum unless given: a mandate covering two procedures
    counts in both columns, once in the total). The secondary rule: a hidden cell hides the total."""
    cells = [count_cell(n) for n in counts]
    total = sum(counts) if total is None else total
    if any(c.hidden for c in cells) and total >= THRESHOLD:
        return [*cells, Cell(MASKED, translate=True, hidden=True)]
    return [*cells, count_cell(total)]


def rate_cell(on_time: int, closed: int) -> Cell:
    if closed == 0:
        return Cell(NO_RATE)
    if closed < THRESHOLD:
        return Cell(SMALL_RATE, translate=True, hidden=True)
    return Cell(f"{round(100 * on_time / closed)} %")


@dataclass(frozen=True)
class Column:
    label: str
    translate: bool = True  # a sentence of the catalogue (an app's name is shown as registered)


@dataclass
class Table:
    key: str
    title: str
    note: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)  # one per week, as many cells as columns
    note_params: dict[str, object] = field(default_factory=dict)  # the values the note names


@dataclass(frozen=True)
class Week:
    monday: date
    current: bool  # the week under way: its figures still grow

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def iso(self) -> str:
        year, number, _day = self.monday.isocalendar()
        return f"{year}-W{number:02d}"

    @property
    def number(self) -> int:
        return self.monday.isocalendar()[1]


@dataclass
class Statistics:
    period: Period
    weeks: list[Week]
    tables: list[Table]
    audit_retention_days: int


# ---- the queries ----------------------------------------------------------------------------------


def week_of(column: Any, bounds: Sequence[Any]) -> ColumnElement[int]:
    """The index of the week ``column`` falls in (``bounds``: the weeks' starts and the end), as a
    CASE the database evaluates; -1 outside (the queries filter on the bounds anyway)."""
    return case(*((column < bound, i) for i, bound in enumerate(bounds[1:])), else_=-1).label("week")


WEEK: ColumnElement[int] = literal_column("week")  # grouped by its label: PostgreSQL cannot match two CASEs with parameters


def _per_week(db: Session, column: Any, bounds: Sequence[Any], *conditions: Any) -> list[int]:
    query = (select(week_of(column, bounds), func.count())
             .where(column >= bounds[0], column < bounds[-1], *conditions).group_by(WEEK))
    counts = [0] * (len(bounds) - 1)
    for week, n in db.exec(query):
        if 0 <= week < len(counts):
            counts[week] += n
    return counts


def _per_week_and(db: Session, column: Any, category: Any, bounds: Sequence[Any],
                  *conditions: Any) -> dict[str, list[int]]:
    """Counts per week and per value of ``category``."""
    query = (select(week_of(column, bounds), category.label("category"), func.count())
             .where(column >= bounds[0], column < bounds[-1], *conditions)
             .group_by(WEEK, literal_column("category")))
    found: dict[str, list[int]] = {}
    for week, value, n in db.exec(query):
        if 0 <= week < len(bounds) - 1:
            found.setdefault(str(value), [0] * (len(bounds) - 1))[week] += n
    return found


def _accounts(db: Session, instants: list[datetime]) -> Table:
    query = (select(week_of(Citizen.created_at, instants), func.count(), func.count(col(CounterEnrolment.citizen_id)))
             .select_from(Citizen)
             .outerjoin(CounterEnrolment, col(CounterEnrolment.citizen_id) == col(Citizen.id))
             .where(col(Citizen.created_at) >= instants[0], col(Citizen.created_at) < instants[-1])
             .group_by(WEEK))
    weeks = len(instants) - 1
    online, counter = [0] * weeks, [0] * weeks
    for week, total, at_counter in db.exec(query):
        if 0 <= week < weeks:
            online[week] += total - at_counter
            counter[week] += at_counter
    return Table(
        key="accounts", title=N_("Comptes ouverts"),
        note=N_("Comptes existant aujourd'hui, par semaine d'ouverture : en ligne (inscription sur le site) ou "
                "au guichet (pièce d'identité vérifiée par un agent). Les comptes effacés depuis ne sont plus "
                "comptés."),
        columns=[Column(N_("En ligne")), Column(N_("Au guichet")), Column(N_("Total"))],
        rows=[with_total([online[i], counter[i]]) for i in range(weeks)])


def _assistance(db: Session, instants: list[datetime]) -> Table:
    # From the journal, which lasts (assisted sessions themselves are forgotten a day after they end).
    sessions = _per_week(db, col(MandateAction.at), instants, col(MandateAction.action) == "session.started")
    actions = _per_week(db, col(MandateAction.at), instants, col(MandateAction.action).notlike("mandate.%"),
                        col(MandateAction.action).notlike("session.%"))
    return Table(
        key="assistance", title=N_("Accompagnement au guichet"),
        note=N_("Sessions ouvertes par un agent pour agir au nom d'une personne, et actions inscrites au journal "
                "des mandats (documents consultés ou ajoutés, connexions à un service ; sans compter l'octroi et "
                "la fin des mandats, ni l'ouverture et la fin des sessions)."),
        columns=[Column(N_("Sessions accompagnées")), Column(N_("Actions sous mandat"))],
        rows=[[count_cell(sessions[i]), count_cell(actions[i])] for i in range(len(instants) - 1)])


def _mandates(db: Session, instants: list[datetime]) -> Table:
    # The procedures are a JSON list: one SUM per procedure over its text (keys are quoted there,
    # and none is part of another), the same on SQLite and PostgreSQL.
    listed = cast(Mandate.procedures, String)
    sums = [func.sum(case((listed.like(f'%"{key}"%'), 1), else_=0)) for key in PROCEDURES]
    query = (select(week_of(Mandate.created_at, instants), func.count(), *sums)
             .where(col(Mandate.created_at) >= instants[0], col(Mandate.created_at) < instants[-1])
             .group_by(WEEK))
    weeks = len(instants) - 1
    totals = [0] * weeks
    per_kind = [[0] * len(PROCEDURES) for _ in range(weeks)]
    row: Any
    for row in db.exec(query):
        week, total, kinds = row[0], row[1], row[2:]
        if 0 <= week < weeks:
            totals[week] += total
            per_kind[week] = [a + int(b or 0) for a, b in zip(per_kind[week], kinds, strict=True)]
    return Table(
        key="mandates", title=N_("Mandats donnés"),
        note=N_("Mandats signés au guichet, par démarche couverte. Un mandat peut couvrir plusieurs démarches : "
                "il compte alors dans chacune, et une seule fois dans le total."),
        columns=[*(Column(label) for label in PROCEDURES.values()), Column(N_("Total des mandats"))],
        rows=[with_total(per_kind[i], totals[i]) for i in range(weeks)])


def _documents(db: Session, instants: list[datetime]) -> Table:
    found = _per_week_and(db, col(Document.created_at), col(Document.type), instants)
    types = list(DOCUMENT_TYPES) + sorted(set(found) - set(DOCUMENT_TYPES))
    weeks = len(instants) - 1
    return Table(
        key="documents", title=N_("Justificatifs ajoutés"),
        note=N_("Documents déposés dans les coffres des habitants (par eux, par un agent ou par un service), par "
                "type ; ceux qui ont été supprimés depuis ne sont plus comptés."),
        columns=[*(Column(DOCUMENT_TYPES.get(t, t), translate=t in DOCUMENT_TYPES) for t in types),
                 Column(N_("Total"))],
        rows=[with_total([found.get(t, [0] * weeks)[i] for t in types]) for i in range(weeks)])


def _logins(db: Session, instants: list[datetime], retention_days: int) -> Table:
    found = _per_week_and(db, col(AuditEntry.at), col(AuditEntry.actor), instants,
                          col(AuditEntry.action) == LOGIN_ACTION)
    ids = sorted(actor.removeprefix("app:") for actor in found)
    names: dict[str, str] = {}
    if ids:
        names = {c.client_id: c.name for c in db.exec(select(OAuthClient).where(col(OAuthClient.client_id).in_(ids)))}
    apps = sorted(ids, key=lambda i: ((names.get(i) or i).casefold(), i))
    weeks = len(instants) - 1
    return Table(
        key="logins", title=N_("Connexions aux services de la ville"),
        note=N_("Connexions d'habitants aux applications de la ville avec leur compte (y compris celles faites "
                "par un agent sous mandat). Elles sont relevées dans le journal d'audit, conservé %(days)d jours : "
                "au-delà, elles ne sont plus comptées. Seules les applications utilisées pendant la période "
                "apparaissent."),
        columns=[*(Column(names.get(a, a), translate=False) for a in apps), Column(N_("Total"))],
        rows=[with_total([found[f"app:{a}"][i] for a in apps]) for i in range(weeks)],
        note_params={"days": retention_days})


def _requests(db: Session, period: Period, instants: list[datetime], timezone: str) -> Table:
    mondays = period.mondays()
    received = _per_week_and(db, col(DataRequest.received_on), col(DataRequest.kind), mondays)
    weeks = period.weeks
    closed, on_time = [0] * weeks, [0] * weeks
    zone = ZoneInfo(timezone)
    rows = db.exec(select(col(DataRequest.closed_at), col(DataRequest.due_on), col(DataRequest.extended_to))
                   .where(col(DataRequest.closed_at) >= instants[0], col(DataRequest.closed_at) < instants[-1])
                   .execution_options(yield_per=500))
    for closed_at, due_on, extended_to in rows:
        assert closed_at is not None  # filtered above
        day = closed_at.astimezone(zone).date()
        week = (day - period.first).days // 7
        if 0 <= week < weeks:
            closed[week] += 1
            on_time[week] += day <= (extended_to or due_on)
    kinds = list(REQUEST_KINDS)
    return Table(
        key="requests", title=N_("Demandes RGPD"),
        note=N_("Demandes d'accès, de rectification et d'effacement, par semaine de réception ; puis, par semaine "
                "de clôture, les demandes closes et la part d'entre elles closes dans le délai (un mois, ou la "
                "prolongation annoncée)."),
        columns=[*(Column(REQUEST_KINDS[k]) for k in kinds), Column(N_("Total reçues")), Column(N_("Closes")),
                 Column(N_("Closes dans le délai"))],
        rows=[[*with_total([received.get(k, [0] * weeks)[i] for k in kinds]), count_cell(closed[i]),
               rate_cell(on_time[i], closed[i])] for i in range(weeks)])


def compute(db: Session, period: Period, *, timezone: str, today: date, audit_retention_days: int) -> Statistics:
    """Every table of the period."""
    instants = period.instants(timezone)
    weeks = [Week(monday=m, current=m <= today < m + timedelta(days=7)) for m in period.mondays()[:-1]]
    tables = [_accounts(db, instants), _assistance(db, instants), _mandates(db, instants), _documents(db, instants),
              _logins(db, instants, audit_retention_days), _requests(db, period, instants, timezone)]
    return Statistics(period=period, weeks=weeks, tables=tables, audit_retention_days=audit_retention_days)


# ---- the CSV --------------------------------------------------------------------------------------


def csv_rows(stats: Statistics, gettext: Callable[[str], str]) -> Iterator[list[str]]:
    """One row per week (its ISO number, Monday, Sunday), then every table's columns; the cells as the
    page shows them ("< 5", "masqué")."""
    def text(value: str, translate: bool) -> str:
        return gettext(value) if translate else value

    yield [gettext("Semaine"), gettext("Du"), gettext("Au"),
           *(f"{gettext(t.title)} : {text(c.label, c.translate)}" for t in stats.tables for c in t.columns)]
    for i, week in enumerate(stats.weeks):
        yield [week.iso, week.monday.isoformat(), week.sunday.isoformat(),
               *(text(cell.text, cell.translate) for t in stats.tables for cell in t.rows[i])]


def csv_text(rows: Iterable[list[str]]) -> str:
    """With a byte order mark (Excel then reads UTF-8, accents included) and ``;`` between cells
    (what Excel expects in French)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()
