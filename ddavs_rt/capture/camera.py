"""OpenCV camera source: a local camera by index (0, 1, ...) or device path (/dev/video0).

Each frame is stamped with the monotonic clock right after `grab()` returns (the closest the
application gets to capture time), then decoded with `retrieve()` and converted to RGB. The
camera's nominal fps is a request, not a fact: `video_fps` reports the measured rate.

A camera that does not exist (or may not be opened) at start is a permanent fault. A camera
that stops delivering frames is an outage: it is released and reopened under the source's
`ReconnectPolicy` (a replugged USB camera comes back; until then every failure is transient),
and the source ends with a fault when the policy gives up.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import cv2
import numpy as np

from ddavs_rt.capture.base import Source
from ddavs_rt.capture.faults import TransientSourceError
from ddavs_rt.errors import SourceError

log = logging.getLogger(__name__)

LIST_HINT = "list devices with `v4l2-ctl --list-devices` or `ls /dev/video*`, and check permissions (the 'video' group)"


class CameraSource(Source):
    """Frames from a local camera through OpenCV, at a requested size and frame rate."""

    def __init__(
        self,
        device: int | str = 0,
        stream_id: str = "camera",
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        max_failed_reads: int = 50,
        **queue_options,
    ) -> None:
        super().__init__(stream_id, **queue_options)
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.max_failed_reads = max_failed_reads
        self._capture: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return f"camera {self.device}"

    def _missing_reason(self) -> str | None:
        """Why the device cannot be used, when the file system already tells (Linux)."""
        if not sys.platform.startswith("linux"):
            return None
        path = self.device if isinstance(self.device, str) else f"/dev/video{self.device}"
        if not path.startswith("/dev/"):
            return None
        if not os.path.exists(path):
            return "no such device"
        if not os.access(path, os.R_OK | os.W_OK):
            return "permission denied"
        return None

    def _open(self) -> None:
        self._connect(reopening=False)

    def _reopen(self) -> None:
        self._connect(reopening=True)

    def _connect(self, reopening: bool) -> None:
        # At start a missing device is a typo (permanent); once it has worked, it may be replugged.
        kind = TransientSourceError if reopening else SourceError
        reason = self._missing_reason()
        if reason is not None:
            raise kind(f"camera {self.device} could not be opened: {reason}; {LIST_HINT}")
        capture = cv2.VideoCapture(self.device)
        if not capture.isOpened():
            capture.release()
            raise kind(f"camera {self.device} could not be opened: the driver refused it or it is busy; {LIST_HINT}")
        if self.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the freshest frame, not a driver backlog
        self._capture = capture
        log.info(
            "camera %s: opened at %dx%d, %.1f fps requested", self.device,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            capture.get(cv2.CAP_PROP_FPS),
        )

    def _run(self) -> None:
        failures = 0
        reopened_at: int | None = None  # frames emitted when the camera was last reopened
        while not self.stopping.is_set():
            capture = self._capture
            assert capture is not None
            if not capture.grab():
                failures += 1
                if failures >= self.max_failed_reads:
                    self._close()
                    failures = 0
                    lost = (f"camera {self.device} stopped delivering frames ({self.max_failed_reads} failed reads); "
                            "check the cable and that no other program uses it")
                    # reopened but never delivered: the same outage goes on
                    continuing = reopened_at is not None and reopened_at == self.health().video_frames
                    if not self._reconnect(self._reopen, lost, continuing=continuing):
                        return
                    reopened_at = self.health().video_frames
                    continue
                self._sleep(0.02)
                continue
            t = self.clock()
            wall = time.time()
            ok, bgr = capture.retrieve()
            if not ok or bgr is None:
                failures += 1
                with self._lock:
                    self.decode_errors += 1
                continue
            failures = 0
            rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # [H, W, 3] uint8
            self._emit_video(t, rgb, wall_time=wall)

    def _close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
