"""``vault citizen``: citizen accounts."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlmodel import Session

from vault.auth.models import CitizenPublic
from vault.cli.common import AsOption, JsonFlag, acting, open_services, read_password, refused
from vault.gdpr import audit

app = typer.Typer(help="Citizen accounts.", no_args_is_help=True)


@app.command("create")
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
    as_for: AsOption = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a citizen account (an administrator's). Without --password-stdin a strong password is
    generated and printed once."""
    services = open_services(as_json)
    password = read_password(password_stdin)
    form = {"email": email, "password": password, "given_name": given_name, "family_name": family_name,
            "birthdate": birthdate, "gender": gender, "birthplace": birthplace, "birthcountry": birthcountry,
            "preferred_username": preferred_username}
    with Session(services.engine, expire_on_commit=False) as db:
        actor = acting(services, db, as_for, "admin", as_json)
        with refused(as_json, "the citizen was not created"):
            citizen = services.accounts.create_citizen(db=db, form=form, verified=verified)
        audit.record(db, actor=actor[0], action="citizen.created",  # the trail names nobody in clear
                     target=f"subject:{services.gdpr.subject(db, citizen.id)}")
        db.commit()
        public = CitizenPublic.of(citizen)
    output = json.loads(public.model_dump_json())
    if not password_stdin:
        output["password"] = password
    if as_json:
        typer.echo(json.dumps(output, ensure_ascii=False))
    else:
        typer.echo(f"created citizen {public.id} <{public.email}>")
        if not password_stdin:
            typer.echo(f"password (shown once): {password}")


@app.command("list")
def citizen_list(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_for: AsOption = "",
    as_json: JsonFlag = False,
) -> None:
    """List citizen accounts, oldest first (the DPO's: names and addresses of everyone; audited)."""
    services = open_services(as_json)
    with Session(services.engine, expire_on_commit=False) as db:
        actor = acting(services, db, as_for, "dpo", as_json)
        citizens = [CitizenPublic.of(c) for c in services.accounts.list_citizens(db=db, limit=limit, offset=offset)]
        audit.record(db, actor=actor[0], action="citizens.listed", details={"count": len(citizens), "offset": offset})
        db.commit()
    if as_json:
        typer.echo(json.dumps([json.loads(c.model_dump_json()) for c in citizens], ensure_ascii=False))
        return
    for c in citizens:
        flags = ("verified" if c.email_verified else "unverified") + (", totp" if c.totp_enabled else "")
        typer.echo(f"{c.id}  {c.email or '(no email)'}  {c.given_name} {c.family_name}  ({flags})")
