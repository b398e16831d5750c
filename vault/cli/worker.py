"""``vault worker``: delivers the mail outbox (with ``VAULT_MAIL_SENDER=worker``)."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from types import FrameType
from typing import Annotated

import typer

from vault import metrics
from vault.cli.common import JsonFlag, fail, open_services
from vault.logs import configure_logging
from vault.mail import Sender
from vault.services import Services


def worker(once: Annotated[bool, typer.Option("--once", help="One pass over the due mail, then exit.")] = False,
           as_json: JsonFlag = False) -> None:
    """Send the queued mail (retrying while the SMTP server is away) until stopped (SIGTERM, Ctrl-C);
    purge delivered mail after VAULT_MAIL_RETENTION_DAYS. Run one or more next to `vault serve`.
    With VAULT_METRICS_PORT, serves its Prometheus metrics (the job queue's among them) on that port."""
    if not once:  # the loop logs JSON lines on standard output, as `vault serve`; one pass prints its report
        configure_logging()
    services = open_services(as_json)
    settings = services.settings
    sender = Sender(services.engine, services.mail_transport, poll_seconds=settings.mail_poll_seconds,
                    retention_days=settings.mail_retention_days,
                    give_up_hours=settings.mail_give_up_hours)
    if once:
        report = sender.run_once()
        if as_json:
            typer.echo(json.dumps(asdict(report)))
        else:
            typer.echo(f"sent {report.sent}, to retry {report.retried}, refused {report.failed}")
        return

    metrics_server = None
    if settings.metrics_port:
        try:
            metrics_server = metrics.serve_registry(settings.metrics_host, settings.metrics_port,
                                                    extra=job_queue_collectors(services))
        except metrics.MetricsPortError as exc:
            fail(str(exc), as_json=as_json, code="config_error")

    def stop(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001  (a signal handler's signature)
        sender.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sender.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()


def job_queue_collectors(services: Services) -> list[metrics.JobQueueCollector]:  # noqa: ARG001  (the queue's home)
    """The job queue read at each scrape of the worker's metrics: a ``metrics.JobQueueCollector`` over
    the queue's jobs by (queue, state) and its failed jobs by name, once the service has a job queue
    (none yet: nothing to export)."""
    return []
