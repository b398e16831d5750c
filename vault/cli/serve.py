"""``vault serve``: the web application under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from vault.cli.common import read_settings
from vault.logs import configure_logging


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-Proto from --forwarded-allow-ips.")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(help="Proxies allowed to set forwarded headers.")] = "127.0.0.1",
) -> None:
    """Serve the web application (pages, OpenID Connect, API)."""
    configure_logging()
    read_settings()  # a configuration that cannot run stops here, before uvicorn starts
    uvicorn.run("vault.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_config=None, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips, server_header=False)
