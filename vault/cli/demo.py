"""``vault demo``: demonstration data (development only)."""

from __future__ import annotations

import typer
from sqlmodel import Session, select

from vault.auth.models import Citizen
from vault.cli.common import JsonFlag, emit, fail, new_password, open_services, read_settings
from vault.oidc.demo import install_demo_app

app = typer.Typer(help="Demonstration data (development only).", no_args_is_help=True)

DEMO_CITIZEN = {
    "email": "marie.dupont@example.org",
    "given_name": "Marie Claire",
    "family_name": "Dupont",
    "birthdate": "1984-07-31",
    "gender": "female",
    "birthplace": "75056",
    "birthcountry": "99100",
}


@app.command("seed")
def demo_seed(as_json: JsonFlag = False) -> None:
    """Create the demo citizen (or give it a fresh password) and print its credentials. Development only."""
    if read_settings(as_json, check=False).is_production:
        fail("demo data is refused in production", as_json=as_json, code="production")
    services = open_services(as_json)
    settings = services.settings
    password = new_password()
    with Session(services.engine, expire_on_commit=False) as db:
        citizen = db.exec(select(Citizen).where(Citizen.email == DEMO_CITIZEN["email"])).first()
        if citizen is None:
            services.accounts.create_citizen(db=db, form={**DEMO_CITIZEN, "password": password}, verified=True)
        else:
            services.accounts.set_password(citizen=citizen, password=password)
        db.commit()
        install_demo_app(db, issuer=settings.issuer)
        db.commit()
    credentials = {"email": DEMO_CITIZEN["email"], "password": password, "url": f"{settings.issuer}/login",
                   "demo_app": f"{settings.issuer}/demo"}
    emit(credentials, as_json, "\n".join([
        "Demo citizen (development only):",
        f"  email:    {credentials['email']}",
        f"  password: {credentials['password']}",
        f"  log in at {credentials['url']}",
        f"Demo app (plays a city app, OpenID Connect): {credentials['demo_app']}",
    ]))
