"""``vault db``: the database schema."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from vault.cli.common import fail, open_services, read_settings
from vault.cli.storage import init_bucket
from vault.migrations import upgrade
from vault.oidc.issuer import IssuerMismatch, set_issuer
from vault.storage.blobs import BlobStoreUnavailable

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
               change_issuer: Annotated[bool, typer.Option(
                   "--change-issuer", help="Record this VAULT_ISSUER in place of the deployment's (the service "
                                           "moves to a new address; replicas with the old one become not ready).")
               ] = False) -> None:
    """Apply the migrations (the app never creates tables by itself), record the deployment's
    issuer and create the S3 bucket (with versioning) if it is missing."""
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
            try:
                previous = set_issuer(db, settings.issuer, change=change_issuer)
            except IssuerMismatch as exc:
                fail(f"{exc}; run `vault db upgrade --change-issuer` if the service moves to {settings.issuer}",
                     as_json=False, code="issuer_mismatch")
            db.commit()
        if previous:
            typer.echo(f"deployment issuer changed from {previous} to {settings.issuer}", err=True)
        try:
            done = init_bucket(settings)
        except BlobStoreUnavailable as exc:
            fail(f"database at revision {revision}, but the bucket could not be made ready: {exc}; "
                 f"then run `vault storage init`", as_json=False, code="unavailable")
        if done:
            typer.echo(done, err=True)
    typer.echo(f"database at revision {revision}", err=True)
