"""PostgreSQL going away (before a request, or in the middle of one) behind a running app: 503 with
a clear message, never a 500 nor a hang; when it comes back, the same app serves again without a
restart (its pooled connections, all dead, are replaced)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import make_settings
from tests.factories import make_citizen
from tests.fault_proxy import FaultProxy
from tests.services import PostgresService
from tests.support import Browser
from vault.app import create_app
from vault.db import make_engine
from vault.migrations import upgrade


@pytest.fixture
def proxied_app(postgres: PostgresService, tmp_path: Path) -> Iterator[tuple[object, FaultProxy]]:
    url = postgres.create_database(f"vault_outage_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    proxy = FaultProxy(("127.0.0.1", postgres.port))
    engine = make_engine(url.replace(f":{postgres.port}/", f":{proxy.port}/"))
    app = create_app(make_settings(tmp_path / "var", engine.url.render_as_string(hide_password=False)), engine=engine)
    try:
        yield app, proxy
    finally:
        proxy.close()
        engine.dispose()


def test_postgresql_down_is_503_and_the_app_recovers_without_restart(proxied_app) -> None:
    app, proxy = proxied_app
    citizen = make_citizen(app)
    with Browser(app) as browser:
        assert browser.login(citizen.email).status_code == 303
        assert browser.get("/api/v1/documents").status_code == 200

        proxy.cut()  # PostgreSQL stops: every connection reset, new ones refused
        answer = browser.get("/api/v1/documents")
        assert answer.status_code == 503
        assert answer.json() == {"error": "unavailable", "detail": "The database does not answer."}
        page = browser.get("/documents")
        assert page.status_code == 503 and "momentanément indisponible" in page.text
        ready = browser.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"

        proxy.restore()  # back: the same process serves again
        assert browser.get("/readyz").status_code == 200
        assert browser.get("/api/v1/documents").status_code == 200


def test_postgresql_dying_in_the_middle_of_a_login_is_503_then_logins_work(proxied_app) -> None:
    app, proxy = proxied_app
    citizen = make_citizen(app)
    with Browser(app) as browser:
        token = browser.form_token("/login")
        proxy.cut_after(300)  # a few answers from PostgreSQL, then it dies within the request
        try:
            answer = browser.post("/login", data={"email": citizen.email, "password": citizen.password,
                                                  "csrf_token": token})
        finally:
            proxy.restore()
        assert answer.status_code == 503 and "momentanément indisponible" in answer.text
        assert browser.login(citizen.email).status_code == 303
        assert browser.get("/api/v1/documents").status_code == 200


def _terminate_backends(postgres: PostgresService, database: str) -> int:
    """What a PostgreSQL restart or ``pg_terminate_backend`` does to the app's pooled connections."""
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres",
                         autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                              (database,)).fetchone()
        for _ in range(100):  # wait until they are really gone
            if admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone() == (0,):
                break
            time.sleep(0.05)
    return int(ended[0]) if ended else 0


@pytest.fixture
def pg_app(postgres: PostgresService, tmp_path: Path) -> Iterator[tuple[object, str]]:
    database = f"vault_pool_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(database)
    upgrade(url)
    engine = make_engine(url)
    app = create_app(make_settings(tmp_path / "var", url), engine=engine)
    try:
        yield app, database
    finally:
        engine.dispose()


def test_pooled_connections_the_server_closed_are_replaced_without_an_error(pg_app, postgres) -> None:
    app, database = pg_app
    citizen = make_citizen(app)
    with Browser(app) as browser:
        assert browser.login(citizen.email).status_code == 303
        for _ in range(3):
            assert browser.get("/api/v1/documents").status_code == 200
        assert _terminate_backends(postgres, database) >= 1  # the pool's connections, idle, now dead
        # Seen dead when taken from the pool (the server's goodbye is waiting on the socket): replaced.
        for _ in range(3):
            assert browser.get("/api/v1/documents").status_code == 200


def test_a_connection_used_recently_costs_no_ping_one_idle_long_is_pinged(pg_app, monkeypatch) -> None:
    app, _database = pg_app
    engine = app.state.engine
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    citizen = make_citizen(app)
    with Browser(app) as browser:
        assert browser.login(citizen.email).status_code == 303
        for _ in range(5):
            assert browser.get("/api/v1/documents").status_code == 200
        assert pings == []  # a round trip per request saved
        monkeypatch.setattr("vault.db.IDLE_PING_SECONDS", 0.0)
        assert browser.get("/api/v1/documents").status_code == 200
        assert pings  # idle "too long": checked by a round trip before use
