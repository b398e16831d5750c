"""Database engine and the unit-of-work session dependency.

The schema belongs to alembic: the app never creates tables by itself (``vault db upgrade``).
"""

from __future__ import annotations

import functools
import os
import select
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine, event, func, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import InterfaceError, InvalidatePoolError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlmodel import Session, create_engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from vault.errors import ServiceUnavailable

T = TypeVar("T")


def utcnow() -> datetime:
    """Aware UTC now; SQLModel's UTCDateTime columns store UTC and give back aware datetimes."""
    return datetime.now(UTC)


def ensure_sqlite_folder(url: str) -> None:
    """SQLite cannot create the folder of its file: make it (the development data dir, 0700), and
    create the file 0600 whatever the umask (SQLite would make it 0644 with the usual umask; its
    journal and WAL files take the database file's mode)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: this is explicit
            os.close(fd)


# Folding a name for a search that ignores accents, case, apostrophes, hyphens and spaces
# ("Hélène" → "helene", "O'Connor" → "oconnor"), the same in Python and in SQL (``fold_expression``).
_ACCENTED = "àáâãäåçèéêëìíîïñòóôõöøùúûüýÿÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŸ"
_PLAIN = "aaaaaaceeeeiiiinoooooouuuuyyaaaaaaceeeeiiiinoooooouuuuyy"
_DROPPED = "'’- "
_FOLD_FROM, _FOLD_TO = _ACCENTED + _DROPPED, _PLAIN
assert len(_ACCENTED) == len(_PLAIN)  # a typo here would shift every letter after it


def _translate(text: str | None, source: str, target: str) -> str | None:
    """PostgreSQL's translate(): each character of ``source`` becomes the one at its place in
    ``target``, or is dropped when ``target`` is shorter."""
    if text is None:
        return None
    table = {ord(char): (target[i] if i < len(target) else None) for i, char in enumerate(source)}
    return text.translate(table)


def fold(text: str) -> str:
    """``text`` as a name search compares it: no accents, lower case, no apostrophe, hyphen or space."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return (_translate(plain, _FOLD_FROM, _FOLD_TO) or "").lower()


def fold_expression(column: Any) -> Any:
    """The SQL of ``fold(column)`` on PostgreSQL and SQLite (translate, then lower)."""
    return func.lower(func.translate(column, _FOLD_FROM, _FOLD_TO))


def make_engine(url: str | URL, *, pooled: bool = True) -> Engine:
    """The service's engine; ``pooled=False``: one connection per use, closed after it (for a short
    transaction that must never wait for the request's pool, ``AccountService.begin_attempt``)."""
    url = url if isinstance(url, URL) else make_url(url)
    ensure_sqlite_folder(url.render_as_string(hide_password=False))
    pool: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if url.drivername.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # PostgreSQL's translate(text, from, to), which SQLite lacks (folding names: fold_expression).
            dbapi_conn.create_function("translate", 3, _translate, deterministic=True)

        return engine
    if not pooled:
        return create_engine(url, **pool)
    engine = create_engine(url, pool_size=10, max_overflow=10)
    _check_liveness_on_checkout(engine)
    return engine


# A pooled connection idle longer than this is pinged (a round trip) before use: a firewall or a
# load balancer may have dropped it without a word. One used more recently is checked without a
# round trip (``_check_liveness_on_checkout``).
IDLE_PING_SECONDS = 30.0


def _check_liveness_on_checkout(engine: Engine) -> None:
    """Make sure a pooled PostgreSQL connection is alive when the pool hands it out, without
    SQLAlchemy's ``pool_pre_ping``, which costs a round trip per checkout (a ``SELECT 1``): one
    round trip in seven of the token endpoint, before decision record 0014 took it to three.

    A connection idle in the pool has nothing to read: PostgreSQL sends nothing to a backend
    waiting for a command. If its socket is readable, the server has closed it (a restart, a
    failover, ``pg_terminate_backend``, ``idle_session_timeout``: PostgreSQL sends an error then
    closes) and every connection opened before is presumed dead too: the pool replaces them all,
    as a failed pre-ping would. A connection idle more than ``IDLE_PING_SECONDS`` is pinged as
    ``pool_pre_ping`` would (a silent network drop leaves nothing to read). A fresh connection is
    used as it is. Decision record 0013.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info["vault_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.pop("vault_idle_since", None)
        if idle_since is None:
            return  # a fresh connection (the info is cleared when a connection is replaced)
        if _closed_by_server(dbapi_conn):
            raise InvalidatePoolError("the database closed this pooled connection")
        if time.monotonic() - idle_since > IDLE_PING_SECONDS:
            try:
                dialect.do_ping(dbapi_conn)
            except dialect.loaded_dbapi.Error as exc:
                raise InvalidatePoolError(f"ping failed: {type(exc).__name__}") from None


def _closed_by_server(dbapi_conn: Any) -> bool:
    """Whether psycopg's connection is closed, broken, or has something to read while idle (the
    server's goodbye, or the end of the stream): a zero-timeout ``select``, no round trip."""
    if dbapi_conn.closed or getattr(dbapi_conn, "broken", False):
        return True
    try:
        readable, _, _ = select.select([dbapi_conn.pgconn.socket], [], [], 0)
    except Exception:  # noqa: BLE001  (psycopg's "connection lost", OSError, a closed fd: all mean the same)
        return True  # no socket to look at: not a connection to hand out
    return bool(readable)


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


async def request_db(request: Request) -> AsyncIterator[Session]:
    """Unit of work for one request: commit once when the route returns, roll back on error.

    Services never commit; used with ``Depends(request_db, scope="function")`` so the commit
    happens before the response is sent (a failed commit is an error, not a silent loss).

    The session is made on the event loop (that does no I/O: it connects at its first statement);
    the commit or rollback and the return of its connection to the pool run in one worker thread,
    with a limiter of their own as FastAPI gives a sync dependency's exit (routes holding every
    thread of the pool must not keep a connection from coming back), and shielded from
    cancellation. A sync generator would cost a thread hop more per request (its entry).
    """
    db = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield db
    except (OperationalError, InterfaceError) as exc:
        await _in_thread(_end, db, commit=False)
        raise DatabaseUnavailable(type(exc).__name__) from None
    except BaseException:
        await _in_thread(_end, db, commit=False)
        raise
    await _in_thread(_end, db, commit=True)


def unit_of_work(engine: Engine, work: Callable[[Session], T]) -> T:
    """``work`` with a unit of work of its own, committed when it returns (rolled back when it raises),
    with the same answers to a database outage as ``request_db``."""
    with Session(engine, expire_on_commit=False) as db:
        try:
            result = work(db)
            db.commit()
        except (OperationalError, InterfaceError) as exc:
            db.rollback()
            raise DatabaseUnavailable(type(exc).__name__) from None
        except BaseException:
            db.rollback()
            raise
    return result


async def in_unit_of_work(request: Request, work: Callable[[Session], T]) -> T:
    """A route's whole database work, its commit included, in one worker thread: the endpoints that
    apps call most (token, userinfo, introspection, revocation) save the thread hops of a ``Db``
    dependency (its exit) and of a sync route. Their statements each stand alone
    (``statements_engine``); what they write is written before the response is sent."""
    return await run_in_threadpool(unit_of_work, request.app.state.statements_engine, work)


def statements_engine(engine: Engine) -> Engine:
    """``engine`` for work made of statements that are each atomic, ordered so that a failure
    between two of them leaves nothing inconsistent (the endpoints apps call: a code is consumed,
    then its token written; decision record 0014). On PostgreSQL they run without a transaction
    around them (psycopg in autocommit), which saves a ``BEGIN`` and a ``COMMIT`` round trip per
    request; SQLite, in-process, keeps its transactions. Same pool as ``engine``."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def _in_thread(function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), limiter=anyio.CapacityLimiter(1))


def _end(db: Session, *, commit: bool) -> None:
    """Commit (or roll back) the request's transaction and give its connection back."""
    with db:  # closes it
        if not commit:
            db.rollback()
            return
        try:
            db.commit()
        except (OperationalError, InterfaceError) as exc:
            db.rollback()
            raise DatabaseUnavailable(type(exc).__name__) from None
        except BaseException:
            db.rollback()
            raise
