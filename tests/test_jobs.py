"""The background jobs: on PostgreSQL `vault worker` (procrastinate) sends the mail the app queued,
runs the periodic retention, finishes an erasure left to a job once even when the worker running it
is killed (SIGKILL) and another takes over, retries a job that fails and shows it; SIGTERM stops it
cleanly. In development (VAULT_JOBS=app) the same jobs run in a thread of the app."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import create_engine, text, update
from sqlmodel import Session, select

from tests.factories import citizen_browser, make_citizen, make_document, make_staff, staff_browser
from tests.fault_proxy import FaultProxy
from tests.services import S3Service
from tests.support import Browser, Outbox
from tests.test_mail import SmtpServer
from vault.app import create_app
from vault.auth.models import Citizen
from vault.db import utcnow
from vault.gdpr.models import AuditEntry, DataRequest, Tombstone
from vault.gdpr.service import Staff
from vault.jobs.queue import failed_jobs, queue_depth
from vault.jobs.work import retention
from vault.migrations import alembic_config, upgrade
from vault.settings import ConfigError, Settings

QUEUE_TABLES = ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs", "procrastinate_workers")


def wait_for(condition: Callable[[], Any], *, timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


@pytest.fixture
def pg(database_url: str, engine) -> Any:
    """The queue's tests: PostgreSQL only (on SQLite there is no queue), its tables emptied."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the job queue runs on PostgreSQL")
    with engine.begin() as connection:
        for table in QUEUE_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608  (procrastinate's own tables)
    return engine


class Workers:
    """`vault worker` processes, as an operator runs them."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"worker-{len(self.running)}.log", "wb")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen([sys.executable, "-m", "vault.cli", "worker"], env={**self.env, **extra},
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.running.append(process)
        return process

    def log(self, number: int) -> str:
        return (self.logs / f"worker-{number}.log").read_text(errors="replace")

    def vault(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "vault.cli", *args], env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        for number, process in enumerate(self.running):
            if process.poll() is None:
                process.kill()
                process.wait()
            print(f"---- worker {number}:\n{self.log(number)[-4000:]}")  # noqa: T201  (shown when the test failed)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {**os.environ, "VAULT_DATABASE_URL": settings.effective_database_url, "VAULT_DATA_DIR": str(settings.data_dir),
           "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1", "VAULT_JOBS": "worker",
           "VAULT_JOBS_STALLED_SECONDS": "3"}
    for name in ("VAULT_SMTP_URL", "VAULT_RETENTION_SCHEDULE"):
        env.pop(name, None)
    return {**env, **extra}


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(worker_env(settings), tmp_path)
    yield running
    running.stop_all()


def jobs_in(engine, status: str) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return [(r[0], r[1]) for r in connection.execute(text(
            "SELECT task_name, attempts FROM procrastinate_jobs WHERE status = :status"), {"status": status})]


# ---- mail --------------------------------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    from tests.services import free_port

    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


def test_the_worker_sends_the_mail_the_app_queued_and_stops_on_sigterm(settings, pg, workers, smtp) -> None:
    app = create_app(settings.model_copy(update={"smtp_url": SecretStr(smtp.url)}), engine=pg)
    with Browser(app) as browser:
        assert browser.register("queued@example.org").status_code == 200
    # The commit deferred a mail job (by the queue's thread, just after); nothing left during the request.
    assert smtp.capture.messages == []
    wait_for(lambda: ("send_mail", "todo") in queue_depth(pg), what="the mail job in the queue")

    worker = workers.start(VAULT_SMTP_URL=smtp.url)
    wait_for(lambda: smtp.capture.messages, what="the mail at the SMTP server")
    [message] = smtp.capture.messages
    assert message["To"] == "queued@example.org" and "/verify-email?token=" in message.get_body(("plain",)).get_content()

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0  # a clean stop
    with pg.connect() as connection:  # it said goodbye: no worker left registered
        assert connection.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar() == 0
    assert len(smtp.capture.messages) == 1
    assert failed_jobs(pg) == {}


def test_a_request_that_queues_mail_does_not_wait_for_the_queue(settings, pg) -> None:
    """The answer of a request that queued mail never waits for the job queue (else a password reset
    for an existing account would answer later than for an unknown one, and a burst of them would
    hold the pool's connections): here the queue's table is locked by another transaction, the
    registration answers anyway, and its mail job is queued once the lock is gone."""
    import threading

    app = create_app(settings, engine=pg)
    blocker = pg.connect()
    locked = blocker.begin()
    blocker.execute(text("LOCK TABLE procrastinate_jobs IN ACCESS EXCLUSIVE MODE"))
    release = threading.Timer(30, locked.rollback)  # were the request to wait, it would wait this long
    release.start()
    try:
        with Browser(app) as browser:
            started = time.monotonic()
            assert browser.register("pressee@example.org").status_code == 200
            waited = time.monotonic() - started
            assert waited < 20, f"the registration waited {waited:.0f} s for the queue's lock"
            release.cancel()
            locked.rollback()
            wait_for(lambda: ("send_mail", "todo") in queue_depth(pg), what="the mail job, once the lock is gone")
    finally:
        release.cancel()
        if locked.is_active:
            locked.rollback()
        blocker.close()


# ---- erasure left to a job: SIGKILL mid-job, then another worker ---------------------------------------------


@pytest.fixture
def proxy(s3: S3Service) -> Iterator[FaultProxy]:
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    yield proxy
    proxy.close()


def staged_erasure(vault_app, engine, *, documents: int = 2) -> str:
    """A citizen with documents, erased from the register by the DPO: the erasure left to a job."""
    citizen = make_citizen(vault_app, email=f"large-{os.urandom(3).hex()}@example.org")
    with citizen_browser(vault_app, citizen) as own:
        for n in range(documents):
            make_document(own, title=f"Pièce {n}")
    citizen_id = citizen.id
    with Session(engine) as db:
        item = vault_app.state.services.gdpr.open_request(db, kind="erasure", citizen_id=citizen_id, channel="counter",
                                                          by=Staff(actor="staff:test", label="test"),
                                                          identity_check="CNI")
        db.commit()
        path = f"/dpo/requests/{item.id}"
    staff = make_staff(vault_app, email=f"dpo-{os.urandom(3).hex()}@ville.example.fr", role="dpo")
    with staff_browser(vault_app, staff) as dpo:
        confirm = dpo.get(f"{path}/erase")
        token = re.search(r'name="confirmation" value="([0-9a-f]+)"', confirm.text)
        assert token, confirm.text[:500]
        done = dpo.submit(f"{path}/erase", {"reason": "demande de la personne", "irreversible": "yes",
                                            "confirmation": token.group(1)})
        assert done.status_code == 303
        page = dpo.get(path).text
        assert "en cours" in page and "arrière-plan" in page  # the DPO sees it pending
        assert "Terminer l'effacement" not in page  # the job finishes it: nothing to do by hand
        by_hand = dpo.get(f"{path}/erase")  # nor can the objects be deleted inside a request meanwhile
        assert by_hand.status_code == 400 and "Cet effacement est en cours." in by_hand.text
    with Session(engine) as db:
        assert db.get(Citizen, citizen_id) is None  # the person is gone already
        assert db.exec(select(DataRequest).where(DataRequest.id == item.id)).one().status == "in_progress"
    return path


def erasure_state(engine) -> tuple[int, int, list[str]]:
    """(tombstones completed, "erasure.completed" audit entries, request statuses)."""
    with Session(engine) as db:
        completed = len([t for t in db.exec(select(Tombstone)) if t.completed_at is not None])
        entries = len(db.exec(select(AuditEntry).where(AuditEntry.action == "erasure.completed")).all())
        statuses = [r.status for r in db.exec(select(DataRequest))]
    return completed, entries, statuses


@pytest.fixture
def large_erasures(vault_settings, pg, proxy):
    """The app (the DPO's pages) on the store directly; the workers reach it through the proxy."""
    settings = vault_settings.model_copy(update={"erasure_inline_objects": 0})
    return create_app(settings, engine=pg), {
        "VAULT_STORAGE_BACKEND": "s3", "VAULT_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "VAULT_S3_BUCKET": settings.s3_bucket, "VAULT_S3_REGION": settings.s3_region,
        "VAULT_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "VAULT_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
        "VAULT_ANTIVIRUS": "clamd", "VAULT_CLAMD_ADDRESS": settings.clamd_address,
        "VAULT_S3_READ_TIMEOUT_SECONDS": "2", "VAULT_S3_CONNECT_TIMEOUT_SECONDS": "2"}


def test_a_worker_killed_mid_erasure_is_replaced_and_the_erasure_happens_once(large_erasures, pg, proxy, workers,
                                                                               settings) -> None:
    app, store_env = large_erasures
    path = staged_erasure(app, pg)
    outbox = Outbox(settings.outbox_dir)

    proxy.stalled.set()  # the store takes the deletions and answers nothing: the job is stuck in them
    first = workers.start(**store_env)
    wait_for(lambda: ("finish_erasures", 0) in jobs_in(pg, "doing"), what="the erasure job running")
    time.sleep(1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert erasure_state(pg)[0] == 0  # not finished: the tombstone waits (its lock went with the connection)
    assert ("finish_erasures", 0) in jobs_in(pg, "doing")  # still marked running, by a dead worker

    proxy.stalled.clear()
    workers.start(**store_env)
    wait_for(lambda: erasure_state(pg)[0] == 1, what="the erasure finished by the second worker")
    # The dead worker's job went back to the queue and ran again; the work was done once.
    wait_for(lambda: not jobs_in(pg, "doing"), what="no job left running", timeout=30)
    completed, entries, statuses = erasure_state(pg)
    assert (completed, entries, statuses) == (1, 1, ["done"])
    assert "job of a stopped worker put back in the queue" in workers.log(1)
    wait_for(lambda: [m for m in outbox.all() if "effac" in m.subject.lower()], what="the certificate mailed")
    time.sleep(2)  # a second delivery, if there were one, would be in by now
    certificates = [m for m in outbox.all() if "effac" in m.subject.lower()]
    assert len(certificates) == 1
    with staff_browser(app, make_staff(app, email="dpo2@ville.example.fr", role="dpo")) as dpo:
        page = dpo.get(path).text
    assert "Certificat d'effacement" in page and "en cours" not in page  # then done


def test_a_failing_job_is_retried_shown_and_done_once_the_store_is_back(large_erasures, pg, proxy, workers) -> None:
    app, store_env = large_erasures
    staged_erasure(app, pg)
    proxy.cut()  # the store is down: the job fails
    workers.start(**store_env)

    def retrying() -> Any:
        status = workers.vault("worker", "--status", "--json")
        return status if status["retrying"].get("finish_erasures", {}).get("attempts", 0) >= 1 else None

    status = wait_for(retrying, what="the erasure job failed and waiting for a retry")
    assert any(row["queue"] == "finish_erasures" and row["state"] == "todo" for row in status["queues"])
    assert erasure_state(pg)[0] == 0

    proxy.restore()
    wait_for(lambda: erasure_state(pg)[0] == 1, what="the erasure finished after a retry", timeout=90)
    assert erasure_state(pg)[1:] == (1, ["done"])
    assert workers.vault("worker", "--status", "--json")["failed"] == {}


# ---- the periodic retention ----------------------------------------------------------------------------------


def test_the_worker_runs_the_retention_on_its_schedule(settings, pg, workers, app) -> None:
    citizen = make_citizen(app, email="dormant@example.org")
    with Session(pg) as db:  # unused for more than VAULT_RETENTION_INACTIVE_YEARS (3)
        long_ago = utcnow() - timedelta(days=365 * 3 + 10)
        db.exec(update(Citizen).where(Citizen.id == citizen.id).values(created_at=long_ago, last_login_at=long_ago))
        db.commit()
    workers.start(VAULT_RETENTION_SCHEDULE="* * * * * */2")  # every 2 seconds (cron with seconds)

    def noticed() -> bool:
        with Session(pg) as db:
            found = db.get(Citizen, citizen.id)
            return found is not None and found.retention_notice_at is not None
    wait_for(noticed, what="the retention's notice")
    outbox = Outbox(settings.outbox_dir)
    wait_for(lambda: outbox.to("dormant@example.org"), what="the notice mailed")
    time.sleep(4)  # two more runs: nothing more
    assert len(outbox.to("dormant@example.org")) == 1


def test_the_retention_deletes_jobs_failed_long_ago_and_keeps_the_recent_ones(settings, pg, app) -> None:
    with pg.begin() as connection:  # two jobs failed for good (their events date the failure), one waiting
        for name, days_ago in (("send_mail", settings.jobs_failed_retention_days + 1), ("finish_erasures", 2)):
            job_id = connection.execute(text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                "VALUES (:name, :name, '{}', 'todo') RETURNING id"), {"name": name}).scalar_one()
            for status in ("doing", "failed"):  # as a worker takes it, then gives up (its events record both)
                connection.execute(text("UPDATE procrastinate_jobs SET status = :status WHERE id = :id"),
                                   {"status": status, "id": job_id})
            connection.execute(text("UPDATE procrastinate_events SET at = now() - make_interval(days => :days) "
                                    "WHERE job_id = :id"), {"days": days_ago, "id": job_id})
        connection.execute(text("INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                                "VALUES ('validity_alerts', 'validity_alerts', '{}', 'todo')"))
    assert failed_jobs(pg) == {"send_mail": 1, "finish_erasures": 1}
    report = retention(app.state.services)
    assert report.housekeeping["failed_jobs"] == 1
    assert failed_jobs(pg) == {"finish_erasures": 1}  # failed 2 days ago: still shown to the operators
    assert jobs_in(pg, "todo") == [("validity_alerts", 0)]  # a waiting job is never touched


# ---- development: the same jobs in a thread of the app --------------------------------------------------------


def test_in_development_the_app_runs_the_jobs_itself(settings, engine, data_dir) -> None:
    app = create_app(settings.model_copy(update={"jobs": "app", "erasure_inline_objects": 0}), engine=engine)
    outbox = Outbox(settings.outbox_dir)  # the folder only: nothing here delivers
    with Browser(app) as browser:
        assert browser.register("dev@example.org").status_code == 200
        wait_for(lambda: outbox.to("dev@example.org"), timeout=20, what="the mail written by the app's thread")

        citizen = make_citizen(app, email="big@example.org")
        with citizen_browser(app, citizen) as own:
            make_document(own)
        with Session(engine) as db:
            item = app.state.services.gdpr.open_request(db, kind="erasure", citizen_id=citizen.id, channel="counter",
                                                        by=Staff(actor="staff:test", label="test"), identity_check="CNI")
            db.commit()
            path = f"/dpo/requests/{item.id}"
        with staff_browser(app, make_staff(app, email="dpo-dev@ville.example.fr", role="dpo")) as dpo:
            token = re.search(r'name="confirmation" value="([0-9a-f]+)"', dpo.get(f"{path}/erase").text)
            assert token
            assert dpo.submit(f"{path}/erase", {"reason": "demande", "irreversible": "yes",
                                                "confirmation": token.group(1)}).status_code == 303
            wait_for(lambda: "Certificat d'effacement" in dpo.get(path).text, timeout=20,
                     what="the erasure finished by the app's thread")
        wait_for(lambda: outbox.to("big@example.org"), timeout=20, what="the certificate mailed")
    assert erasure_state(engine) == (1, 1, ["done"])


# ---- settings and the schema -----------------------------------------------------------------------------------


def test_jobs_settings_say_what_is_wrong(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs"):
        Settings(data_dir=data_dir, jobs="cron")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VAULT_RETENTION_SCHEDULE"):
        Settings(data_dir=data_dir, retention_schedule="daily")
    keyring = tmp_path / "keyring.json"
    keyring.write_text("{}")
    keyring.chmod(0o600)
    production = {"env": "production", "issuer": "https://vault.example.fr", "data_dir": data_dir,
                  "database_url": "postgresql+psycopg://vault@db/vault", "storage_backend": "s3", "s3_bucket": "b",
                  "antivirus": "clamd", "clamd_address": "tcp://clamd:3310", "keyring_file": keyring,
                  "smtp_url": "smtp://mail:25"}
    with pytest.raises(ConfigError, match="VAULT_JOBS must be worker in production on PostgreSQL"):
        Settings(**production).check()  # type: ignore[arg-type]
    assert Settings(**production, jobs="worker").check() == []  # type: ignore[arg-type]
    # The old name still works, with a warning to rename it.
    old = Settings(**production, mail_sender="worker")  # type: ignore[arg-type]
    assert old.jobs == "worker" and any("VAULT_MAIL_SENDER" in w for w in old.check())


def test_the_queue_tables_come_and_go_with_migration_0023(postgres) -> None:
    url = postgres.create_database(f"vault_jobs_{os.urandom(3).hex()}")
    engine = create_engine(url)

    def tables() -> set[str]:
        with engine.connect() as connection:
            return {r[0] for r in connection.execute(text(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'procrastinate%'"))}
    try:
        upgrade(url)
        assert tables() == set(QUEUE_TABLES)
        command.downgrade(alembic_config(url), "0022")
        assert tables() == set()
        with engine.connect() as connection:
            assert connection.execute(text(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'")).scalar() == 0
        upgrade(url)
        assert tables() == set(QUEUE_TABLES)
    finally:
        engine.dispose()


# ---- each job does its work once, however many run it at once ----------------------------------------------


def test_validity_alerts_run_by_two_workers_at_once_mail_once(app, engine, settings) -> None:
    """Two runs of the validity alerts at the same moment (two workers, or a job run again while the
    first still runs): each alert is mailed once."""
    import threading

    from vault.jobs.work import validity_alerts

    citizen = make_citizen(app, email="deux@example.org")
    with citizen_browser(app, citizen) as own:
        for n in range(5):
            make_document(own, title=f"Passeport {n}", valid_until=(settings.today() + timedelta(days=5)).isoformat())
    results: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(validity_alerts(app.state.services))
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["validity_alerts"] for r in results) == 5
    assert len(Outbox(settings.outbox_dir, engine).to("deux@example.org")) == 5
    assert validity_alerts(app.state.services) == {"validity_alerts": 0}
