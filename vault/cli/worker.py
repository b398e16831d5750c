"""``vault worker``: delivers the mail outbox (with ``VAULT_MAIL_SENDER=worker``)."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from types import FrameType
from typing import Annotated

import typer

from vault.cli.common import JsonFlag, open_services
from vault.logs import configure_logging
from vault.mail import Sender


def worker(once: Annotated[bool, typer.Option("--once", help="One pass over the due mail, then exit.")] = False,
           as_json: JsonFlag = False) -> None:
    """Send the queued mail (retrying while the SMTP server is away) until stopped (SIGTERM, Ctrl-C);
    purge delivered mail after VAULT_MAIL_RETENTION_DAYS. Run one or more next to `vault serve`."""
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

    def stop(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001  (a signal handler's signature)
        sender.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sender.run()
