"""Database engine and the unit-of-work session dependency.

The schema belongs to alembic: the app never creates tables by itself (``vault db upgrade``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine
from starlette.requests import Request

from vault.errors import ServiceUnavailable


def utcnow() -> datetime:
    """Aware UTC now; SQLModel's UTCDateTime columns store UTC and give back aware datetimes."""
    return datetime.now(UTC)


def ensure_sqlite_folder(url: str) -> None:
    """SQLite cannot create the folder of its file: make it (the development data dir)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    ensure_sqlite_folder(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def ping(engine: Engine) -> None:
    """Raise DatabaseUnavailable unless the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(type(exc).__name__) from None


class DatabaseUnavailable(ServiceUnavailable):
    """The database does not answer."""

    log_event = "database unavailable"

    def describe(self, *, reading: bool) -> tuple[str, str]:
        return "The database does not answer.", super().describe(reading=reading)[1]


def request_db(request: Request) -> Iterator[Session]:
    """Unit of work for one request: commit once when the route returns, roll back on error.

    Services never commit; used with ``Depends(request_db, scope="function")`` so the commit
    happens before the response is sent (a failed commit is an error, not a silent loss).
    """
    with Session(request.app.state.engine, expire_on_commit=False) as db:
        try:
            yield db
            db.commit()
        except (OperationalError, InterfaceError) as exc:
            db.rollback()
            raise DatabaseUnavailable(type(exc).__name__) from None
        except BaseException:
            db.rollback()
            raise
