"""The viewer's HTTP server and the subscriber thread that feeds it.

    viewer = Viewer("tcp://127.0.0.1:5555", ("127.0.0.1", 8080), curve=None)
    host, port = viewer.start()      # subscriber thread + HTTP threads
    ...
    viewer.close()

Routes: `/` the page, `/api/streams` JSON (one entry per stream: seq, fps, latency, drops,
image URL), `/stream/<id>.img` the newest overlay JPEG (or the mask PNG when the publisher
sends no overlay), `/healthz`.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.curve import CurveClient
from ddavs_rt.publish.schema import TOPIC_PREFIX
from ddavs_rt.publish.subscriber import Subscriber
from ddavs_rt.view.board import Board
from ddavs_rt.view.page import PAGE

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        board = self.server.board
        if path in ("/", "/index.html"):
            self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/api/streams":
            body = {"endpoint": self.server.endpoint, "received": board.received, "streams": board.snapshot()}
            self._send(200, json.dumps(body).encode("utf-8"), "application/json")
        elif path.startswith("/stream/") and path.endswith(".img"):
            found = board.image(unquote(path[len("/stream/"):-len(".img")]))
            if found is None:
                self._send(404, b"no such stream\n", "text/plain")
            else:
                image, content_type, seq = found
                self._send(200, image, content_type, {"X-Seq": str(seq)})
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    board: Board
    endpoint: str


class Viewer:
    def __init__(self, connect: str, http: tuple[str, int] = ("127.0.0.1", 8080), curve: CurveClient | None = None,
                 topics: tuple[str, ...] = (TOPIC_PREFIX,)) -> None:
        self.connect = connect
        self.http = http
        self.curve = curve
        self.topics = topics
        self.board = Board()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> tuple[str, int]:
        """Connect the subscriber and serve HTTP; returns the bound (host, port)."""
        try:
            self._server = _Server(self.http, _Handler)
        except OSError as error:
            raise DdavsError(f"cannot serve the viewer on {self.http[0]}:{self.http[1]} ({error.strerror or error}); "
                             "pick another --http address") from None
        self._server.board = self.board
        self._server.endpoint = self.connect
        subscriber = threading.Thread(target=self._receive, name="viewer-subscriber", daemon=True)
        subscriber.start()
        self._ready.wait(10.0)
        if self._error is not None:
            self._server.server_close()
            raise self._error
        http = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                name="viewer-http", daemon=True)
        http.start()
        self._threads = [subscriber, http]
        host, port = self._server.server_address[:2]
        log.info("viewer on http://%s:%d/ for %s", host, port, self.connect)
        return host, port

    def _receive(self) -> None:
        # The socket is made, used and closed on this thread (a ZeroMQ socket belongs to one thread).
        try:
            subscriber = Subscriber(self.connect, topics=self.topics, latest_only=True, curve=self.curve)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        with subscriber:
            while not self._stop.is_set():
                frame = subscriber.recv(0.2)
                if frame is not None:
                    self.board.update(frame)

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            if len(self._threads) > 1:
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> "Viewer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
