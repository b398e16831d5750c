"""The jobs in-process, without a queue: development (``VAULT_JOBS=app``, ``make run``: threads of
the web process) and ``vault worker`` on SQLite.

One thread runs the jobs of ``vault.jobs.work`` one after the other: each on its schedule (cron,
UTC, as the queue would), the mail also every ``VAULT_MAIL_POLL_SECONDS``, and mail or erasures at
once after a commit that needs them. A job that fails is logged and tried again at its next turn
(the work is staged in the database, as with the queue).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from sqlalchemy.exc import SQLAlchemyError

from vault.jobs.work import WORK, on_work_committed, schedules
from vault.services import Services

logger = logging.getLogger(__name__)


class LocalJobs:
    """``start``/``stop`` for the web app's thread, ``run`` for ``vault worker`` on SQLite."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.poll_seconds = float(services.settings.mail_poll_seconds)
        self._crons = schedules(services.settings)
        self._next = {name: self._after_now(name) for name in self._crons}
        self._next["send_mail"] = time.time()  # and every poll below
        self._woken: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forget_listener: Any = None

    def _after_now(self, name: str) -> float:
        return float(croniter(self._crons[name], datetime.now(UTC)).get_next(float))

    def wake(self, name: str) -> None:
        with self._lock:
            self._woken.add(name)
        self._wake.set()

    def run_due(self) -> dict[str, Any]:
        """Run every job whose time has come or that was woken; what each did."""
        now = time.time()
        with self._lock:
            due = [name for name in WORK if self._next[name] <= now or name in self._woken]
            self._woken -= set(due)
        done: dict[str, Any] = {}
        for name in due:
            if self._stop.is_set():
                break
            done[name] = self._run_one(name)
            following = self._after_now(name) if self._next[name] <= now else self._next[name]
            if name == "send_mail":
                following = min(following, time.time() + self.poll_seconds)
            self._next[name] = following
        return done

    def _run_one(self, name: str) -> Any:
        try:
            result = WORK[name](self.services)
        except SQLAlchemyError as exc:
            logger.warning("job cannot reach the database", extra={"job": name, "error": type(exc).__name__})
            return {"error": type(exc).__name__}
        except Exception as exc:  # noqa: BLE001  (the loop outlives one bad run; its work stays staged)
            logger.error("job failed", extra={"job": name, "error": type(exc).__name__})  # no traceback: no content
            return {"error": type(exc).__name__}
        if any(result.values()):
            logger.info("job done", extra={"job": name, "result": result})
        return result

    def run_once(self) -> dict[str, Any]:
        """Every job but retention (``vault retention run``), once, now: ``vault worker --once``."""
        return {name: self._run_one(name) for name in WORK if name != "retention"}

    def run(self) -> None:
        """Until ``request_stop``: the due jobs, then wait for the next or a wake-up."""
        self._forget_listener = on_work_committed(self.wake)
        try:
            while not self._stop.is_set():
                self.run_due()
                wait = max(0.0, min(self._next.values()) - time.time())
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self._forget_listener()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="jobs", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """``run`` returns after the job it is running (a signal handler may call this)."""
        self._stop.set()
        self._wake.set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
