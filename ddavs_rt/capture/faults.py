"""Fault classes of a source, and the reconnect policy of transient ones.

Every failure of a source is one of two classes (docs/architecture.md, "Supervision"):

- **permanent**: retrying cannot help (no such path / HTTP or RTSP 404, 401/403, a malformed URL,
  a missing file, an unsupported protocol or codec, a device that does not exist). The source
  ends at once with one line naming the fault and the fix.
- **transient**: the input may come back (connection refused, time-out, reset, the end of a live
  stream, a camera that stopped delivering frames). The source reconnects with jittered
  exponential backoff (capped at `backoff_max_s`, at most a few seconds) until it delivers again
  or `timeout_s` has passed since the outage began (`None`: forever, the surveillance setting).

`classify_av_error` maps a PyAV/FFmpeg exception (an `av.error.*` class, its errno, the HTTP/RTSP
status FFmpeg folded into it) to a class. A `SourceError` raised by a source is permanent unless
it is a `TransientSourceError`.
"""

from __future__ import annotations

import enum
import errno
import random
import time
from dataclasses import dataclass

from ddavs_rt.errors import SourceError

DEFAULT_BACKOFF_INITIAL_S = 0.25
DEFAULT_BACKOFF_MAX_S = 1.0        # the longest wait between two attempts (jitter only shortens it)
FIRST_FRAME_TIMEOUT_S = 20.0       # a source that never delivered a frame gives up after this long
DEFAULT_RECONNECT_TIMEOUT_S = 300.0  # a source that did deliver retries this long per outage


class FaultClass(str, enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"


class TransientSourceError(SourceError):
    """A source failure that may go away by itself (retry it); plain `SourceError` is permanent."""


def fault_class(error: BaseException) -> FaultClass:
    """The class of an error raised by a source (`TransientSourceError` is transient)."""
    return FaultClass.TRANSIENT if isinstance(error, TransientSourceError) else FaultClass.PERMANENT


# errno values that mean "the peer is not there right now"
_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EPIPE, errno.EIO, errno.EAGAIN, errno.EINTR,
}


def classify_av_error(error: BaseException, network: bool) -> FaultClass:
    """Permanent or transient, for an exception raised by `av.open` or while demuxing.

    `network` is True for URLs: for a file, anything but a clean read is permanent (the file will
    not change by itself); for a URL, only what the server or FFmpeg says cannot change is.
    """
    import av.error as averr

    permanent = (
        averr.HTTPClientError,          # 400, 401, 403, 404, other 4xx (FFmpeg maps RTSP replies too)
        averr.ProtocolNotFoundError, averr.DemuxerNotFoundError, averr.DecoderNotFoundError,
        averr.OptionNotFoundError, averr.ArgumentError, averr.PatchWelcomeError,
        averr.FileNotFoundError, averr.IsADirectoryError, averr.PermissionError,
        averr.NotADirectoryError,
    )
    if isinstance(error, averr.HTTPTooManyRequestsError):
        return FaultClass.TRANSIENT
    if isinstance(error, permanent):
        return FaultClass.PERMANENT
    if not network:
        return FaultClass.PERMANENT
    if isinstance(error, (averr.HTTPServerError, averr.TimeoutError, averr.ExitError, averr.EOFError,
                          averr.InvalidDataError, averr.ConnectionRefusedError, averr.ConnectionResetError,
                          averr.ConnectionAbortedError, averr.BrokenPipeError, TimeoutError, ConnectionError)):
        return FaultClass.TRANSIENT
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code in _TRANSIENT_ERRNOS:
        return FaultClass.TRANSIENT
    # An unknown failure of a network input: retry it, bounded by the reconnect timeout.
    return FaultClass.TRANSIENT


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a source retries a transient fault.

    `timeout_s`: how long one outage may last before the source gives up (None: forever);
    `first_timeout_s`: the same before the source has ever delivered a frame (an address that
    never worked is more likely a mistake than an outage; None: forever).
    """

    timeout_s: float | None = DEFAULT_RECONNECT_TIMEOUT_S
    first_timeout_s: float | None = FIRST_FRAME_TIMEOUT_S
    backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    enabled: bool = True

    @classmethod
    def from_setting(cls, value: float | str | None, **kwargs) -> "ReconnectPolicy":
        """From the config's `reconnect_timeout_s`: a number of seconds, 'forever' or None (defaults)."""
        if value is None:
            return cls(**kwargs)
        if isinstance(value, str):
            if value.strip().lower() != "forever":
                raise ValueError(f"reconnect timeout {value!r} is not a number of seconds or 'forever'")
            return cls(timeout_s=None, first_timeout_s=None, **kwargs)
        return cls(timeout_s=float(value), first_timeout_s=float(value), **kwargs)

    def limit(self, delivered: bool) -> float | None:
        return self.timeout_s if delivered else self.first_timeout_s

    def describe_limit(self, delivered: bool) -> str:
        limit = self.limit(delivered)
        return "forever" if limit is None else f"{limit:g} s"


class Outage:
    """One outage of a source: when it began, and the jittered delay before each attempt."""

    def __init__(self, policy: ReconnectPolicy, delivered: bool, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.delivered = delivered
        self.began = time.monotonic()
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt: exponential, capped, jittered into [cap/2, cap]."""
        base = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * (2.0 ** self.attempts))
        self.attempts += 1
        return base * self._rng.uniform(0.5, 1.0)

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def expired(self, upcoming_delay: float = 0.0) -> bool:
        """True when an attempt after `upcoming_delay` more seconds would start past the limit."""
        limit = self.policy.limit(self.delivered)
        return limit is not None and self.elapsed() + upcoming_delay > limit
