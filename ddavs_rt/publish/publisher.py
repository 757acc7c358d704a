"""The ZeroMQ publisher: one multipart message per processed frame, never blocking the pipeline.

The socket is an XPUB (a PUB that also sees subscriptions) bound to the endpoint, with
`linger` 0 and a send high-water mark; every send is `NOBLOCK`. A plain PUB drops silently for a
subscriber whose queue is full. Here `XPUB_NODROP` is on, so a send that a full queue cannot
take raises `zmq.Again` (at once), and `drop_policy` decides what happens next:

- "slow-only" (default): count it in `dropped`, then send the same message with dropping
  allowed, so every subscriber that keeps up still gets it and only the slow one misses it.
  ZeroMQ then parks the slow subscriber's queue until it has drained to half, and the messages
  it misses meanwhile go unreported: `dropped` counts the times a subscriber fell behind (a
  lower bound of what it missed). The exact count is the subscriber's: the gaps in each
  stream's sequence numbers (`Subscriber.missed`).
- "all": the message goes to nobody while any subscriber's queue is full; `dropped` is the
  exact number of messages not sent. A stalled subscriber then starves every other one: use it
  with a single consumer (a recorder) whose exact loss count matters.

The queues are approximate: kernel TCP buffers hold more than the HWM, so a stalled subscriber
starts to miss messages only once those are full too.

Threads: a ZeroMQ socket is not thread-safe, so a `Publisher` belongs to the thread that
creates it, which alone sends through it and closes it. In the runtime that is the scheduler
thread (`Scheduler.serve` opens it, publishes every frame and closes it on the way out;
`Runtime.start` only waits for the bind); no other thread holds a reference to it.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import zmq

from ddavs_rt.publish.curve import CurveServer
from ddavs_rt.publish.endpoint import bind
from ddavs_rt.publish.schema import FrameHeader, encode_message

log = logging.getLogger(__name__)


class Publisher:
    """PUB side. `publish(header, mask, overlay_jpeg)` or `send(parts)`; counters `sent`, `dropped`."""

    def __init__(
        self,
        endpoint: str,
        send_hwm: int = 50,
        curve: CurveServer | None = None,
        drop_policy: Literal["slow-only", "all"] = "slow-only",
        context: zmq.Context | None = None,
    ) -> None:
        if drop_policy not in ("slow-only", "all"):
            raise ValueError(f"drop_policy must be 'slow-only' or 'all', got {drop_policy!r}")
        self.drop_policy = drop_policy
        if send_hwm < 1:
            raise ValueError(f"send_hwm must be at least 1, got {send_hwm}")
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        try:
            self._socket.linger = 0
            self._socket.sndhwm = send_hwm
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
            if curve is not None:
                curve.apply(self._socket)
            self.endpoint = bind(self._socket, endpoint)
        except BaseException:
            self.close()
            raise
        self.sent = 0  # sends that every active subscriber queue took
        self.dropped = 0  # sends that found a subscriber queue full (see drop_policy)
        self._topics: set[bytes] = set()  # subscribed topic prefixes, from XPUB notifications
        log.info("publishing on %s (send HWM %d%s)", self.endpoint, send_hwm, ", CURVE" if curve else "")

    # ------------------------------------------------------------------------------ sending
    def publish(self, header: FrameHeader, mask: np.ndarray, overlay_jpeg: bytes | None = None) -> bool:
        """Encode and send one frame's message; False when a subscriber queue was full."""
        return self.send(encode_message(header, mask, overlay_jpeg))

    def send(self, parts: list[bytes]) -> bool:
        """Send one multipart message without blocking; False when a subscriber queue was full."""
        self._read_subscriptions()
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
            return True
        except zmq.Again:
            pass
        self.dropped += 1
        if self.drop_policy == "all":
            return False
        # Some subscriber's queue is full: let the others have the message.
        self._socket.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # pragma: no cover - lossy sends do not raise Again
            pass
        finally:
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        return False

    # ------------------------------------------------------------------------ subscriptions
    @property
    def subscribed_topics(self) -> frozenset[bytes]:
        """Topic prefixes some subscriber has asked for (as of the last send or wait)."""
        self._read_subscriptions()
        return frozenset(self._topics)

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait until at least one subscription has arrived; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._read_subscriptions()
            if self._topics:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._socket.poll(max(1, int(remaining * 1000)), zmq.POLLIN)

    def _read_subscriptions(self) -> None:
        # XPUB queues one message per (un)subscription; read them so they never pile up.
        while True:
            try:
                event = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                self._topics.add(event[1:])
                log.debug("subscription to %r", event[1:])
            elif event[:1] == b"\x00":
                self._topics.discard(event[1:])

    # ------------------------------------------------------------------------------ closing
    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
        if self._own_context and not self._context.closed:
            self._context.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
