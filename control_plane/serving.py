"""``agentctl serve``: uvicorn with one or several worker processes, graceful shutdown and the
optional unauthenticated metrics port.

One worker runs in this process. With ``workers > 1`` uvicorn's supervisor starts that many
processes sharing the listening sockets; each builds its app with ``app.serve_app`` from the
environment, so the settings this process resolved (the default issuer) are handed on as
``AGENTCTL_*`` variables, and Prometheus samples go to a fresh ``PROMETHEUS_MULTIPROC_DIR``
that ``/metrics`` merges.

Shutdown (SIGTERM): readiness turns false (``kit.lifecycle``), after
``shutdown_drain_seconds`` the listeners close, in-flight requests get
``shutdown_grace_seconds`` to finish, then the lifespan stops the background work and flushes
the audit sequencer and checkpointer. With several workers the supervisor forwards SIGTERM to
each and waits for them.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.config import Settings
from control_plane.crypto import resolve_kek
from control_plane.observability.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    from fastapi import FastAPI


class NoQueryString(logging.Filter):
    """Drops the query string from uvicorn's access line (``client - "GET /path?q" 200``): a
    secret a client sends there by mistake (``?client_secret=``, ``?access_token=``) is not
    written to the log. The app's own ``request`` line logs the route template only."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def _log_config(json_lines: bool) -> dict[str, Any]:
    """uvicorn's logging configuration, with ``NoQueryString`` on its access handler; with
    ``json_lines`` its own lines (started, running on, shutting down) are JSON lines too, as
    the app's are (``event``, ``level``, ``timestamp``, ``logger``), not plain text among them."""
    import structlog
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_query"] = {"()": f"{__name__}.NoQueryString"}
    config["handlers"]["access"]["filters"] = ["no_query"]
    if json_lines:
        config["formatters"]["json"] = {
            "()": "structlog.stdlib.ProcessorFormatter",
            "foreign_pre_chain": [
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        }
        for handler in config["handlers"].values():
            handler["formatter"] = "json"
    return config


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    app: FastAPI | None = None,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (see the module docstring). ``app``: the one worker's app,
    built by the caller (with ``workers > 1`` each worker builds its own). ``ssl_certfile`` and
    ``ssl_keyfile`` (PEM) serve HTTPS."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
        "server_header": False,
        # The app logs one line per request itself; uvicorn's plain-text access line would be a
        # second, non-JSON one.
        "access_log": not settings.json_logs,
        "log_config": _log_config(settings.json_logs),
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace_seconds)),
        "ssl_certfile": str(ssl_certfile) if ssl_certfile is not None else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile is not None else None,
    }
    metrics_dir: str | None = None
    if workers > 1:
        if not os.environ.get(MULTIPROC_ENV):
            metrics_dir = tempfile.mkdtemp(prefix="agentctl-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        if settings.issuer:
            os.environ["AGENTCTL_ISSUER"] = settings.issuer
        # Outside production the key-encryption key may be generated into the data dir: once,
        # here, rather than raced by the workers.
        resolve_kek(settings)
        config = uvicorn.Config(
            "control_plane.app:serve_app",
            factory=True,
            workers=workers,
            # A worker answers the supervisor's health pings once it has imported the app,
            # which takes seconds on a busy machine; a worker that misses one is replaced.
            timeout_worker_healthcheck=30,
            **common,
        )
    else:
        if app is None:
            from control_plane.app import create_app

            app = create_app(settings, tune_collector=True)
        config = uvicorn.Config(app, **common)
    sockets = [config.bind_socket()]
    if settings.metrics_port is not None:
        sockets.append(_bind(host, settings.metrics_port))
    try:
        if workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
