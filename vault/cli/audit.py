"""``vault audit``: the tamper-evident audit log."""

from __future__ import annotations

import json

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, open_services
from vault.gdpr import audit

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Walk the hash chain: exit 0 if intact, 1 with the first bad entry otherwise."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        result = audit.verify(db)
    if as_json:
        typer.echo(json.dumps({"ok": result.ok, "entries": result.entries, "first_bad_id": result.first_bad_id,
                               "problem": result.problem}))
    elif result.ok:
        typer.echo(f"audit log intact ({result.entries} entries)")
    else:
        typer.echo(f"audit log BROKEN at entry {result.first_bad_id}: {result.problem}", err=True)
    if not result.ok:
        raise typer.Exit(1)
