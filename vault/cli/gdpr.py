"""``vault gdpr``: data-subject requests (export, erasure) and legal holds: the DPO's (``--as`` names
the DPO who acts; any other role is refused)."""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from vault.cli.common import AsOption, JsonFlag, acting, emit, fail, open_services, refused, uuid_option
from vault.gdpr.service import Staff
from vault.storage.blobs import BlobStoreUnavailable

app = typer.Typer(help="Data-subject requests: export and erasure.", no_args_is_help=True)

CitizenOption = Annotated[str, typer.Option("--citizen", help="The citizen's id.")]
DocumentOption = Annotated[str, typer.Option("--document", help="The document's id.")]


def _citizen_id(value: str, as_json: bool) -> uuid.UUID:
    return uuid_option(value, "--citizen", "a citizen id (see `vault citizen list`)", as_json)


def _document_id(value: str, as_json: bool) -> uuid.UUID:
    return uuid_option(value, "--document", "a document id", as_json)


@app.command("export")
def gdpr_export(citizen: CitizenOption,
                out: Annotated[str, typer.Option(help="The ZIP file to write (created 0600, never half-written).")],
                as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """Everything held about a citizen, as one ZIP (GDPR Art. 15 and 20)."""
    citizen_id = _citizen_id(citizen, as_json)
    services = open_services(as_json)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.part")
    digest, size = hashlib.sha256(), 0
    with Session(services.engine) as db, refused(as_json, reading=True):
        by = Staff(*acting(services, db, as_for, "dpo", as_json))
        try:  # a ZIP is whole or absent: the part file goes whatever stops the export
            total = services.gdpr.export_size(db, citizen_id)
            with typer.progressbar(length=max(total, 1), label="Export", file=sys.stderr, hidden=as_json) as bar:
                chunks = services.gdpr.export(db, citizen_id=citizen_id, by=by, progress=bar.update)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        db.commit()  # the audit entry
    result = {"file": str(target), "bytes": size, "sha256": digest.hexdigest()}
    emit(result, as_json, f"wrote {target} ({size} bytes, sha256 {result['sha256']})")


@app.command("erase")
def gdpr_erase(citizen: CitizenOption,
               reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
               as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """Erase a citizen (GDPR Art. 17) and print the signed erasure certificate. Run it again after
    a failure: it finishes the job; once done it prints the first certificate."""
    citizen_id = _citizen_id(citizen, as_json)
    services = open_services(as_json)
    with Session(services.engine) as db, refused(as_json):
        by = Staff(*acting(services, db, as_for, "dpo", as_json))
        try:
            certificate = services.gdpr.erase(db, citizen_id=citizen_id, reason=reason, by=by)
        except BlobStoreUnavailable as exc:
            fail(f"the object store failed ({exc}); the erasure is half done: run the same command again",
                 as_json=as_json, code="unavailable", exit_code=3)
    emit({"certificate": certificate}, as_json, certificate)


@app.command("hold")
def gdpr_hold(document: DocumentOption,
              reason: Annotated[str, typer.Option(help="The legal obligation to keep it (recorded, shown).")],
              as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """Legal hold (GDPR Art. 17(3)(b)): keep a document through its owner's deletion or erasure
    and through retention, until `vault gdpr release`."""
    document_id = _document_id(document, as_json)
    services = open_services(as_json)
    with Session(services.engine) as db, refused(as_json):
        by = Staff(*acting(services, db, as_for, "dpo", as_json))
        held = services.gdpr.hold(db, document_id=document_id, reason=reason, by=by)
        output = {"document_id": str(held.id), "legal_hold": held.legal_hold}
        db.commit()
    emit(output, as_json, f"held: {output['document_id']}")


@app.command("release")
def gdpr_release(document: DocumentOption, as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """End a legal hold. A document kept after its owner's erasure is then deleted."""
    document_id = _document_id(document, as_json)
    services = open_services(as_json)
    with Session(services.engine) as db, refused(as_json):
        by = Staff(*acting(services, db, as_for, "dpo", as_json))
        blob_key = services.gdpr.release(db, document_id=document_id, by=by)
        db.commit()
    if blob_key is not None:
        services.documents.delete_blob_later(blob_key)  # after the commit; if the store is down, reconcile removes it
    output = {"document_id": str(document_id), "released": True, "deleted": blob_key is not None}
    emit(output, as_json, f"released: {document_id}" + (" (its owner was erased: deleted)" if blob_key else ""))
