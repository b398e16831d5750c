"""The ``vault`` command: one module per command group, each taking its services from
``open_services`` (settings read, services built by the composition root, schema checked).
Every ``create``/``list`` takes ``--json`` and then prints JSON only."""

from __future__ import annotations

import typer

from vault.cli import audit, citizen, client, db, demo, gdpr, keys, retention, staff, storage
from vault.cli.serve import serve
from vault.cli.worker import worker

app = typer.Typer(help="Citizen Vault: the city's identity provider and document vault.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
app.command()(serve)
app.command()(worker)
app.add_typer(db.app, name="db")
app.add_typer(client.app, name="client")
app.add_typer(keys.app, name="keys")
app.add_typer(storage.app, name="storage")
app.add_typer(staff.app, name="staff")
app.add_typer(gdpr.app, name="gdpr")
app.add_typer(audit.app, name="audit")
app.add_typer(retention.app, name="retention")
app.add_typer(citizen.app, name="citizen")
app.add_typer(demo.app, name="demo")


def main() -> None:
    app()
