"""The service's metrics (Prometheus, prometheus-client), served on a port of their own.

Every domain counts what it does through the instruments below; this module imports no part of the
service, so that any floor may import it. Labels are low-cardinality only: a route's *template*
(``/api/v1/documents/{document_id}``), a method, a status code, an outcome from a fixed list —
never a path, an id, an address or a name.

Where the numbers live: ``vault serve --workers N`` (N > 1) runs its workers in multiprocess mode —
each writes its values to memory-mapped files in a directory made fresh at start
(``PROMETHEUS_MULTIPROC_DIR``, set by ``vault serve`` before the workers are spawned, removed at
exit) — and the parent process serves the sum over every worker on ``VAULT_METRICS_PORT``
(``serve_multiprocess``). With one worker (and in ``vault worker``) the process serves its own
registry from a thread (``serve_registry``). The public port never answers ``/metrics``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# `vault serve --workers N` names the directory it made for its workers here too: prometheus-client
# turns multiprocess mode on for any PROMETHEUS_MULTIPROC_DIR found at its import, and one inherited
# from elsewhere (set for another program) must not receive this process's files.
WORKERS_DIR_ENV = "CITIZEN_VAULT_METRICS_WORKERS_DIR"
if os.environ.get(MULTIPROC_ENV) and os.environ.get(MULTIPROC_ENV) != os.environ.get(WORKERS_DIR_ENV):
    values.ValueClass = values.MutexValue  # before any instrument is made: this process keeps its values in memory

# ---- HTTP ------------------------------------------------------------------------------------------------

# A request that matched no route: one label for all of them (never the path that was asked).
UNMATCHED_ROUTE = "unmatched"
# Seconds: pages and API answers from a few ms; uploads and exports up to minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

http_requests = Counter("vault_http_requests", "HTTP requests answered, by route template, method and status code",
                        ["route", "method", "status"])
http_request_duration = Histogram("vault_http_request_duration_seconds",
                                  "Time to answer an HTTP request (to the end of its body), by route template and method",
                                  ["route", "method"], buckets=_LATENCY_BUCKETS)
http_requests_in_progress = Gauge("vault_http_requests_in_progress", "HTTP requests being answered (every worker)",
                                  multiprocess_mode="livesum")

# ---- accounts and the OpenID Connect provider ------------------------------------------------------------

# How a citizen logged in (or tried to), and what came of it.
LOGIN_METHODS = ("password", "otp", "passkey", "federation")
LOGIN_OUTCOMES = ("success", "bad_credentials", "bad_otp", "throttled", "email_not_verified", "totp_required")
logins = Counter("vault_logins", "Citizen logins by method (password, otp: the second step, passkey, federation) "
                 "and outcome", ["method", "outcome"])

GRANT_TYPES = ("authorization_code", "refresh_token")
tokens_issued = Counter("vault_oidc_tokens_issued", "Access tokens issued at /token, by grant type", ["grant_type"])

# ---- the document vault ----------------------------------------------------------------------------------

documents_uploaded = Counter("vault_documents_uploaded", "Documents stored (scanned clean, encrypted, recorded)")
documents_uploaded_bytes = Counter("vault_documents_uploaded_bytes", "Plaintext bytes of the documents stored")
documents_downloaded = Counter("vault_documents_downloaded", "Document downloads started (GET of a document's content)")
documents_downloaded_bytes = Counter("vault_documents_downloaded_bytes", "Plaintext bytes of documents sent")

VERDICTS = ("clean", "infected", "error")
antivirus_verdicts = Counter("vault_antivirus_verdicts", "Antivirus scans by verdict (error: clamd failed or did not "
                             "answer; the upload was refused)", ["verdict"])
antivirus_scan_duration = Histogram("vault_antivirus_scan_duration_seconds",
                                    "From the start of a clamd INSTREAM session (the document streamed to it) to its verdict",
                                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))

object_store_errors = Counter("vault_object_store_errors", "Object store operations that failed (the caller answered "
                              "503 or retried later), by operation", ["operation"])

for _method in LOGIN_METHODS:  # every series exists from the start: rate() sees the first one
    for _outcome in LOGIN_OUTCOMES:
        logins.labels(method=_method, outcome=_outcome)
for _grant in GRANT_TYPES:
    tokens_issued.labels(grant_type=_grant)
for _verdict in VERDICTS:
    antivirus_verdicts.labels(verdict=_verdict)

# An operation name as the store calls it ("put_object", "read"…): anything else is "other".
_OPERATION = re.compile(r"[a-z][a-z_]{0,39}")


def count_store_error(operation: str) -> None:
    object_store_errors.labels(operation=operation if _OPERATION.fullmatch(operation) else "other").inc()


# ---- the job queue ---------------------------------------------------------------------------------------


# Jobs in the queue's table by (queue, state): "todo", "doing", "failed"…; and jobs failed for good by job name.
JobCounts = Callable[[], Mapping[tuple[str, str], int]]
FailedJobs = Callable[[], Mapping[str, int]]


class JobQueueCollector(Collector):
    """The job queue read at each scrape from two functions of the queue (the database is asked, not
    a count kept in memory: every worker sees the same queue, and a dashboard takes the highest):
    ``vault_job_queue_jobs`` by queue and state (the depth: ``state="todo"``) and
    ``vault_job_queue_failed_jobs`` by job name. A queue that cannot be read is reported by
    ``vault_job_queue_up`` 0, never by an error page."""

    def __init__(self, jobs: JobCounts, failed: FailedJobs) -> None:
        self.jobs, self.failed = jobs, failed

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("vault_job_queue_jobs", "Jobs in the queue by queue and state (todo: waiting to run)",
                                 labels=["queue", "state"])
        failed = GaugeMetricFamily("vault_job_queue_failed_jobs", "Jobs that failed for good (every attempt), by job",
                                   labels=["job"])
        up = GaugeMetricFamily("vault_job_queue_up", "1 when the job queue could be read at this scrape")
        try:
            counts, failures = self.jobs(), self.failed()
        except Exception as exc:  # noqa: BLE001  (a scrape reports the outage, whatever it is)
            logger.warning("job queue not readable for metrics", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            return [up]
        for (queue, state), count in sorted(counts.items()):
            jobs.add_metric([queue, state], count)
        for job, count in sorted(failures.items()):
            failed.add_metric([job], count)
        up.add_metric([], 1)
        return [jobs, failed, up]

    def describe(self) -> Iterable[Metric]:
        return []  # collected at each scrape (a registry must not read the queue when it is registered)


# ---- serving ---------------------------------------------------------------------------------------------


class MetricsPortError(Exception):
    """The metrics port cannot be listened on; the message says which and why."""


def make_multiprocess_dir() -> str:
    """A fresh, private directory for the workers' files (``vault serve`` sets it as
    ``PROMETHEUS_MULTIPROC_DIR`` before spawning them)."""
    return tempfile.mkdtemp(prefix="vault-metrics-")


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _WorkersCollector(Collector):
    """The sum over every worker's files; before each scrape, the live gauges of workers that are
    gone (a worker killed and replaced by uvicorn) are dropped (``mark_process_dead``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._files = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]  # untyped upstream

    def collect(self) -> Iterable[Metric]:
        for name in glob.glob(os.path.join(self.path, "gauge_live*_*.db")):
            pid = name.rsplit("_", 1)[1].removesuffix(".db")
            if pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), self.path)  # type: ignore[no-untyped-call]  # untyped upstream
        collected: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]  # untyped upstream
        return collected


def use_multiprocess_dir(path: str | None) -> None:
    """The environment the workers spawned from now on inherit: multiprocess mode in ``path``, or none."""
    for name in (MULTIPROC_ENV, WORKERS_DIR_ENV):
        if path is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = path


def worker_exit() -> None:
    """A worker that stops hands back its live gauges (``mark_process_dead``)."""
    if (path := os.environ.get(MULTIPROC_ENV)) and path == os.environ.get(WORKERS_DIR_ENV):
        mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]  # untyped upstream


def _listen(host: str, port: int, registry: CollectorRegistry) -> Any:
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortError(f"cannot serve metrics on {host}:{port} ({exc.strerror or type(exc).__name__}): "
                               f"choose a free port with VAULT_METRICS_PORT") from None
    logger.info("metrics served", extra={"host": host, "port": port})
    return server


def serve_multiprocess(host: str, port: int, path: str, *, extra: Iterable[Collector] = ()) -> Any:
    """Serve the sum of every worker's metrics (from ``path``) and ``extra`` collectors on ``host:port``
    from a daemon thread; the server is returned (``shutdown()`` stops it)."""
    registry = CollectorRegistry()
    registry.register(_WorkersCollector(path))
    for collector in extra:
        registry.register(collector)
    return _listen(host, port, registry)


def serve_registry(host: str, port: int, *, extra: Iterable[Collector] = ()) -> Any:
    """Serve this process's own metrics (and ``extra`` collectors) on ``host:port`` from a daemon thread."""
    for collector in extra:
        REGISTRY.register(collector)
    return _listen(host, port, REGISTRY)
