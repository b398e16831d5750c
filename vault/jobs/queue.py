"""The job queue on PostgreSQL: procrastinate (its tables come from migration 0023).

Each job of ``vault.jobs.work`` is a procrastinate task on a queue of its own name (``send_mail``,
``finish_erasures``, ``validity_alerts``, ``retention``), periodic on its schedule. Retention has a
``lock`` (one run at a time over every worker); the others are safe in several workers at once.
A task that raises is retried (7 s, 9 s, 13 s… six attempts), then left ``failed`` in
``procrastinate_jobs`` (``vault worker --status``); its periodic pass takes the work up again.

A worker sends a heartbeat every quarter of ``VAULT_JOBS_STALLED_SECONDS``; every worker looks, as
often, for jobs still ``doing`` in a worker silent for longer (killed, its machine gone) and puts
them back in the queue, where another worker (or the same, restarted) runs them again. SIGTERM (or
Ctrl-C) stops a worker after its running jobs end.

``queue_depth`` and ``failed_jobs`` read the job table for metrics; on SQLite they find nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import procrastinate
from sqlalchemy import Engine, make_url, text

from vault.jobs.work import WORK, schedules
from vault.services import Services

logger = logging.getLogger(__name__)

# Jobs one worker runs at once (each in a thread: they wait on the database, SMTP and the store).
CONCURRENCY = 4
RETRY = procrastinate.RetryStrategy(max_attempts=6, wait=5, exponential_wait=2)
# A periodic tick missed by this much (every worker stopped) is still deferred when one starts: the
# daily retention is not skipped because the workers were down at its hour. Each tick is deferred
# once, whatever the number of workers.
MAX_DELAY_SECONDS = 26 * 3600


def conninfo(database_url: str) -> str:
    """The libpq URI of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class JobQueue:
    """procrastinate's app for one process's services: deferring (web processes) and the worker."""

    def __init__(self, services: Services, *, for_worker: bool) -> None:
        self.services = services
        settings = services.settings
        if not settings.on_postgresql:
            raise ValueError("the job queue runs on PostgreSQL (on SQLite the jobs run in-process)")
        url = conninfo(settings.effective_database_url)
        connector: procrastinate.BaseConnector = (
            procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=CONCURRENCY + 2) if for_worker
            else procrastinate.SyncPsycopgConnector(conninfo=url, min_size=0, max_size=2))
        self.app = procrastinate.App(connector=connector, periodic_defaults={"max_delay": MAX_DELAY_SECONDS})
        self.stalled_seconds = settings.jobs_stalled_seconds
        for name, cron in schedules(settings).items():
            # Retention alone is serialised (two runs at once would both mail a notice); the others are
            # safe in several workers at once, and a worker that died holds none of them back.
            lock = name if name == "retention" else None
            task = self.app.task(name=name, queue=name, lock=lock, retry=RETRY)(self._runner(name))
            self.app.periodic(cron=cron, periodic_id=name)(task)
        self._opened = False
        self._opening = threading.Lock()
        self._wanted: set[str] = set()  # jobs to defer, noted by commits (defer_soon)
        self._wanted_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._deferrer: threading.Thread | None = None

    def _runner(self, name: str) -> Callable[..., None]:
        work = WORK[name]

        def run(timestamp: int | None = None) -> None:  # noqa: ARG001  (periodic deferrals pass their tick)
            result = work(self.services)
            logger.info("job done", extra={"job": name, "result": result})
        run.__name__ = run.__qualname__ = name
        return run

    # ---- deferring (web processes): after the commit that needs the job ---------------------------------

    def defer_soon(self, name: str) -> None:
        """What a commit calls: note job ``name`` and return at once; a thread of this queue defers it
        (``defer``). A commit must not wait for the queue: a request that queued mail would take longer
        than one that did not (a password reset would tell whether an account exists), and a burst of
        them would each hold a pooled connection while asking the pool for another."""
        with self._wanted_lock:
            if self._closing:
                return
            self._wanted.add(name)
            if self._deferrer is None:
                self._deferrer = threading.Thread(target=self._defer_loop, name="job-deferrer", daemon=True)
                self._deferrer.start()
        self._wake.set()

    def _defer_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._wanted_lock:
                names, self._wanted = self._wanted, set()
                closing = self._closing
            for name in sorted(names):
                self.defer(name)
            if closing:
                return

    def defer(self, name: str) -> None:
        """Queue job ``name`` now, unless one already waits to start: called after the commit, so a
        job that has not started yet will see this commit's work (a burst of commits defers one job,
        not one each). Never raises: a deferral lost here (the database away) is made up by the job's
        periodic pass, since the work is staged in the database.

        Not procrastinate's ``queueing_lock``: a job holding one cannot be put back in the queue (to
        retry it after a failure, or after its worker died) while another with the same lock waits."""
        try:
            with self.services.engine.connect() as connection:
                if connection.execute(text(
                        "SELECT 1 FROM procrastinate_jobs WHERE task_name = :name AND status = 'todo' "
                        "AND (scheduled_at IS NULL OR scheduled_at <= now()) LIMIT 1"), {"name": name}).first():
                    return
            with self._opening:
                if not self._opened:
                    self.app.open()
                    self._opened = True
            self.app.configure_task(name).defer()
        except Exception as exc:  # noqa: BLE001  (the request has committed: its work waits for the periodic pass)
            logger.warning("job not deferred; its periodic pass will run it", extra={"job": name,
                                                                                   "error": type(exc).__name__})

    def close(self) -> None:
        """The jobs noted and not yet deferred are deferred first (at most a few seconds)."""
        with self._wanted_lock:
            self._closing = True
            deferrer = self._deferrer
        self._wake.set()
        if deferrer is not None:
            deferrer.join(timeout=10)
        if self._opened:
            self.app.close()
            self._opened = False

    # ---- the worker -----------------------------------------------------------------------------------

    async def run_worker(self) -> None:
        """Run the jobs and defer the periodic ones until SIGTERM or SIGINT (then the running jobs end first)."""
        heartbeat = max(1.0, self.stalled_seconds / 4)
        async with self.app.open_async():
            await self.requeue_stalled()
            watcher = asyncio.create_task(self._watch_stalled(heartbeat), name="requeue stalled jobs")
            try:
                await self.app.run_worker_async(
                    name=f"{socket.gethostname()}-{id(self):x}"[:60], concurrency=CONCURRENCY,
                    update_heartbeat_interval=heartbeat, stalled_worker_timeout=self.stalled_seconds,
                    delete_jobs=procrastinate.jobs.DeleteJobCondition.SUCCESSFUL, install_signal_handlers=True)
            finally:
                watcher.cancel()

    async def _watch_stalled(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.requeue_stalled()
            except Exception as exc:  # noqa: BLE001  (the database away for a moment: look again later)
                logger.warning("stalled jobs not checked", extra={"error": type(exc).__name__})

    async def requeue_stalled(self) -> int:
        """Jobs still ``doing`` in a worker without a heartbeat for ``VAULT_JOBS_STALLED_SECONDS``
        (killed mid-job): back to the queue; how many."""
        stalled = list(await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.stalled_seconds))
        for job in stalled:
            await self.app.job_manager.retry_job(job)
            logger.warning("job of a stopped worker put back in the queue", extra={"job": job.task_name,
                                                                                 "job_id": job.id})
        return len(stalled)


# ---- for metrics and `vault worker --status` -------------------------------------------------------------


def _has_queue(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def queue_depth(engine: Engine) -> dict[tuple[str, str], int]:
    """Jobs in the table by (queue, state): ``todo``, ``doing``, ``failed``… (successful jobs are
    deleted as they end). Empty on SQLite (no queue)."""
    if not _has_queue(engine):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs GROUP BY queue_name, status"))
        return {(str(queue), str(status)): int(count) for queue, status, count in rows}


def failed_jobs(engine: Engine) -> dict[str, int]:
    """Jobs that failed for good (every attempt), by job name. Empty on SQLite (no queue)."""
    if not _has_queue(engine):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT task_name, count(*) FROM procrastinate_jobs WHERE status = 'failed' GROUP BY task_name"))
        return {str(name): int(count) for name, count in rows}


def retried_jobs(engine: Engine) -> dict[str, Any]:
    """Jobs waiting for another attempt after a failure (``attempts`` > 0), by job name."""
    if not _has_queue(engine):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT task_name, count(*), max(attempts) FROM procrastinate_jobs WHERE status = 'todo' AND attempts > 0 "
            "GROUP BY task_name"))
        return {str(name): {"jobs": int(count), "attempts": int(attempts)} for name, count, attempts in rows}
