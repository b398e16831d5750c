"""The city's statistics, for administrators: ``/agent/stats`` (a table per indicator) and
``/agent/stats.csv`` (the same figures, small counts hidden the same way). Anyone else gets 404."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault.counter.routes import AdminUser
from vault.counter.stats import Statistics, compute, csv_rows, csv_text, default_period, read_period
from vault.translation import N_
from vault.web.dependencies import Db
from vault.web.i18n import translations
from vault.web.pages import language, render
from vault.web.state import app_settings

pages = APIRouter(include_in_schema=False)


def _statistics(request: Request, db: Db) -> tuple[Statistics | None, dict[str, str], dict[str, str]]:
    """The figures of the period asked (the last 12 weeks by default), or the form's errors."""
    settings = app_settings(request)
    today = settings.today()
    typed = {name: request.query_params.get(name, "").strip()[:100] for name in ("from", "to")}
    if any(typed.values()):
        period, errors = read_period(typed["from"], typed["to"], today=today)
    else:
        period, errors = default_period(today), {}
    if period is None:
        return None, errors, typed
    stats = compute(db, period, timezone=settings.timezone, today=today,
                    audit_retention_days=settings.audit_retention_days)
    return stats, {}, typed


def _page(request: Request, current: AdminUser, stats: Statistics | None, errors: dict[str, str],
          typed: dict[str, str]) -> Response:
    values, csv_link = dict(typed), None
    if stats is not None:
        end = min(stats.period.last, app_settings(request).today())
        csv_link = "/agent/stats.csv?" + urlencode({"from": stats.period.first.isoformat(), "to": end.isoformat()})
        if not any(typed.values()):  # the default period, shown in the form
            values = {"from": stats.period.first.strftime("%d/%m/%Y"), "to": end.strftime("%d/%m/%Y")}
    return render(request, "counter/stats.html", {
        "title": N_("Statistiques"), "staff": current.staff, "stats": stats, "errors": errors, "values": values,
        "csv_link": csv_link}, status=400 if errors else 200)


@pages.get("/agent/stats")
def stats_page(request: Request, db: Db, current: AdminUser) -> Response:
    stats, errors, typed = _statistics(request, db)
    return _page(request, current, stats, errors, typed)


@pages.get("/agent/stats.csv")
def stats_csv(request: Request, db: Db, current: AdminUser) -> Response:
    stats, errors, typed = _statistics(request, db)
    if stats is None:
        return _page(request, current, stats, errors, typed)
    gettext = translations(language(request)).gettext
    name = f"statistiques-{stats.period.first.isoformat()}-{stats.period.last.isoformat()}.csv"
    return Response(csv_text(csv_rows(stats, gettext)).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
