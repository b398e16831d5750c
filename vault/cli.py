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
app.add_typer(db_app, name="db")
app.add_typer(citizen_app, name="citizen")
app.add_typer(demo_app, name="demo")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only.")]

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
    with Session(engine, expire_on_commit=False) as session:
        try:
            citizen = service.create_citizen(session=session, form=form, verified=verified)
        except InvalidInput as exc:
            fail("the citizen was not created", as_json=as_json, code="invalid_input", fields=exc.errors)
        session.commit()
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
    with Session(engine, expire_on_commit=False) as session:
        citizens = [CitizenPublic.of(c) for c in service.list_citizens(session=session, limit=limit, offset=offset)]
    if as_json:
        typer.echo(json.dumps([json.loads(c.model_dump_json()) for c in citizens], ensure_ascii=False))
        return
    for c in citizens:
        flags = ("verified" if c.email_verified else "unverified") + (", totp" if c.totp_enabled else "")
        typer.echo(f"{c.id}  {c.email}  {c.given_name} {c.family_name}  ({flags})")


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
    with Session(engine, expire_on_commit=False) as session:
        citizen = session.exec(select(Citizen).where(Citizen.email == DEMO_CITIZEN["email"])).first()
        if citizen is None:
            citizen = service.create_citizen(session=session, form={**DEMO_CITIZEN, "password": password},
                                             verified=True)
        else:
            citizen.password_hash = service.hasher.hash(password)
        session.commit()
    credentials = {"email": DEMO_CITIZEN["email"], "password": password, "url": f"{settings.issuer}/login"}
    if as_json:
        typer.echo(json.dumps(credentials))
    else:
        typer.echo("Demo citizen (development only):")
        typer.echo(f"  email:    {credentials['email']}")
        typer.echo(f"  password: {credentials['password']}")
        typer.echo(f"  log in at {credentials['url']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
