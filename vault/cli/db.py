"""``vault db``: the database schema."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from vault.cli.common import fail, open_services, read_settings
from vault.migrations import upgrade

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations (the app never creates tables by itself)."""
    settings = read_settings()
    try:
        upgrade(settings.effective_database_url, revision)
    except SQLAlchemyError as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc.args[0] if exc.args else ''}", as_json=False,
             code="migration_failed")
    if revision == "head":
        # Signing keys and service secrets exist before any replica serves (no first-request race).
        services = open_services(settings=settings, check_schema=False)
        with Session(services.engine) as db:
            services.keystore.ensure(db)
            db.commit()
    typer.echo(f"database at revision {revision}", err=True)
