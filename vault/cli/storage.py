"""``vault storage``: the document store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, fail, open_services
from vault.storage.blobs import BlobStoreUnavailable

app = typer.Typer(help="The document store.", no_args_is_help=True)


@app.command("reconcile")
def storage_reconcile(dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
                      older_than: Annotated[int, typer.Option(help="Minutes: younger orphans may be uploads in progress.",
                                                              min=0)] = 60,
                      as_json: JsonFlag = False) -> None:
    """Remove blobs that no document row points to, and unfinished uploads (older than an hour);
    report rows whose blob is missing."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        try:
            report = services.documents.reconcile(db, dry_run=dry_run, min_age=timedelta(minutes=older_than))
        except BlobStoreUnavailable as exc:
            fail(f"the object store is unavailable: {exc}", as_json=as_json, code="unavailable")
    if as_json:
        typer.echo(json.dumps(report))
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report['orphans_removed'])} orphan blob(s) and {report['unfinished_uploads_aborted']} "
               f"unfinished upload(s); kept {len(report['orphans_kept_recent'])} younger than {older_than} minutes")
    for doc_id in report["documents_without_blob"]:
        typer.echo(f"document {doc_id}: its blob is MISSING")
    if report["documents_without_blob"]:
        raise typer.Exit(1)
