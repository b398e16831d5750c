"""``vault worker``: runs the background jobs (``vault.jobs``): mail, retention, erasures left to a
job, validity alerts. On PostgreSQL, procrastinate's worker; on SQLite, the same jobs in-process."""

from __future__ import annotations

import asyncio
import json
import signal
from types import FrameType
from typing import Annotated, Any

import typer

from vault import metrics
from vault.cli.common import JsonFlag, fail, open_services
from vault.jobs.local import LocalJobs
from vault.logs import configure_logging
from vault.services import Services


def worker(once: Annotated[bool, typer.Option("--once", help="Run each job once now (mail, erasures, validity "
                                                               "alerts), print what they did, exit.")] = False,
           status: Annotated[bool, typer.Option("--status", help="Print the queue: jobs by queue and state, "
                                                                 "those failed or waiting for a retry; exit.")] = False,
           as_json: JsonFlag = False) -> None:
    """Run the background jobs until stopped (SIGTERM, Ctrl-C: after the running jobs end): send the
    queued mail, the daily retention, erasures of large vaults, validity alerts. Run one or more next
    to `vault serve` (VAULT_JOBS=worker); on PostgreSQL a job of a worker that died runs again in another.
    With VAULT_METRICS_PORT, serves its Prometheus metrics (the job queue's among them) on that port."""
    if once and status:
        fail("--once and --status go alone", as_json=as_json)
    if not once and not status:  # the loop logs JSON lines on standard output, as `vault serve`
        configure_logging()
    services = open_services(as_json)
    if status:
        _print_status(services.engine, services.settings.on_postgresql, as_json)
        return
    if once:
        report = LocalJobs(services).run_once()
        if as_json:
            typer.echo(json.dumps(report, default=str))
        else:
            mail = report["send_mail"]
            typer.echo(f"mail: sent {mail.get('sent', 0)}, to retry {mail.get('retried', 0)}, "
                       f"refused {mail.get('failed', 0)}; erasures finished "
                       f"{report['finish_erasures'].get('erasures_finished', 0)}; validity alerts "
                       f"{report['validity_alerts'].get('validity_alerts', 0)}")
        if any("error" in part for part in report.values()):
            raise typer.Exit(1)
        return

    settings = services.settings
    metrics_server = None
    if settings.metrics_port:
        try:
            metrics_server = metrics.serve_registry(settings.metrics_host, settings.metrics_port,
                                                    extra=job_queue_collectors(services))
        except metrics.MetricsPortError as exc:
            fail(str(exc), as_json=as_json, code="config_error")
    try:
        if settings.on_postgresql:
            from vault.jobs.queue import JobQueue  # noqa: PLC0415  (procrastinate: only for the commands that use it)

            asyncio.run(JobQueue(services, for_worker=True).run_worker())  # procrastinate handles SIGTERM/SIGINT
            return
        jobs = LocalJobs(services)

        def stop(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001  (a signal handler's signature)
            jobs.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        jobs.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()


def job_queue_collectors(services: Services) -> list[metrics.JobQueueCollector]:
    """The job queue read at each scrape of the worker's metrics: its jobs by (queue, state) and its
    failed jobs by name (PostgreSQL; on SQLite the jobs run in-process and there is no queue)."""
    if not services.settings.on_postgresql:
        return []
    from vault.jobs.queue import failed_jobs, queue_depth  # noqa: PLC0415  (as above)

    engine = services.engine
    return [metrics.JobQueueCollector(lambda: queue_depth(engine), lambda: failed_jobs(engine))]


def _print_status(engine: Any, on_postgresql: bool, as_json: bool) -> None:
    from vault.jobs.queue import failed_jobs, queue_depth, retried_jobs  # noqa: PLC0415  (as above)

    if not on_postgresql:
        result: dict[str, Any] = {"queue": None}
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo("no job queue on SQLite: the jobs run in-process (the app's thread or `vault worker`)")
        return
    depth = queue_depth(engine)
    result = {"queues": [{"queue": q, "state": s, "jobs": n} for (q, s), n in sorted(depth.items())],
              "failed": failed_jobs(engine), "retrying": retried_jobs(engine)}
    if as_json:
        typer.echo(json.dumps(result))
        return
    for row in result["queues"]:
        typer.echo(f"{row['queue']:<18} {row['state']:<10} {row['jobs']}")
    if not result["queues"]:
        typer.echo("no job waiting, running or failed")
    for name, count in result["failed"].items():
        typer.echo(f"FAILED: {name}: {count} job(s) failed every attempt (see the worker's log)")
    for name, info in result["retrying"].items():
        typer.echo(f"retrying: {name}: {info['jobs']} job(s), {info['attempts']} attempt(s) failed so far")
