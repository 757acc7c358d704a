"""A real RTSP server for tests: GStreamer's RTSP server serving H.264 video + AAC audio.

Two halves in one file:
- run as a script with Debian's `/usr/bin/python3` (which has `gi`; the project's virtual
  environment does not): `python3 rtsp_server.py --port 8554 --path /test` serves
  rtsp://127.0.0.1:<port>/<path> and prints "READY" once listening;
- imported from the tests: `RtspServer(port, path)` starts that script as a child process,
  `stop()` kills it by its PID and `start()` starts it again on the same port (reconnect tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()


def system_rtsp_available() -> str | None:
    """None when the server can run here, else the reason it cannot (for a skip)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (install python3-gi)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"],
        capture_output=True, text=True, timeout=60,
    )
    if probe.returncode != 0:
        return "GStreamer RTSP server bindings are missing (install gir1.2-gst-rtsp-server-1.0 python3-gi)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServer:
    """The script as a child process on 127.0.0.1:`port`; restartable on the same port."""

    def __init__(self, port: int, path: str = "/test", fps: int = 25, width: int = 160, height: int = 96) -> None:
        self.port, self.path, self.fps, self.width, self.height = port, path, fps, width, height
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--path", self.path,
             "--fps", str(self.fps), "--width", str(self.width), "--height", str(self.height)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.strip() == "READY":
                return
        output = self.process.stdout.read() if self.process.poll() is not None else ""
        self.stop()
        raise RuntimeError(f"RTSP server did not start on port {self.port}: {output.strip()[-500:]}")

    def stop(self) -> None:
        """Kill the server by its PID (SIGKILL: a crash, as a camera that loses power)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> "RtspServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int, path: str, fps: int, width: int, height: int) -> None:  # pragma: no cover - system python
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 "
        f"audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=48000,channels=1 "
        f"! audioconvert ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"could not listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


def main() -> None:  # pragma: no cover - system python
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/test")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=96)
    args = parser.parse_args()
    serve(args.port, args.path, args.fps, args.width, args.height)


if __name__ == "__main__":
    main()
