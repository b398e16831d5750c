"""``vault retention``: the daily retention run."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from vault.cli.common import JsonFlag, open_services
from vault.jobs import work

app = typer.Typer(help="Retention: expired documents, unused accounts, old audit entries.", no_args_is_help=True)


@app.command("run")
def retention_run(dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
                  as_json: JsonFlag = False) -> None:
    """Notify, then delete expired documents and erase unused accounts; roll the audit log. `vault worker`
    runs it daily (VAULT_RETENTION_SCHEDULE); by hand, at any time (running it twice does nothing more)."""
    report = work.retention(open_services(as_json), dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    prefix = "would " if dry_run else ""
    typer.echo(f"validity alerts: {prefix}send {len(report.validity_alerts)}")
    typer.echo(f"documents: {prefix}notify {len(report.documents_noticed)}, {prefix}delete {len(report.documents_deleted)}")
    typer.echo(f"accounts: {prefix}notify {len(report.accounts_noticed)}, {prefix}erase {len(report.accounts_erased)}")
    if not dry_run:
        typer.echo(f"audit entries purged: {report.audit_entries_purged}; housekeeping: {report.housekeeping}")
