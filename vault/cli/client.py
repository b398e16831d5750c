"""``vault client``: the city's apps (OpenID Connect clients): the administrators' (``--as`` names the
administrator who acts; any other role is refused). Each change is in the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import Session

from vault.cli.common import AsOption, JsonFlag, acting, fail, open_services, refused
from vault.gdpr import audit
from vault.oidc.clients import client_public, create_client, disable_client, list_clients, rotate_secret
from vault.oidc.exceptions import ClientNotFound

app = typer.Typer(help="Apps (OpenID Connect clients).", no_args_is_help=True)


class Profile(StrEnum):
    """`--profile`: an unknown name is a usage error (exit 2), as typer answers any bad choice."""

    oidc = "oidc"
    fc_v1 = "fc-v1"
    fc_v2 = "fc-v2"

ClientId = Annotated[str, typer.Argument(help="The app's client_id (one that starts with '-', from an older "
                                              "version, goes after '--': `-- -AbC…`).")]


def _print_client(body: dict[str, Any], as_json: bool, secret: str | None = None) -> None:
    if secret is not None:
        body = {**body, "client_secret": secret}
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"{body['client_id']}  {body['name']}  ({body['profile']}, {body['auth_method']}"
               f"{', accepts delegated logins' if body.get('accept_delegation') else ''}"
               f"{', disabled' if body.get('disabled') else ''})")
    if secret is not None:
        typer.echo(f"client_secret (shown once, store it now): {secret}")


@app.command("create")
def client_create(
    name: Annotated[str, typer.Option(help="The app's name, shown to citizens on the consent page.")],
    redirect_uri: Annotated[list[str], typer.Option(help="Registered redirect URI (repeatable), exact match.")],
    post_logout_redirect_uri: Annotated[list[str] | None, typer.Option(help="Allowed after logout (repeatable).")] = None,
    scope: Annotated[str, typer.Option(help="Scopes the app may ask for.")] = "openid profile email",
    auth_method: Annotated[str | None, typer.Option(
        help="client_secret_post|client_secret_basic|private_key_jwt|none (default: client_secret_basic; "
             "client_secret_post with a FranceConnect profile, as at FranceConnect)")] = None,
    sector: Annotated[str | None, typer.Option(help="Pairwise sector: apps sharing it get the same sub.")] = None,
    userinfo_signed: Annotated[bool, typer.Option("--userinfo-signed", help="Userinfo as a signed JWT.")] = False,
    id_token_alg: Annotated[str, typer.Option(help="ES256 or RS256.")] = "ES256",  # noqa: S107  (an algorithm, not a password)
    nonce_optional: Annotated[bool, typer.Option("--nonce-optional", help="Accept requests without nonce.")] = False,
    refresh_tokens: Annotated[bool, typer.Option("--refresh-tokens", help="Allow the refresh_token grant.")] = False,
    jwks: Annotated[str | None, typer.Option(help="File with the app's public JWK Set (private_key_jwt).")] = None,
    profile: Annotated[Profile, typer.Option(
        help="oidc: standards first; fc-v1 / fc-v2: FranceConnect's behaviour for that version "
             "(endpoints under /api/v1 or /api/v2; see the README's table).")] = Profile.oidc,
    accept_delegation: Annotated[bool, typer.Option(
        "--accept-delegation",
        help="Accept logins made by a counter agent for a citizen under a mandate (ID token with RFC 8693's "
             "'act' claim naming the agent and the counter). oidc profile only.")] = False,
    as_for: AsOption = "",
    as_json: JsonFlag = False,
) -> None:
    """Register an app; prints its client_id and client_secret (the secret is shown once, stored hashed)."""
    jwks_json = None
    if jwks:
        try:
            jwks_json = Path(jwks).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read --jwks {jwks}: {exc.strerror}", as_json=as_json, code="invalid_input")
    # FranceConnect's apps authenticate with client_secret_post (FranceConnect offers no Basic).
    default_method = "client_secret_basic" if profile == Profile.oidc else "client_secret_post"
    services = open_services(as_json)
    with Session(services.engine, expire_on_commit=False) as db:
        actor = acting(services, db, as_for, "admin", as_json)
        with refused(as_json, "the app was not registered"):
            registration = create_client(
                db=db, name=name, redirect_uris=redirect_uri, post_logout_redirect_uris=post_logout_redirect_uri or [],
                scope=scope, auth_method=auth_method or default_method, sector=sector, userinfo_signed=userinfo_signed,
                id_token_alg=id_token_alg, require_nonce=not nonce_optional, allow_refresh=refresh_tokens,
                jwks_json=jwks_json, production=services.settings.is_production, profile=profile.value,
                accept_delegation=accept_delegation)
        audit.record(db, actor=actor[0], action="client.created", target=f"client:{registration.client.client_id}")
        db.commit()
        _print_client(client_public(registration.client), as_json, registration.secret)


@app.command("list")
def client_list(as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """List registered apps (an administrator's)."""
    services = open_services(as_json)
    with Session(services.engine) as db:
        acting(services, db, as_for, "admin", as_json)
        clients = [client_public(c) for c in list_clients(db=db)]
    if as_json:
        typer.echo(json.dumps(clients, ensure_ascii=False))
        return
    for body in clients:
        _print_client(body, False)


def _client_change(client_id: str, as_for: str, as_json: bool, action: str,
                   change: Callable[[Session], dict[str, Any]]) -> None:
    services = open_services(as_json)
    with Session(services.engine, expire_on_commit=False) as db:
        actor = acting(services, db, as_for, "admin", as_json)
        with refused(as_json):
            try:
                output = change(db)
            except ClientNotFound:
                fail(f"no app with client_id {client_id}", as_json=as_json, code="not_found")
        audit.record(db, actor=actor[0], action=action, target=f"client:{client_id}")
        db.commit()
    typer.echo(json.dumps(output, ensure_ascii=False) if as_json else "\n".join(f"{k}: {v}" for k, v in output.items()))


@app.command("rotate-secret")
def client_rotate_secret(client_id: ClientId, as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """Give the app a new secret (shown once); the old one stops working at once."""
    _client_change(client_id, as_for, as_json, "client.secret_rotated", lambda db: {"client_id": client_id,
                                                    "client_secret": rotate_secret(db=db, client_id=client_id)})


@app.command("disable")
def client_disable(client_id: ClientId, as_for: AsOption = "", as_json: JsonFlag = False) -> None:
    """Stop the app: no more logins through it, its tokens are revoked."""
    _client_change(client_id, as_for, as_json, "client.disabled",
                   lambda db: client_public(disable_client(db=db, client_id=client_id)))
