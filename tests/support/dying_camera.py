"""A stand-in for `cv2.VideoCapture` that dies: a camera unplugged or losing power.

A real camera cannot be made to die on this machine (no /dev/video), so this double replaces
OpenCV's capture class at its boundary and nothing else. `dying_camera(frames, interval_s)`
returns a fresh class: its first `frames` grabs succeed (one every `interval_s`), then every grab
fails and every reopen fails. The class attributes `frames` and `alive` show what happened.
"""

from __future__ import annotations

import time

import numpy as np


def dying_camera(frames: int, interval_s: float) -> type:
    class DyingCamera:
        alive = True

        def __init__(self, _device: object) -> None:
            self._open = DyingCamera.alive

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return self._open

        def set(self, *_args: object) -> bool:
            return True

        def get(self, _prop: int) -> float:
            return 0.0

        def grab(self) -> bool:
            if DyingCamera.frames <= 0:
                DyingCamera.alive = False
                return False
            DyingCamera.frames -= 1
            time.sleep(interval_s)
            return True

        def retrieve(self):
            return True, np.full((96, 160, 3), 80, dtype=np.uint8)

        def release(self) -> None:
            pass

    DyingCamera.frames = frames
    return DyingCamera
