"""The ``vault`` command (DESIGN.md §8). Every ``create``/``list`` takes ``--json`` and then prints JSON only."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Annotated, NoReturn

import typer
from sqlmodel import Session, select

from vault.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="Citizen Vault: the city's identity provider and document vault.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
citizen_app = typer.Typer(help="Citizen accounts.", no_args_is_help=True)
demo_app = typer.Typer(help="Demonstration data (development only).", no_args_is_help=True)
client_app = typer.Typer(help="Apps (OpenID Connect clients).", no_args_is_help=True)
keys_app = typer.Typer(help="Token signing keys and the key-encryption key.", no_args_is_help=True)
storage_app = typer.Typer(help="The document store.", no_args_is_help=True)
staff_app = typer.Typer(help="Staff accounts (DPO, administrators).", no_args_is_help=True)
gdpr_app = typer.Typer(help="Data-subject requests: export and erasure.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention: expired documents, unused accounts, old audit entries.",
                            no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(client_app, name="client")
app.add_typer(keys_app, name="keys")
app.add_typer(storage_app, name="storage")
app.add_typer(staff_app, name="staff")
app.add_typer(gdpr_app, name="gdpr")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
app.add_typer(citizen_app, name="citizen")
app.add_typer(demo_app, name="demo")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only.")]
ClientId = Annotated[str, typer.Argument(help="The app's client_id (one that starts with '-', from an older "
                                              "version, goes after '--': `-- -AbC…`).")]

DEMO_CITIZEN = {
    "email": "marie.dupont@example.org",
    "given_name": "Marie Claire",
    "family_name": "Dupont",
    "birthdate": "1984-07-31",
    "gender": "female",
    "birthplace": "75056",
    "birthcountry": "99100",
}


def fail(message: str, *, as_json: bool, code: str = "error", fields: dict[str, str] | None = None,
         exit_code: int = 2) -> NoReturn:
    if as_json:
        body: dict[str, object] = {"error": code, "detail": message}
        if fields:
            body["fields"] = fields
        typer.echo(json.dumps(body, ensure_ascii=False))
    else:
        typer.echo(f"error: {message}", err=True)
        for field, text in (fields or {}).items():
            typer.echo(f"  --{field.replace('_', '-')}: {text}", err=True)
    raise typer.Exit(exit_code)


def settings_or_exit(as_json: bool = False) -> Settings:
    try:
        return load_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(f"invalid configuration: {exc}", as_json=as_json, code="config_error")


def _services(settings: Settings):  # noqa: ANN202
    """The account service without the web app (no keyring needed to create or list citizens)."""
    from vault import crypto
    from vault.auth.passwords import Hasher
    from vault.auth.service import AccountService
    from vault.db import make_engine
    from vault.mail import make_mailer

    try:
        keys = crypto.load_key_provider(settings)
    except crypto.KeyProviderError as exc:
        fail(str(exc), as_json=False, code="config_error")
    engine = make_engine(settings.effective_database_url)
    service = AccountService(settings=settings, keys=keys, mailer=make_mailer(settings),
                             hasher=Hasher(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib))
    return engine, service


def _keystore(settings: Settings):  # noqa: ANN202
    from vault import crypto
    from vault.db import make_engine
    from vault.oidc.keys import KeyStore

    try:
        keys = crypto.load_key_provider(settings)
    except crypto.KeyProviderError as exc:
        fail(str(exc), as_json=False, code="config_error")
    return make_engine(settings.effective_database_url), KeyStore(keys)


def _require_schema(engine, as_json: bool) -> None:  # noqa: ANN001
    from vault.db import DatabaseUnavailable, ping
    from vault.migrations import schema_is_current

    try:
        ping(engine)
        current = schema_is_current(engine)
    except DatabaseUnavailable as exc:
        fail(f"the database does not answer ({exc})", as_json=as_json, code="database_unavailable")
    if not current:
        fail("the database schema is not up to date: run `vault db upgrade` first", as_json=as_json,
             code="migrations_pending")


# ---- serve / db ----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-Proto from --forwarded-allow-ips.")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(help="Proxies allowed to set forwarded headers.")] = "127.0.0.1",
) -> None:
    """Serve the web application (pages, OpenID Connect, API)."""
    import uvicorn

    from vault.logs import configure_logging

    configure_logging()
    settings = settings_or_exit()
    try:
        settings.check()
    except ConfigError as exc:
        fail(str(exc), as_json=False, code="config_error")
    uvicorn.run("vault.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_config=None, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips, server_header=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations (the app never creates tables by itself)."""
    from sqlalchemy.exc import SQLAlchemyError

    from vault.migrations import upgrade

    settings = settings_or_exit()
    try:
        upgrade(settings.effective_database_url, revision)
    except SQLAlchemyError as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc.args[0] if exc.args else ''}", as_json=False,
             code="migration_failed")
    if revision == "head":
        # Signing keys and service secrets exist before any replica serves (no first-request race).
        engine, keystore = _keystore(settings)
        with Session(engine) as db:
            keystore.ensure(db)
            db.commit()
    typer.echo(f"database at revision {revision}", err=True)


# ---- citizens ------------------------------------------------------------------------------------


@citizen_app.command("create")
def citizen_create(
    email: Annotated[str, typer.Option(help="The citizen's email address.")],
    given_name: Annotated[str, typer.Option(help="First names, space separated.")],
    family_name: Annotated[str, typer.Option(help="Birth name.")],
    birthdate: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
    gender: Annotated[str, typer.Option(help="male or female.")],
    birthcountry: Annotated[str, typer.Option(help="INSEE country code (France: 99100).")] = "99100",
    birthplace: Annotated[str, typer.Option(help="INSEE commune code; empty when born abroad.")] = "",
    preferred_username: Annotated[str, typer.Option(help="Usual name.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    verified: Annotated[bool, typer.Option("--verified", help="Mark the email as already verified.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a citizen account. Without --password-stdin a strong password is generated and printed once."""
    from vault.auth.exceptions import InvalidInput
    from vault.auth.models import CitizenPublic

    settings = settings_or_exit(as_json)
    generated = not password_stdin
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = "-".join(secrets.token_urlsafe(6) for _ in range(4))
    engine, service = _services(settings)
    _require_schema(engine, as_json)
    form = {"email": email, "password": password, "given_name": given_name, "family_name": family_name,
            "birthdate": birthdate, "gender": gender, "birthplace": birthplace, "birthcountry": birthcountry,
            "preferred_username": preferred_username}
    with Session(engine, expire_on_commit=False) as db:
        try:
            citizen = service.create_citizen(db=db, form=form, verified=verified)
        except InvalidInput as exc:
            fail("the citizen was not created", as_json=as_json, code="invalid_input", fields=exc.errors)
        db.commit()
        public = CitizenPublic.of(citizen)
    output = json.loads(public.model_dump_json())
    if generated:
        output["password"] = password
    if as_json:
        typer.echo(json.dumps(output, ensure_ascii=False))
    else:
        typer.echo(f"created citizen {public.id} <{public.email}>")
        if generated:
            typer.echo(f"password (shown once): {password}")


@citizen_app.command("list")
def citizen_list(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List citizen accounts, oldest first."""
    from vault.auth.models import CitizenPublic

    settings = settings_or_exit(as_json)
    engine, service = _services(settings)
    _require_schema(engine, as_json)
    with Session(engine, expire_on_commit=False) as db:
        citizens = [CitizenPublic.of(c) for c in service.list_citizens(db=db, limit=limit, offset=offset)]
    if as_json:
        typer.echo(json.dumps([json.loads(c.model_dump_json()) for c in citizens], ensure_ascii=False))
        return
    for c in citizens:
        flags = ("verified" if c.email_verified else "unverified") + (", totp" if c.totp_enabled else "")
        typer.echo(f"{c.id}  {c.email}  {c.given_name} {c.family_name}  ({flags})")


# ---- apps (OpenID Connect clients) ---------------------------------------------------------------------


def _print_client(body: dict, as_json: bool, secret: str | None = None) -> None:
    if secret is not None:
        body = {**body, "client_secret": secret}
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"{body['client_id']}  {body['name']}  ({body['auth_method']}{', disabled' if body.get('disabled') else ''})")
    if secret is not None:
        typer.echo(f"client_secret (shown once, store it now): {secret}")


@client_app.command("create")
def client_create(
    name: Annotated[str, typer.Option(help="The app's name, shown to citizens on the consent page.")],
    redirect_uri: Annotated[list[str], typer.Option(help="Registered redirect URI (repeatable), exact match.")],
    post_logout_redirect_uri: Annotated[list[str] | None, typer.Option(help="Allowed after logout (repeatable).")] = None,
    scope: Annotated[str, typer.Option(help="Scopes the app may ask for.")] = "openid profile email",
    auth_method: Annotated[str, typer.Option(help="client_secret_post|client_secret_basic|private_key_jwt|none")] = "client_secret_basic",
    sector: Annotated[str | None, typer.Option(help="Pairwise sector: apps sharing it get the same sub.")] = None,
    userinfo_signed: Annotated[bool, typer.Option("--userinfo-signed", help="Userinfo as a signed JWT.")] = False,
    id_token_alg: Annotated[str, typer.Option(help="ES256 or RS256.")] = "ES256",
    nonce_optional: Annotated[bool, typer.Option("--nonce-optional", help="Accept requests without nonce.")] = False,
    refresh_tokens: Annotated[bool, typer.Option("--refresh-tokens", help="Allow the refresh_token grant.")] = False,
    jwks: Annotated[str | None, typer.Option(help="File with the app's public JWK Set (private_key_jwt).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register an app; prints its client_id and client_secret (the secret is shown once, stored hashed)."""
    from pathlib import Path

    from vault.oidc.clients import ClientError, client_public, create_client

    settings = settings_or_exit(as_json)
    jwks_json = None
    if jwks:
        try:
            jwks_json = Path(jwks).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read --jwks {jwks}: {exc.strerror}", as_json=as_json, code="invalid_input")
    engine, _ = _keystore(settings)
    _require_schema(engine, as_json)
    with Session(engine, expire_on_commit=False) as db:
        try:
            registration = create_client(
                db=db, name=name, redirect_uris=redirect_uri, post_logout_redirect_uris=post_logout_redirect_uri or [],
                scope=scope, auth_method=auth_method, sector=sector, userinfo_signed=userinfo_signed,
                id_token_alg=id_token_alg, require_nonce=not nonce_optional, allow_refresh=refresh_tokens,
                jwks_json=jwks_json, production=settings.is_production)
        except ClientError as exc:
            fail("the app was not registered", as_json=as_json, code="invalid_input", fields=exc.fields)
        db.commit()
        _print_client(client_public(registration.client), as_json, registration.secret)


@client_app.command("list")
def client_list(as_json: JsonFlag = False) -> None:
    """List registered apps."""
    from vault.oidc.clients import client_public, list_clients

    settings = settings_or_exit(as_json)
    engine, _ = _keystore(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        clients = [client_public(c) for c in list_clients(db=db)]
    if as_json:
        typer.echo(json.dumps(clients, ensure_ascii=False))
        return
    for body in clients:
        _print_client(body, False)


def _client_change(client_id: str, as_json: bool, change) -> None:  # noqa: ANN001
    from vault.oidc.clients import ClientError, ClientNotFound

    settings = settings_or_exit(as_json)
    engine, _ = _keystore(settings)
    _require_schema(engine, as_json)
    with Session(engine, expire_on_commit=False) as db:
        try:
            output = change(db)
        except ClientNotFound:
            fail(f"no app with client_id {client_id}", as_json=as_json, code="not_found")
        except ClientError as exc:
            fail(str(exc), as_json=as_json, code="invalid_input", fields=exc.fields)
        db.commit()
    typer.echo(json.dumps(output, ensure_ascii=False) if as_json else "\n".join(f"{k}: {v}" for k, v in output.items()))


@client_app.command("rotate-secret")
def client_rotate_secret(client_id: ClientId, as_json: JsonFlag = False) -> None:
    """Give the app a new secret (shown once); the old one stops working at once."""
    from vault.oidc.clients import rotate_secret

    _client_change(client_id, as_json, lambda s: {"client_id": client_id,
                                                   "client_secret": rotate_secret(db=s, client_id=client_id)})


@client_app.command("disable")
def client_disable(client_id: ClientId, as_json: JsonFlag = False) -> None:
    """Stop the app: no more logins through it, its tokens are revoked."""
    from vault.oidc.clients import client_public, disable_client

    _client_change(client_id, as_json, lambda s: client_public(disable_client(db=s, client_id=client_id)))


@keys_app.command("rotate")
def keys_rotate(as_json: JsonFlag = False) -> None:
    """New signing keys; the retired public keys stay in /jwks until the tokens they signed expire."""
    settings = settings_or_exit(as_json)
    engine, keystore = _keystore(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        kids = keystore.rotate(db)
        db.commit()
    typer.echo(json.dumps({"active": kids}) if as_json else "active signing keys: " + ", ".join(kids))


def _documents(settings: Settings):  # noqa: ANN202
    from vault import crypto
    from vault.db import make_engine
    from vault.storage.antivirus import NoScanner
    from vault.storage.blobs import make_blob_store
    from vault.storage.service import DocumentService

    try:
        keys = crypto.load_key_provider(settings)
    except crypto.KeyProviderError as exc:
        fail(str(exc), as_json=False, code="config_error")
    service = DocumentService(settings=settings, keys=keys, store=make_blob_store(settings), scanner=NoScanner())
    return make_engine(settings.effective_database_url), service


@keys_app.command("rotate-kek")
def keys_rotate_kek(as_json: JsonFlag = False) -> None:
    """A new key-encryption key; every citizen key is re-wrapped under it (documents untouched).
    Resumable: run it again after an interruption, it finishes the job."""
    from vault.crypto import LocalKeyring

    settings = settings_or_exit(as_json)
    engine, service = _documents(settings)
    _require_schema(engine, as_json)
    keys = service.keys
    if isinstance(keys, LocalKeyring):
        keys.add_version()
    with Session(engine) as db:
        count = service.rewrap_all(db)
    # Service secrets, signing keys and TOTP seeds are wrapped by the KEK too.
    _, keystore = _keystore(settings)
    _, accounts = _services(settings)
    with Session(engine) as db:
        secrets_count = keystore.rewrap_all(db) + accounts.rewrap_totp_seeds(db=db)
        db.commit()
    output = {"kek_version": keys.active_version, "citizen_keys_rewrapped": count,
              "service_keys_rewrapped": secrets_count}
    typer.echo(json.dumps(output) if as_json else
               f"KEK version {output['kek_version']}: {count} citizen keys and {secrets_count} service keys re-wrapped")


@storage_app.command("reconcile")
def storage_reconcile(dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
                      older_than: Annotated[int, typer.Option(help="Minutes: younger orphans may be uploads in progress.",
                                                              min=0)] = 60,
                      as_json: JsonFlag = False) -> None:
    """Remove blobs that no document row points to, and unfinished uploads (older than an hour);
    report rows whose blob is missing."""
    from datetime import timedelta

    from vault.storage.blobs import BlobStoreUnavailable

    settings = settings_or_exit(as_json)
    engine, service = _documents(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        try:
            report = service.reconcile(db, dry_run=dry_run, min_age=timedelta(minutes=older_than))
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


# ---- GDPR ----------------------------------------------------------------------------------------------

CLI_ACTOR = ("system:cli", "opérateur (ligne de commande)")


def _gdpr(settings: Settings):  # noqa: ANN202
    from vault.gdpr.service import GdprService
    from vault.oidc.keys import KeyStore

    engine, documents = _documents(settings)
    return engine, GdprService(settings=settings, keys=documents.keys, keystore=KeyStore(documents.keys),
                               documents=documents)


def _uuid_option(value: str, option: str, what: str, as_json: bool):  # noqa: ANN202
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{option} must be {what}, not {value!r}", as_json=as_json, code="invalid_input")


def _citizen_id(value: str, as_json: bool):  # noqa: ANN202
    return _uuid_option(value, "--citizen", "a citizen id (see `vault citizen list`)", as_json)


@staff_app.command("create")
def staff_create(
    email: Annotated[str, typer.Option(help="The staff member's email.")],
    role: Annotated[str, typer.Option(help="dpo or admin.")],
    name: Annotated[str, typer.Option(help="Full name, shown in the register.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a staff account. TOTP is required: its secret and otpauth URI are printed once (scan it now)."""
    from vault.auth.exceptions import InvalidInput
    from vault.gdpr.staff import StaffService

    settings = settings_or_exit(as_json)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else "-".join(secrets.token_urlsafe(6) for _ in range(4))
    engine, accounts = _services(settings)
    _require_schema(engine, as_json)
    with Session(engine, expire_on_commit=False) as db:
        try:
            staff, secret, uri = StaffService(accounts).create(db, email=email, name=name or email, role=role,
                                                               password=password)
        except InvalidInput as exc:
            fail("the staff account was not created", as_json=as_json, code="invalid_input", fields=exc.errors)
        from vault.gdpr import audit

        audit.record(db, actor=CLI_ACTOR[0], action="staff.created", target=f"staff:{staff.id}",
                     details={"role": role})
        db.commit()
    output = {"id": str(staff.id), "email": staff.email, "role": staff.role, "totp_secret": secret, "otpauth_uri": uri}
    if not password_stdin:
        output["password"] = password
    if as_json:
        typer.echo(json.dumps(output))
    else:
        for key, value in output.items():
            typer.echo(f"{key}: {value}")


@gdpr_app.command("export")
def gdpr_export(citizen: Annotated[str, typer.Option(help="The citizen's id.")],
                out: Annotated[str, typer.Option(help="The ZIP file to write (created 0600, never half-written).")],
                as_json: JsonFlag = False) -> None:
    """Everything held about a citizen, as one ZIP (GDPR Art. 15 and 20)."""
    import hashlib
    import os
    from pathlib import Path

    from vault.gdpr.service import GdprError, Staff

    settings = settings_or_exit(as_json)
    citizen_id = _citizen_id(citizen, as_json)
    engine, gdpr = _gdpr(settings)
    _require_schema(engine, as_json)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.part")
    digest, size = hashlib.sha256(), 0
    with Session(engine) as db:
        try:
            total = gdpr.export_size(db, citizen_id)
            with typer.progressbar(length=max(total, 1), label="Export", file=sys.stderr, hidden=as_json) as bar:
                chunks = gdpr.export(db, citizen_id=citizen_id, by=Staff(*CLI_ACTOR), progress=bar.update)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except GdprError as exc:
            tmp.unlink(missing_ok=True)
            fail(exc.message, as_json=as_json, code=exc.code)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        db.commit()  # the audit entry
    result = {"file": str(target), "bytes": size, "sha256": digest.hexdigest()}
    typer.echo(json.dumps(result) if as_json else f"wrote {target} ({size} bytes, sha256 {result['sha256']})")


@gdpr_app.command("erase")
def gdpr_erase(citizen: Annotated[str, typer.Option(help="The citizen's id.")],
               reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
               as_json: JsonFlag = False) -> None:
    """Erase a citizen (GDPR Art. 17) and print the signed erasure certificate. Run it again after
    a failure: it finishes the job; once done it prints the first certificate."""
    from vault.gdpr.service import GdprError, Staff
    from vault.storage.blobs import BlobStoreUnavailable

    settings = settings_or_exit(as_json)
    citizen_id = _citizen_id(citizen, as_json)
    engine, gdpr = _gdpr(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        try:
            certificate = gdpr.erase(db, citizen_id=citizen_id, reason=reason, by=Staff(*CLI_ACTOR))
        except GdprError as exc:
            fail(exc.message, as_json=as_json, code=exc.code)
        except BlobStoreUnavailable as exc:
            fail(f"the object store failed ({exc}); the erasure is half done: run the same command again",
                 as_json=as_json, code="unavailable", exit_code=3)
    typer.echo(json.dumps({"certificate": certificate}) if as_json else certificate)


DocumentOption = Annotated[str, typer.Option("--document", help="The document's id.")]


def _document_id(value: str, as_json: bool):  # noqa: ANN202
    return _uuid_option(value, "--document", "a document id", as_json)


@gdpr_app.command("hold")
def gdpr_hold(document: DocumentOption,
              reason: Annotated[str, typer.Option(help="The legal obligation to keep it (recorded, shown).")],
              as_json: JsonFlag = False) -> None:
    """Legal hold (GDPR Art. 17(3)(b)): keep a document through its owner's deletion or erasure
    and through retention, until `vault gdpr release`."""
    from vault.gdpr.service import GdprError, Staff

    settings = settings_or_exit(as_json)
    document_id = _document_id(document, as_json)
    engine, gdpr = _gdpr(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        try:
            held = gdpr.hold(db, document_id=document_id, reason=reason, by=Staff(*CLI_ACTOR))
        except GdprError as exc:
            fail(exc.message, as_json=as_json, code=exc.code)
        output = {"document_id": str(held.id), "legal_hold": held.legal_hold}
        db.commit()
    typer.echo(json.dumps(output, ensure_ascii=False) if as_json else f"held: {output['document_id']}")


@gdpr_app.command("release")
def gdpr_release(document: DocumentOption, as_json: JsonFlag = False) -> None:
    """End a legal hold. A document kept after its owner's erasure is then deleted."""
    from vault.gdpr.service import GdprError, Staff

    settings = settings_or_exit(as_json)
    document_id = _document_id(document, as_json)
    engine, gdpr = _gdpr(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        try:
            blob_key = gdpr.release(db, document_id=document_id, by=Staff(*CLI_ACTOR))
        except GdprError as exc:
            fail(exc.message, as_json=as_json, code=exc.code)
        db.commit()
    if blob_key is not None:
        gdpr.documents.delete_blob_later(blob_key)  # after the commit; if the store is down, reconcile removes it
    output = {"document_id": str(document_id), "released": True, "deleted": blob_key is not None}
    typer.echo(json.dumps(output) if as_json else
               f"released: {document_id}" + (" (its owner was erased: deleted)" if blob_key else ""))


@retention_app.command("run")
def retention_run(dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
                  as_json: JsonFlag = False) -> None:
    """Notify, then delete expired documents and erase unused accounts; roll the audit log. Daily."""
    from dataclasses import asdict

    from vault.gdpr import retention
    from vault.mail import make_mailer

    settings = settings_or_exit(as_json)
    engine, gdpr = _gdpr(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
        report = retention.run(db, gdpr=gdpr, mailer=make_mailer(settings), dry_run=dry_run)
        db.commit()
    body = asdict(report)
    if as_json:
        typer.echo(json.dumps(body))
        return
    prefix = "would " if dry_run else ""
    typer.echo(f"documents: {prefix}notify {len(report.documents_noticed)}, {prefix}delete {len(report.documents_deleted)}")
    typer.echo(f"accounts: {prefix}notify {len(report.accounts_noticed)}, {prefix}erase {len(report.accounts_erased)}")
    if not dry_run:
        typer.echo(f"audit entries purged: {report.audit_entries_purged}; housekeeping: {report.housekeeping}")


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Walk the hash chain: exit 0 if intact, 1 with the first bad entry otherwise."""
    from vault.gdpr import audit

    settings = settings_or_exit(as_json)
    engine, _ = _keystore(settings)
    _require_schema(engine, as_json)
    with Session(engine) as db:
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


# ---- demo ----------------------------------------------------------------------------------------


@demo_app.command("seed")
def demo_seed(as_json: JsonFlag = False) -> None:
    """Create the demo citizen (or give it a fresh password) and print its credentials. Development only."""
    from vault.auth.models import Citizen

    settings = settings_or_exit(as_json)
    if settings.is_production:
        fail("demo data is refused in production", as_json=as_json, code="production")
    engine, service = _services(settings)
    _require_schema(engine, as_json)
    password = "-".join(secrets.token_urlsafe(6) for _ in range(4))
    with Session(engine, expire_on_commit=False) as db:
        citizen = db.exec(select(Citizen).where(Citizen.email == DEMO_CITIZEN["email"])).first()
        if citizen is None:
            citizen = service.create_citizen(db=db, form={**DEMO_CITIZEN, "password": password},
                                             verified=True)
        else:
            citizen.password_hash = service.hasher.hash(password)
        db.commit()
    _seed_demo_client(engine, settings)
    credentials = {"email": DEMO_CITIZEN["email"], "password": password, "url": f"{settings.issuer}/login",
                   "demo_app": f"{settings.issuer}/demo"}
    if as_json:
        typer.echo(json.dumps(credentials))
    else:
        typer.echo("Demo citizen (development only):")
        typer.echo(f"  email:    {credentials['email']}")
        typer.echo(f"  password: {credentials['password']}")
        typer.echo(f"  log in at {credentials['url']}")
        typer.echo(f"Demo app (plays a city app, OpenID Connect): {credentials['demo_app']}")


DEMO_CLIENT_ID = "demo-app"


def _seed_demo_client(engine, settings: Settings) -> None:  # noqa: ANN001
    """The demo app served at /demo: a public client (PKCE) whose URIs follow the issuer."""
    from vault.oidc.models import OAuthClient

    with Session(engine) as db:
        client = db.get(OAuthClient, DEMO_CLIENT_ID) or OAuthClient(
            client_id=DEMO_CLIENT_ID, name="Démonstration (application de la ville)", auth_method="none",
            scope="openid profile birth email", sector=DEMO_CLIENT_ID, redirect_uris=[], allow_refresh=True)
        client.redirect_uris = [f"{settings.issuer}/demo/callback"]
        client.post_logout_redirect_uris = [f"{settings.issuer}/demo"]
        client.disabled_at = None
        db.add(client)
        db.commit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
