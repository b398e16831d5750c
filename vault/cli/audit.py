"""``vault audit``: the tamper-evident audit log."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, fail, open_services
from vault.gdpr.audit import CheckpointRefused
from vault.storage.blobs import BlobStoreUnavailable

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Walk the chain and compare it with the latest signed checkpoint: exit 0 if intact, 1 with
    what is wrong otherwise."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        result = services.audit.verify(db)
    checkpoint = asdict(result.checkpoint) if result.checkpoint else None
    if as_json:
        typer.echo(json.dumps({"ok": result.ok, "entries": result.entries, "first_bad_id": result.first_bad_id,
                               "problem": result.problem, "checkpoint": checkpoint}))
    elif result.ok:
        against = (f", up to checkpoint {result.checkpoint.seq} of {result.checkpoint.at}" if result.checkpoint
                   else ", no checkpoint yet")
        typer.echo(f"audit log intact ({result.entries} entries{against})")
    else:
        where = f" at entry {result.first_bad_id}" if result.first_bad_id is not None else ""
        typer.echo(f"audit log BROKEN{where}: {result.problem}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def audit_checkpoint(as_json: JsonFlag = False) -> None:
    """Sign the chain's head now and write it to the object store (audit/checkpoints/) and the log."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        try:
            checkpoint = services.audit.checkpoint(db)
        except BlobStoreUnavailable as exc:
            fail(f"the object store refused the checkpoint ({exc})", as_json=as_json, code="store_unavailable")
        except CheckpointRefused as exc:
            fail(str(exc), as_json=as_json, code="checkpoint_refused")
        public_key = services.audit.public_key(db)
        db.commit()  # the checkpoint key, if this was its first use
    if as_json:
        typer.echo(json.dumps({"checkpoint": asdict(checkpoint) if checkpoint else None,
                               "key": checkpoint.key if checkpoint else None, "public_key": public_key}))
    elif checkpoint is None:
        typer.echo("the audit log is empty: nothing to checkpoint")
    else:
        typer.echo(f"checkpoint {checkpoint.seq} ({checkpoint.count} entries) written to {checkpoint.key}; "
                   f"Ed25519 public key {public_key}")


@app.command("public-key")
def audit_public_key() -> None:
    """The Ed25519 public key the checkpoints are signed with (base64url), to check them elsewhere."""
    services = open_services(False)
    with Session(services.engine) as db:
        typer.echo(services.audit.public_key(db))
        db.commit()

