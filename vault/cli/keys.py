"""``vault keys``: token signing keys and the key-encryption key (KEK)."""

from __future__ import annotations

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, emit, open_services
from vault.crypto import LocalKeyring

app = typer.Typer(help="Token signing keys and the key-encryption key.", no_args_is_help=True)


@app.command("rotate")
def keys_rotate(as_json: JsonFlag = False) -> None:
    """New signing keys; the retired public keys stay in /jwks until the tokens they signed expire."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        kids = services.keystore.rotate(db)
        db.commit()
    emit({"active": kids}, as_json, "active signing keys: " + ", ".join(kids))


@app.command("rotate-kek")
def keys_rotate_kek(as_json: JsonFlag = False) -> None:
    """A new key-encryption key; every citizen key is re-wrapped under it (documents untouched).
    Resumable: run it again after an interruption, it finishes the job."""
    services = open_services(as_json)
    keys = services.keys
    if isinstance(keys, LocalKeyring):
        keys.add_version()  # every service holds this provider: they all wrap under the new version now
    with Session(services.engine) as db:
        count = services.documents.rewrap_all(db)
    # Service secrets, signing keys and TOTP seeds are wrapped by the KEK too.
    with Session(services.engine) as db:
        secrets_count = services.keystore.rewrap_all(db) + services.accounts.rewrap_totp_seeds(db=db)
        db.commit()
    output = {"kek_version": keys.active_version, "citizen_keys_rewrapped": count,
              "service_keys_rewrapped": secrets_count}
    emit(output, as_json,
         f"KEK version {output['kek_version']}: {count} citizen keys and {secrets_count} service keys re-wrapped")
