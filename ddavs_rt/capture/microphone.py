"""Microphone source: a PortAudio input (sounddevice) resampled to the model's rate.

- The device runs at its native rate; blocks are resampled to `sample_rate` by a streaming
  resampler on libsoxr (no seams between blocks; capture/resample.py).
- The audio clock is the count of samples received. It is anchored once, to the ADC time
  (PortAudio's stream clock, not `time.monotonic()`), mapped to the monotonic clock with the
  offset between the callback's `currentTime` and `time.monotonic()` measured in the same
  callback; where the host API reports an ADC time of 0, a block's arrival time minus its
  duration stands in. The anchor is the median, over the first `ANCHOR_SETTLE_S` of blocks, of
  the time each block's ADC time implies for sample 0, checked against arrivals: a sample cannot
  arrive before it was captured, nor be captured much longer than the stream's input latency
  before it arrives. An ADC time outside that range is not trusted (PulseAudio through ALSA
  reported about 0.6 s of latency for the first 1.3 s of blocks and 20 ms afterwards) and the
  anchor becomes the earliest arrival-implied start minus the stream's reported input latency.
  Drift between the sound card and the host is corrected by a slow linear fit of (sample count,
  arrival time) (see clock.py).
- The PortAudio callback only copies the block into a bounded queue; a worker thread resamples
  and emits. A block lost to overflow is a counted gap: the resampler restarts after it and
  times continue from the true sample count, never squeezed together.
- Supervision (docs/architecture.md, "Supervision"): a device that does not exist at start is a
  permanent fault. A stream that ends by itself (PortAudio aborts it: the device was unplugged,
  PulseAudio restarted or lost the source, a USB microphone reset: PortAudio's finished
  callback) or delivers nothing for `STALL_S` (a hung sound server; the watchdog never calls into
  PortAudio, whose calls block then, and the outage is declared before the lost stream is
  closed) is an outage: the stream is closed and the device (by the same name or index) is
  reopened under the source's `ReconnectPolicy` with jittered backoff, every failure transient
  (a replugged device comes back). A reopen counts only once the new stream delivers audio
  (`REOPEN_PROOF_S`). The new connection is anchored afresh on the same stream clock, so its audio
  lands where it was captured and the gap shows as missing audio (incomplete windows, one ring
  gap), never squeezed out. `reconnects` counts outages; the source ends with a transient fault
  when an outage outlasts the policy (the runtime then ends the stream: exit 1).
- `sounddevice` is imported lazily: a machine without PortAudio can still import this package.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import numpy as np

from ddavs_rt.capture.base import DropOldestQueue, Source
from ddavs_rt.capture.clock import SampleClock
from ddavs_rt.capture.resample import StreamingResampler
from ddavs_rt.capture.faults import TransientSourceError
from ddavs_rt.capture.native_stderr import quiet_native_stderr
from ddavs_rt.errors import SourceError

log = logging.getLogger(__name__)

STALL_S = 5.0  # no audio for this long from a stream PortAudio calls active: the device is wedged
ENDED_GRACE_S = 0.3  # no audio for this long from a stream PortAudio has ended: the device is gone
REOPEN_PROOF_S = 3.0  # a reopened stream must deliver its first block within this long to count
ANCHOR_SETTLE_S = 0.3  # audio collected before the clock is anchored (median of the blocks)

# PortAudio streams open in this process: its device list is refreshed (terminate + initialize,
# which would break an open stream) only when none is.
_open_streams = 0
_open_streams_lock = threading.Lock()


def import_sounddevice():
    """The sounddevice module, or a one-line SourceError when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as error:
        raise SourceError(
            f"microphone: the PortAudio library could not be loaded ({error}); "
            "install it (Debian/Ubuntu: apt-get install libportaudio2)"
        ) from None
    return sounddevice


def input_device_list(sd) -> str:
    """'0 'pulse', 1 'default'' for messages, or 'none'."""
    try:
        devices = sd.query_devices()
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return "unknown (PortAudio could not list devices)"
    names = [f"{d['index']} '{d['name']}'" for d in devices if d["max_input_channels"] > 0]
    return ", ".join(names) if names else "none"


class MicrophoneSource(Source):
    """Audio from a local input device by name, index or None (the default input)."""

    def __init__(
        self,
        device: int | str | None = None,
        stream_id: str = "microphone",
        *,
        sample_rate: int = 16000,
        native_rate: int | None = None,
        block_seconds: float = 0.02,
        latency: str | float = "low",
        raw_queue_blocks: int = 500,
        **queue_options,
    ) -> None:
        super().__init__(stream_id, **queue_options)
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.sample_rate = int(sample_rate)
        self.native_rate = native_rate
        self.block_seconds = block_seconds
        self.latency = latency
        self.has_audio = True
        self._raw: DropOldestQueue[tuple[int, np.ndarray, float, float, float]] = DropOldestQueue(raw_queue_blocks)
        self._stream = None
        self._finished = threading.Event()  # the current stream ended by itself (PortAudio's finished callback)
        self._received = 0          # samples delivered by PortAudio (callback thread only)
        self.overflows = 0          # PortAudio input overflows reported
        self.gaps = 0               # discontinuities (blocks lost before the worker saw them)
        self.clock_model: SampleClock | None = None
        self._expected = 0          # input index the next block should start at
        self._origin = 0            # input index where the resampler last (re)started

    def describe(self) -> str:
        return "microphone (default input)" if self.device is None else f"microphone {self.device!r}"

    def _find_device(self, sd, kind: type[SourceError] = SourceError) -> dict:
        try:
            info = sd.query_devices(self.device, kind="input")
        except (ValueError, sd.PortAudioError):
            # The list is read when PortAudio starts: refresh it once (a device added or replugged
            # since), unless another stream is open in this process (a refresh would break it).
            with _open_streams_lock:
                refresh = _open_streams == 0
            try:
                if not refresh:
                    raise ValueError("device list not refreshed")
                sd._terminate()
                sd._initialize()
                info = sd.query_devices(self.device, kind="input")
            except (ValueError, sd.PortAudioError, AttributeError):
                raise kind(
                    f"{self.describe()} not found; available input devices: {input_device_list(sd)}; "
                    "pass one by name or index"
                ) from None
        if info["max_input_channels"] < 1:
            raise kind(
                f"{self.describe()} has no input channels; available input devices: {input_device_list(sd)}"
            )
        return info

    def _open(self) -> None:
        self._connect(SourceError)

    def _reopen(self) -> None:
        """Open the device again after an outage; every failure is transient (it may come back).
        Counts as connected only once the new stream delivers audio."""
        self._close(abort=True)  # the lost stream (after the backoff wait: it may block while a server hangs)
        self._connect(TransientSourceError)
        deadline = time.monotonic() + REOPEN_PROOF_S
        while not len(self._raw):
            if self._stream is None or self._finished.is_set() or time.monotonic() > deadline:
                self._close()
                raise TransientSourceError(f"{self.describe()} opened again but delivered no audio")
            if not self._sleep(0.02):
                self._close()
                raise TransientSourceError(f"{self.describe()} is stopping")  # _reconnect sees stopping next

    def _connect(self, kind: type[SourceError]) -> None:
        """Open and start a PortAudio stream on the device; a fresh clock and resampler, on the
        same stream clock (`_t0`). Raises `kind` with one line when it cannot."""
        sd = import_sounddevice()
        info = self._find_device(sd, kind)
        rate = int(self.native_rate or info["default_samplerate"])
        self.native_rate = rate
        self._resampler = StreamingResampler(rate, self.sample_rate)
        self.clock_model = SampleClock(rate)
        self._raw.drain()  # blocks of a previous connection (its sample count starts again at 0)
        self._received = self._expected = self._origin = 0
        # A reopen during an outage runs about once a second: PortAudio/ALSA's own lines about each
        # failed attempt go to DEBUG, not the terminal (the first open keeps them: they may help).
        quiet = quiet_native_stderr(self.describe()) if kind is TransientSourceError else contextlib.nullcontext()
        with quiet:
            self._start_stream(sd, info, rate, kind)
        log.info("%s: '%s' at %d Hz, resampled to %d Hz", self.describe(), info["name"], rate, self.sample_rate)

    def _start_stream(self, sd, info: dict, rate: int, kind: type[SourceError]) -> None:
        global _open_streams
        finished = threading.Event()  # set by PortAudio when this stream ends by itself (or is stopped)
        self._finished = finished
        try:
            stream = sd.InputStream(
                device=info["index"], samplerate=rate, channels=1, dtype="float32",
                blocksize=max(1, int(rate * self.block_seconds)), latency=self.latency,
                callback=self._callback, finished_callback=finished.set,
            )
        except (sd.PortAudioError, ValueError) as error:
            raise kind(
                f"{self.describe()} ('{info['name']}') could not be opened at {rate} Hz: {error}; "
                f"available input devices: {input_device_list(sd)}"
            ) from None
        self._stream = stream
        with _open_streams_lock:
            _open_streams += 1
        try:
            stream.start()
        except (sd.PortAudioError, ValueError) as error:
            self._close()
            raise kind(
                f"{self.describe()} ('{info['name']}') could not be started at {rate} Hz: {error}; "
                f"available input devices: {input_device_list(sd)}"
            ) from None

    def _delivered(self) -> bool:
        return self._audio_chunks > 0

    def _reconnect_hint(self) -> str:
        return "check that the microphone is plugged in and the sound server (PulseAudio/PipeWire) is running"

    def _callback(self, indata, frames, time_info, status) -> None:
        """PortAudio's thread: copy and hand off, nothing more."""
        arrival = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        start = self._received
        self._received += frames
        adc = float(time_info.inputBufferAdcTime or 0.0)
        current = float(time_info.currentTime or 0.0)
        if self._raw.put((start, indata[:, 0].copy(), adc, current, arrival)):
            with self._lock:
                self._audio_dropped += 1

    def _implied_start(self, start: int, adc: float, current: float, arrival: float) -> float:
        """The stream time of sample 0 that one block's ADC time implies."""
        capture = adc + (arrival - current)  # PortAudio stream clock -> monotonic, this callback's offset
        return capture - self._t0 - start / self.native_rate

    def _choose_anchor(self, blocks: list[tuple[int, np.ndarray, float, float, float]]) -> float:
        """The stream time of sample 0: ADC-based when plausible, else arrival-based."""
        rate = float(self.native_rate)
        latest = min(r - self._t0 - (s + len(b)) / rate for s, b, _a, _c, r in blocks)  # arrival bound
        stream = self._stream
        latency = float(getattr(stream, "latency", 0.0) or 0.0)
        block = max(len(b) for _s, b, _a, _c, _r in blocks) / rate
        earliest = latest - latency - block - 0.01
        with_adc = [self._implied_start(s, a, c, r) for s, _b, a, c, r in blocks if a > 0 and c > 0]
        if with_adc:
            adc_start = float(np.median(with_adc))
            if earliest <= adc_start <= latest:
                return adc_start
            log.info("%s: ADC time disagrees with arrival times by %.3f s; anchoring on arrivals",
                     self.describe(), adc_start - latest)
        return latest - latency

    def _run(self) -> None:
        reopened_at: int | None = None  # audio chunks emitted when the device was last reopened
        while True:
            lost = self._capture_until_lost()
            if lost is None:
                return
            # the outage is declared (state, log line) before the lost stream is closed: closing a
            # stream whose sound server hangs can block until the server answers again
            # reopened but nothing emitted since: the same outage goes on (its time limit too)
            continuing = reopened_at is not None and reopened_at == self.health().audio_chunks
            if not self._reconnect(self._reopen, lost, continuing=continuing):
                return
            reopened_at = self.health().audio_chunks

    def _capture_until_lost(self) -> str | None:
        """Anchor, resample and emit this connection's audio; returns why it was lost, or None
        when the source is stopping."""
        pending: list[tuple[int, np.ndarray, float, float, float]] = []
        quiet_since = time.monotonic()
        while not self.stopping.is_set():
            item = self._raw.get(timeout=0.1)
            if item is None:
                # never ask PortAudio here (`stream.active` blocks while a sound server hangs):
                # its finished callback and the time since the last block tell
                quiet = time.monotonic() - quiet_since
                if self._stream is None or self._finished.is_set():
                    if quiet > ENDED_GRACE_S:  # its last blocks are in; PortAudio ended the stream
                        return (f"{self.describe()} stopped: its audio stream ended (device unplugged, "
                                "sound server restarted or source removed)")
                elif quiet > STALL_S:
                    return f"{self.describe()} delivered no audio for {STALL_S:g} s"
                continue
            quiet_since = time.monotonic()
            clock = self.clock_model
            assert clock is not None
            if not clock.anchored:
                pending.append(item)
                if sum(len(p[1]) for p in pending) < ANCHOR_SETTLE_S * self.native_rate:
                    continue
                clock.anchor(0, self._choose_anchor(pending))
                self._expected = self._origin = pending[0][0]
                for held in pending:
                    self._process(held)
                pending = []
                continue
            self._process(item)
        return None

    def _process(self, item: tuple[int, np.ndarray, float, float, float]) -> None:
        start, block, _adc, _current, arrival = item
        clock = self.clock_model
        assert clock is not None
        if start != self._expected:
            self.gaps += 1
            log.warning("%s: %d samples lost (consumer too slow); restarting the resampler",
                        self.describe(), start - self._expected)
            self._resampler.reset()
            self._origin = start
        self._expected = start + len(block)
        clock.observe(self._expected, arrival - self._t0)
        first, samples = self._resampler.process(block)
        if len(samples):
            t = clock.time_of(self._origin + first * self._resampler.ratio)
            self._emit_audio(t, samples, self.sample_rate)

    def _close(self, abort: bool = False) -> None:
        """Stop and close the stream; `abort` drops what is buffered (a lost stream)."""
        global _open_streams
        stream, self._stream = self._stream, None
        if stream is not None:
            with _open_streams_lock:
                _open_streams -= 1
            try:
                stream.abort() if abort else stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - the device may already be gone
                log.debug("%s: close failed", self.describe(), exc_info=True)
