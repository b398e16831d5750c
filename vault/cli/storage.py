"""``vault storage``: the document store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, fail, open_services, read_settings
from vault.settings import Settings
from vault.storage.blobs import BlobStoreUnavailable, S3BlobStore

app = typer.Typer(help="The document store.", no_args_is_help=True)


def init_bucket(settings: Settings) -> str | None:
    """Create the S3 bucket with versioning (or turn versioning on); a sentence for the operator,
    None with the filesystem store. Raises ``BlobStoreUnavailable`` with what to check."""
    if settings.storage_backend != "s3":
        return None
    store = S3BlobStore(settings)
    created = store.init_bucket()
    return f"bucket {store.bucket!r} {'created' if created else 'already there'}, versioning on"


@app.command("init")
def storage_init(as_json: JsonFlag = False) -> None:
    """Create the S3 bucket with versioning on (safe to repeat; `vault db upgrade` does it too)."""
    settings = read_settings(as_json)
    try:
        done = init_bucket(settings)
    except BlobStoreUnavailable as exc:
        fail(f"the bucket could not be made ready: {exc}", as_json=as_json, code="unavailable")
    if as_json:
        typer.echo(json.dumps({"backend": settings.storage_backend, "bucket": settings.s3_bucket, "ready": True}))
    else:
        typer.echo(done or f"filesystem store: nothing to create ({settings.data_dir / 'blobs'})")


@app.command("reconcile")
def storage_reconcile(dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
                      older_than: Annotated[int, typer.Option(help="Minutes: younger orphans may be uploads in progress.",
                                                              min=0)] = 60,
                      uploads_older_than: Annotated[int | None, typer.Option(
                          help="Minutes: unfinished uploads begun earlier are abandoned "
                               "(default VAULT_MULTIPART_ABANDON_MINUTES, a day).", min=0)] = None,
                      as_json: JsonFlag = False) -> None:
    """Remove blobs that no document row points to (older than an hour) and unfinished uploads
    (older than a day); report rows whose blob is missing."""
    services = open_services(as_json)
    upload_age = None if uploads_older_than is None else timedelta(minutes=uploads_older_than)
    with Session(services.engine) as db:
        try:
            report = services.documents.reconcile(db, dry_run=dry_run, min_age=timedelta(minutes=older_than),
                                                  upload_age=upload_age)
        except BlobStoreUnavailable as exc:
            fail(f"the object store is unavailable: {exc}", as_json=as_json, code="unavailable")
    if as_json:
        typer.echo(json.dumps(report))
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report['orphans_removed'])} orphan blob(s); kept {len(report['orphans_kept_recent'])} "
               f"younger than {older_than} minutes")
    typer.echo(f"{'would abort' if dry_run else 'aborted'} {len(report['unfinished_uploads'])} unfinished upload(s); "
               f"{report['unfinished_uploads_kept_recent']} more may still be in progress")
    for upload in report["unfinished_uploads"]:
        typer.echo(f"unfinished upload of {upload['key']} begun {upload['started']}")
    for doc_id in report["documents_without_blob"]:
        typer.echo(f"document {doc_id}: its blob is MISSING")
    if report["documents_without_blob"]:
        raise typer.Exit(1)
