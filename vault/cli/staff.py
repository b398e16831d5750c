"""``vault staff``: staff accounts (DPO, administrators, counter agents): the administrators' (``--as``
names the administrator who acts; any other role is refused)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlmodel import Session

from vault.cli.common import AsOption, JsonFlag, acting, open_services, read_password, refused
from vault.gdpr import audit

app = typer.Typer(help="Staff accounts (DPO, administrators, counter agents).", no_args_is_help=True)


@app.command("create")
def staff_create(
    email: Annotated[str, typer.Option(help="The staff member's email.")],
    role: Annotated[str, typer.Option(help="dpo, admin or agent (a counter agent).")],
    name: Annotated[str, typer.Option(help="Full name, shown in the register and the citizens' journal.")] = "",
    service: Annotated[str, typer.Option(help="An agent's counter service (mandates are granted to it), "
                                              "e.g. \"Guichet unique de l'Hôtel de Ville\". Required for an agent.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    as_for: AsOption = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a staff account. TOTP is required: its secret and otpauth URI are printed once (scan it now)."""
    services = open_services(as_json)
    password = read_password(password_stdin)
    with Session(services.engine, expire_on_commit=False) as db:
        # Staff accounts are the administrators'; the first administrator is the operator's to make.
        actor = acting(services, db, as_for, "admin", as_json, first_admin=role == "admin")
        with refused(as_json, "the staff account was not created"):
            staff, secret, uri = services.staff.create(db, email=email, name=name or email, role=role,
                                                       password=password, service=service)
        audit.record(db, actor=actor[0], action="staff.created", target=f"staff:{staff.id}",
                     details={"role": role, **({"service": staff.service} if staff.service else {})})
        db.commit()
    output = {"id": str(staff.id), "email": staff.email, "role": staff.role, "service": staff.service or "",
              "totp_secret": secret, "otpauth_uri": uri}
    if not password_stdin:
        output["password"] = password
    if as_json:
        typer.echo(json.dumps(output))
    else:
        for key, value in output.items():
            typer.echo(f"{key}: {value}")
