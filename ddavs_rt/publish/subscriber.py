"""The reference subscriber: connects, filters by topic, decodes and validates messages.

`recv(timeout_s)` waits (with a poller, never an unbounded block) for the next message and
returns a `DecodedFrame`, or None when nothing came in time. With `latest_only=True` it first
drains everything already queued without blocking and keeps the newest message of each stream
(ZeroMQ's CONFLATE cannot do this: it does not support multipart messages), so a consumer that
is slower than the publisher always sees the freshest frames; the older ones are counted in
`skipped`. Malformed messages (another program on the port, a newer schema) are logged,
counted in `malformed` and skipped. `missed` counts frames lost on the way (gaps in a stream's
sequence numbers within one epoch), in the normal mode; `restarts` counts a stream's publisher
starting again (its header's `epoch` rose and seq starts from 0: a restart, not a loss).

Topics are prefixes (ZeroMQ semantics): "ddavs/" is every stream, "ddavs/cam1" also matches
"ddavs/cam10". A socket belongs to one thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import zmq

from ddavs_rt.publish.curve import CurveClient
from ddavs_rt.publish.endpoint import connect
from ddavs_rt.publish.errors import MessageError
from ddavs_rt.publish.schema import TOPIC_PREFIX, DecodedFrame, decode_message

log = logging.getLogger(__name__)


class Subscriber:
    """SUB side: `recv(timeout_s) -> DecodedFrame | None`, `close()`, usable as a context manager."""

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str | bytes] = (TOPIC_PREFIX,),
        latest_only: bool = False,
        curve: CurveClient | None = None,
        receive_hwm: int = 1000,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.latest_only = latest_only
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        try:
            self._socket.linger = 0
            self._socket.rcvhwm = receive_hwm
            if curve is not None:
                curve.apply(self._socket)
            for topic in topics:
                self._socket.subscribe(topic.encode("utf-8") if isinstance(topic, str) else topic)
            connect(self._socket, endpoint)
        except BaseException:
            self.close()
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._pending: dict[bytes, list[bytes]] = {}  # latest-only: newest message per topic
        self._last_seq: dict[str, tuple[int, int]] = {}  # stream -> (epoch, seq)
        self.received = 0
        self.skipped = 0
        self.malformed = 0
        self.missed = 0
        self.restarts = 0

    def recv(self, timeout_s: float | None = None) -> DecodedFrame | None:
        """The next valid message, or None if none came within `timeout_s` (None: wait forever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            parts = self._next_parts(deadline)
            if parts is None:
                return None
            try:
                frame = decode_message(parts)
            except MessageError as error:
                self.malformed += 1
                log.warning("skipped a malformed message: %s", error)
                continue
            self._count(frame)
            return frame

    def _next_parts(self, deadline: float | None) -> list[bytes] | None:
        while True:
            if self.latest_only:
                self._drain()
                if self._pending:
                    return self._pending.pop(next(iter(self._pending)))
            else:
                try:
                    return self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    pass
            if deadline is None:
                self._poller.poll(None)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poller.poll(max(1, int(remaining * 1000)))

    def _drain(self) -> None:
        """Move everything queued into `_pending`, keeping the newest message per topic."""
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if parts[0] in self._pending:
                self.skipped += 1
            self._pending[parts[0]] = parts  # a stream keeps its place in line: round robin

    def _count(self, frame: DecodedFrame) -> None:
        self.received += 1
        stream, seq = frame.header.stream_id, frame.header.seq
        epoch = frame.header.epoch
        last = self._last_seq.get(stream)
        if last is not None and epoch != last[0]:
            self.restarts += epoch > last[0]  # a new epoch is a restart: its seq counts from 0 again
        elif last is not None and seq > last[1] + 1 and not self.latest_only:
            self.missed += seq - last[1] - 1
        if last is None or epoch >= last[0]:
            self._last_seq[stream] = (epoch, seq)

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
        if self._own_context and not self._context.closed:
            self._context.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
