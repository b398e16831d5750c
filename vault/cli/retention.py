"""``vault retention``: the daily retention run."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, open_services
from vault.db import utcnow
from vault.gdpr import retention

app = typer.Typer(help="Retention: expired documents, unused accounts, old audit entries.", no_args_is_help=True)


@app.command("run")
def retention_run(dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
                  as_json: JsonFlag = False) -> None:
    """Notify, then delete expired documents and erase unused accounts; roll the audit log. Daily."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        report = retention.run(db, gdpr=services.gdpr, mailer=services.mailer, dry_run=dry_run)
        if not dry_run:  # the counter's assisted sessions (a floor above the GDPR tooling)
            report.housekeeping["assisted_sessions"] = services.assist.purge_ended(db, utcnow())
        db.commit()
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    prefix = "would " if dry_run else ""
    typer.echo(f"validity alerts: {prefix}send {len(report.validity_alerts)}")
    typer.echo(f"documents: {prefix}notify {len(report.documents_noticed)}, {prefix}delete {len(report.documents_deleted)}")
    typer.echo(f"accounts: {prefix}notify {len(report.accounts_noticed)}, {prefix}erase {len(report.accounts_erased)}")
    if not dry_run:
        typer.echo(f"audit entries purged: {report.audit_entries_purged}; housekeeping: {report.housekeeping}")
