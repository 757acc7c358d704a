"""The HTTP side of a Prometheus registry: serve it, render it as a scrape would, close it.

Shared by the runtime's endpoint (runtime/metrics.py) and the cluster's one endpoint over every
shard (cluster/metrics.py); each fills its own registry.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from ddavs_rt.errors import DdavsError

log = logging.getLogger(__name__)


class MetricsEndpoint:
    """`registry` behind `serve(host, port)`; `text()` is what a scrape sees."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start the HTTP endpoint (a daemon thread); returns the bound (host, port)."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise DdavsError(f"cannot serve metrics on {host}:{port} ({error.strerror or error}); "
                             "pick another --metrics port") from None
        self.address = (host, self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", *self.address)
        return self.address

    def text(self) -> str:
        """The exposition text, as a scrape would see it."""
        return generate_latest(self.registry).decode("utf-8")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
