"""``vault keys``: token signing keys and the key-encryption key (KEK).

KEK rotation runs as steps that can each be run again after an interruption (docs/crypto.md):
``kek add`` (a new version every replica loads, not yet used) → ``kek activate N`` (new wraps use
it) → ``kek rewrap`` (everything moves to it, batch by batch) → ``kek retire OLD`` (refused while
anything is still wrapped under OLD). ``rotate-kek`` runs them all and finishes an interrupted
rotation when run again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlmodel import Session

from vault.cli.common import JsonFlag, emit, fail, open_services
from vault.crypto import KeyProviderError, LocalKeyring
from vault.crypto.rotation import KekRotation, Progress, settle_delay
from vault.oidc.keys import RotationPending
from vault.services import Services

app = typer.Typer(help="Token signing keys and the key-encryption key.", no_args_is_help=True)
kek_app = typer.Typer(help="The key-encryption key (KEK), step by step.", no_args_is_help=True)
app.add_typer(kek_app, name="kek")

BatchSize = Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                        help="Rows re-wrapped per committed batch.")]

KMS_STEPS = ("with VAULT_KEY_PROVIDER=aws-kms the KEK lives in the KMS, which has no versions to {what}: "
             "turn on the KMS key's automatic rotation (nothing to re-wrap), or create a new KMS key, set "
             "VAULT_KMS_KEY_ID to it on every replica (the old key must stay enabled), restart them, then run "
             "`vault keys kek rewrap`; `vault keys kek status` shows when nothing is left under the old key")


# ---- token signing keys ---------------------------------------------------------------------------


@app.command("rotate")
def keys_rotate(
    now: Annotated[bool, typer.Option("--now", help="Sign with the new keys at once (emergency: an app "
                                      "that cached /jwks fails to verify new tokens until it fetches it again).")]
    = False,
    as_json: JsonFlag = False,
) -> None:
    """New signing keys, published in /jwks at once and used for signing only once every cached
    copy of /jwks holds them; the old public keys stay in /jwks until the tokens they signed expire."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        try:
            rotation = services.keystore.rotate(db, now=now)
        except RotationPending as exc:
            fail(f"{exc}: run it again after that time, or with --now to replace them at once",
                 as_json=as_json, code="rotation_pending")
        db.commit()
    kids = [key.kid for key in rotation]
    active_from = min(key.active_from for key in rotation)
    output = {"active": kids, "active_from": active_from.isoformat(timespec="seconds")}
    emit(output, as_json, f"new signing keys: {', '.join(kids)}; published now, signing from "
                          f"{output['active_from']}" + (" (at once: --now)" if now else ""))


# ---- the KEK, step by step --------------------------------------------------------------------------------


def _keyring(services: Services, as_json: bool, what: str) -> LocalKeyring:
    if not isinstance(services.keys, LocalKeyring):
        fail(KMS_STEPS.format(what=what), as_json=as_json, code="not_supported")
    return services.keys


def _census(kek: KekRotation) -> dict[str, dict[str, int]]:
    return {label: {str(v): n for v, n in sorted(counts.items())} for label, counts in kek.census().items()}


def _report(as_json: bool) -> Any:
    """Progress on stderr after each committed batch (stdout keeps the final answer)."""
    def report(progress: Progress) -> None:
        if not as_json:
            typer.echo(f"  {progress.total_rewrapped} re-wrapped, {progress.total_remaining} remaining", err=True)
    return report


def _rewrap(services: Services, batch_size: int, as_json: bool) -> Progress:
    try:
        return services.kek.rewrap(batch_size=batch_size, after_batch=_report(as_json))
    except KeyProviderError as exc:
        fail(f"{exc}; what was re-wrapped is kept, run the command again", as_json=as_json, code="key_provider_error")


@kek_app.command("status")
def kek_status(as_json: JsonFlag = False) -> None:
    """The KEK versions, the active one, and how many values are wrapped under each."""
    services = open_services(as_json)
    census = _census(services.kek)
    by_version: dict[str, int] = {}
    for counts in census.values():
        for version, n in counts.items():
            by_version[version] = by_version.get(version, 0) + n
    keys = services.keys
    output: dict[str, Any] = {"provider": "local" if isinstance(keys, LocalKeyring) else "aws-kms",
                              "active": keys.active_version, "wrapped": census, "wrapped_by_version": by_version}
    if isinstance(keys, LocalKeyring):
        activated = keys.activated_at
        output |= {"versions": keys.versions, "pending": keys.pending_versions(),
                   "activated_at": activated.isoformat(timespec="seconds") if activated else None}
    lines = [f"active KEK version: {keys.active_version}"]
    if "versions" in output:
        lines.append(f"versions in the keyring: {', '.join(map(str, output['versions']))}"
                     + (f" (added, not active: {', '.join(map(str, output['pending']))})" if output["pending"] else ""))
    lines += [f"  {label}: " + (", ".join(f"{n} under {v}" for v, n in counts.items()) or "none")
              for label, counts in census.items()]
    emit(output, as_json, "\n".join(lines))


@kek_app.command("add")
def kek_add(as_json: JsonFlag = False) -> None:
    """Add a new KEK version to the keyring, not yet used: every replica loads it within
    VAULT_KEYRING_RELOAD_SECONDS. Run again, it adds nothing while one is waiting for activation."""
    services = open_services(as_json)
    keyring = _keyring(services, as_json, "add")
    pending = keyring.pending_versions()
    try:
        version = pending[-1] if pending else keyring.add_version()
    except KeyProviderError as exc:  # the file cannot be read: nothing was written
        fail(str(exc), as_json=as_json, code="key_provider_error")
    emit({"added": version, "active": keyring.active_version, "already_added": bool(pending)}, as_json,
         f"KEK version {version} {'was already' if pending else 'is'} in the keyring, not yet active; "
         f"next: vault keys kek activate {version}")


def _wait_until_loaded(keyring: LocalKeyring, version: int, as_json: bool) -> None:
    """Until every replica has read a version added to the keyring (the settle delay after it was
    added): only then does it start to wrap, as the rotation's order has it. A replica meeting a
    value wrapped under a version it does not know reads the keyring again at once anyway; the wait
    makes that the exception."""
    added = keyring.created_at(version)
    if added is None or (wait := (added + settle_delay(keyring) - datetime.now(UTC)).total_seconds()) <= 0:
        return
    if not as_json:
        typer.echo(f"waiting {wait:.0f} s for every replica to load KEK version {version} before it wraps …", err=True)
    time.sleep(wait)


@kek_app.command("activate")
def kek_activate(version: Annotated[int, typer.Argument(help="The version to wrap under from now on.")],
                 as_json: JsonFlag = False) -> None:
    """New wraps use VERSION (every replica within VAULT_KEYRING_RELOAD_SECONDS; one meeting a value
    wrapped under it reads the keyring again at once)."""
    services = open_services(as_json)
    keyring = _keyring(services, as_json, "activate")
    try:
        if version in keyring.versions:
            _wait_until_loaded(keyring, version, as_json)
        changed = keyring.activate(version)
    except KeyProviderError as exc:
        fail(str(exc), as_json=as_json, code="invalid_input")
    emit({"active": version, "changed": changed}, as_json,
         f"KEK version {version} {'is now' if changed else 'was already'} active; next: vault keys kek rewrap")


@kek_app.command("rewrap")
def kek_rewrap(batch_size: BatchSize = 500, as_json: JsonFlag = False) -> None:
    """Re-wrap citizen keys, legal-hold document keys, signing keys, service secrets and TOTP seeds
    under the active KEK, one committed batch at a time (objects untouched). Interrupted, run it
    again: it goes on from where it stopped."""
    services = open_services(as_json)
    progress = _rewrap(services, batch_size, as_json)
    output = {"active": services.keys.active_version, "rewrapped": progress.rewrapped,
              "remaining": progress.remaining, "failed": progress.failed}
    emit(output, as_json, f"{progress.total_rewrapped} values re-wrapped under KEK version "
                          f"{services.keys.active_version}; {progress.total_remaining} remaining")
    if progress.failed:
        fail("some values do not unwrap (their KEK version is missing from the keyring, or they were "
             "altered): see the log; nothing was written for them", as_json=False, code="rewrap_failed", exit_code=1)


@kek_app.command("retire")
def kek_retire(version: Annotated[int, typer.Argument(help="The version to remove from the keyring.")],
               as_json: JsonFlag = False) -> None:
    """Remove VERSION's key from the keyring; refused while anything is still wrapped under it.
    Database backups made before the rewrap need the keyring backup of their time."""
    services = open_services(as_json)
    keyring = _keyring(services, as_json, "retire")
    if version not in keyring.versions:
        emit({"retired": version, "changed": False}, as_json, f"KEK version {version} is not in the keyring")
        return
    try:
        services.kek.check_retirable(version)
        keyring.retire(version)
    except KeyProviderError as exc:
        fail(str(exc), as_json=as_json, code="refused")
    emit({"retired": version, "changed": True}, as_json, f"KEK version {version} removed from the keyring")


@app.command("rotate-kek")
def keys_rotate_kek(batch_size: BatchSize = 500, as_json: JsonFlag = False) -> None:
    """The whole KEK rotation in one command: add, activate, rewrap, retire the older versions.
    Interrupted at any step, run it again: it finishes that rotation (it starts a new one only
    when the keyring holds a single version)."""
    services = open_services(as_json)
    keys = services.keys
    retired: list[int] = []
    resumed = False
    if isinstance(keys, LocalKeyring):
        pending, older = keys.pending_versions(), [v for v in keys.versions if v < keys.active_version]
        try:
            resumed = bool(pending or older)  # an interrupted rotation: finished, not started again
            if not resumed:
                pending = [keys.add_version()]
            if pending:
                _wait_until_loaded(keys, pending[-1], as_json)
                keys.activate(pending[-1])
        except KeyProviderError as exc:  # the file cannot be read: nothing was written
            fail(str(exc), as_json=as_json, code="key_provider_error")
    progress = _rewrap(services, batch_size, as_json)
    if isinstance(keys, LocalKeyring) and not progress.failed:
        settled = services.kek.settled_at()
        if settled is not None and (wait := (settled - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(wait)  # until every replica wraps under the new version
        last = _rewrap(services, batch_size, as_json)  # a last sweep for what they wrote meanwhile
        for label, count in last.rewrapped.items():
            progress.rewrapped[label] = progress.rewrapped.get(label, 0) + count
        progress.remaining, progress.failed = last.remaining, last.failed
        for version in [v for v in keys.versions if v != keys.active_version]:
            try:
                services.kek.check_retirable(version)
                keys.retire(version)
            except KeyProviderError:
                continue  # left for `vault keys kek retire`, which says why
            retired.append(version)
    citizen_keys = progress.rewrapped.get("citizen keys", 0)
    output = {"kek_version": keys.active_version, "citizen_keys_rewrapped": citizen_keys,
              "service_keys_rewrapped": progress.total_rewrapped - citizen_keys, "remaining": progress.remaining,
              "failed": progress.failed, "retired": retired, "resumed": resumed}
    emit(output, as_json,
         f"KEK version {keys.active_version}: {citizen_keys} citizen keys and {output['service_keys_rewrapped']} "
         f"other values re-wrapped" + (f"; versions retired: {', '.join(map(str, retired))}" if retired else ""))
    if progress.failed:
        fail("some values do not unwrap: see the log; nothing was written for them, older versions are kept",
             as_json=False, code="rewrap_failed", exit_code=1)
