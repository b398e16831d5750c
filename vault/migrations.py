"""Alembic glue: the schema belongs to migrations (``vault db upgrade``), never to the app."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import vault
from vault.db import ensure_sqlite_folder


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None) -> bool:  # noqa: ARG001
    """What autogenerate compares: not the job queue's tables (procrastinate's, from migration 0023,
    with no model here)."""
    return not (type_ == "table" and reflected and compare_to is None and (name or "").startswith("procrastinate_"))


def alembic_dir() -> Path:
    """The ``alembic/`` folder: beside the package in a checkout, or in the working directory."""
    for candidate in (Path(vault.__file__).resolve().parent.parent / "alembic", Path.cwd() / "alembic"):
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise FileNotFoundError("alembic/ folder not found: run vault from the project folder (or /app in the image)")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)


@lru_cache(maxsize=1)
def script_heads() -> frozenset[str]:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == script_heads()
