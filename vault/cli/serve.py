"""``vault serve``: the web application under uvicorn, and its metrics on a port of their own."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import uvicorn

from vault import metrics
from vault.cli.common import fail, read_settings
from vault.logs import configure_logging
from vault.settings import Settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-Proto from --forwarded-allow-ips.")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(help="Proxies allowed to set forwarded headers.")] = "127.0.0.1",
) -> None:
    """Serve the web application (pages, OpenID Connect, API); with VAULT_METRICS_PORT, its
    Prometheus metrics on that port (the sum over every worker)."""
    configure_logging()
    settings = read_settings()  # a configuration that cannot run stops here, before uvicorn starts
    # The workers' metrics directory is this command's own: one an operator left in the environment
    # would mix another run's numbers in.
    metrics.use_multiprocess_dir(None)
    metrics_dir = metrics.make_multiprocess_dir() if settings.metrics_port and workers > 1 else None
    try:
        server = _serve_metrics(settings, port=port, metrics_dir=metrics_dir)
        try:
            uvicorn.run("vault.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                        access_log=False, log_config=None, proxy_headers=proxy_headers,
                        forwarded_allow_ips=forwarded_allow_ips, server_header=False)
        finally:
            if server is not None:
                server.shutdown()
    finally:
        if metrics_dir is not None:
            metrics.use_multiprocess_dir(None)
            metrics.remove_multiprocess_dir(metrics_dir)


def _serve_metrics(settings: Settings, *, port: int, metrics_dir: str | None) -> Any:
    """The metrics server, started before the workers: with several workers, this (parent) process
    serves the sum of the files they write to ``metrics_dir`` (set in the environment they inherit);
    with one, the one process serves its own registry. None when VAULT_METRICS_PORT is 0."""
    if not settings.metrics_port:
        return None
    if settings.metrics_port == port:
        fail(f"VAULT_METRICS_PORT={port} is the service's own port (--port): metrics are served on a port of "
             f"their own, never next to the public pages", as_json=False, code="config_error")
    try:
        if metrics_dir is None:
            return metrics.serve_registry(settings.metrics_host, settings.metrics_port)
        metrics.use_multiprocess_dir(metrics_dir)
        return metrics.serve_multiprocess(settings.metrics_host, settings.metrics_port, metrics_dir)
    except metrics.MetricsPortError as exc:
        fail(str(exc), as_json=False, code="config_error")
