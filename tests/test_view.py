"""The web viewer in a real browser: the runtime publishes, `ddavs-rt view` serves, Chromium shows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.publish.overlay import encode_jpeg
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.publish.schema import AudioWindowInfo, FrameHeader, Latency, MaskInfo
from ddavs_rt.view.server import Viewer
from support.rtsp_server import free_port

REPO = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "ddavs-rt")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/setup.sh --dev)")


def _chromium(url: str, profile: Path, *extra: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=3000", *extra, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout


def _tiles(dom: str) -> dict[str, dict[str, int]]:
    """stream id -> {loads, seq} of each tile whose image has loaded at least once."""
    tiles = {}
    for tag in re.findall(r'<div class="tile[^"]*"[^>]*>', dom):
        attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))
        if "shown-seq" in attrs:
            tiles[attrs["stream"]] = {"loads": int(attrs["loads"]), "seq": int(attrs["shown-seq"])}
    return tiles


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _wait_for_streams(api: str, count: int, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    streams: list[dict] = []
    while time.monotonic() < deadline:
        try:
            streams = json.loads(_get(api)[1])["streams"]
        except (OSError, ValueError):
            streams = []
        if len(streams) >= count and all(s["seq"] >= 3 for s in streams):
            return streams
        time.sleep(0.3)
    raise AssertionError(f"the viewer saw {streams} after {timeout_s} s")


@needs_chromium
def test_the_page_shows_a_live_tile_per_runtime_stream_in_chromium(checkpoint: Path, tmp_path: Path) -> None:
    config = tmp_path / "two.yaml"
    config.write_text("sources:\n"
                      "  - {kind: synthetic, id: cam-a, seed: 1, fps: 8, size: 160}\n"
                      "  - {kind: synthetic, id: cam-b, seed: 2, fps: 8, size: 160}\n")
    zmq_port, http_port = free_port(), free_port()
    runtime = subprocess.Popen([EXE, "--config", str(config), "--checkpoint", str(checkpoint), "--backend", "torch",
                                "--publish", f"tcp://127.0.0.1:{zmq_port}", "--duration", "60", "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    viewer = subprocess.Popen([EXE, "view", "--connect", f"tcp://127.0.0.1:{zmq_port}",
                               "--http", f"127.0.0.1:{http_port}", "--duration", "60", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{http_port}"
    try:
        streams = _wait_for_streams(base + "/api/streams", 2, timeout_s=60)
        assert [s["id"] for s in streams] == ["cam-a", "cam-b"]
        for s in streams:
            assert s["fps"] > 0 and s["latency_ms"] > 0 and "frames_dropped" in s
        first = _tiles(_chromium(base + "/", tmp_path / "profile1", "--dump-dom"))
        time.sleep(1.5)
        second = _tiles(_chromium(base + "/", tmp_path / "profile2", "--dump-dom"))
        shot = tmp_path / "viewer.png"
        _chromium(base + "/", tmp_path / "profile3", f"--screenshot={shot}", "--window-size=1000,560")
    finally:
        viewer.terminate()
        runtime.terminate()
        viewer_out, _ = viewer.communicate(timeout=20)
        runtime.communicate(timeout=30)
    assert viewer.returncode == 0, viewer_out
    for tiles in (first, second):
        assert set(tiles) == {"cam-a", "cam-b"}
        # within one page visit each tile showed several different frames (a load per new seq)
        assert all(t["loads"] >= 2 for t in tiles.values()), tiles
    assert all(second[s]["seq"] > first[s]["seq"] for s in ("cam-a", "cam-b"))
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (560, 1000)
    assert float(image.std()) > 10  # the tiles' images are drawn, not a blank page


_T0 = time.time()


def _header(stream: str, seq: int) -> FrameHeader:
    # capture times on an exact 10 fps grid, so the viewer's rate does not depend on machine load
    return FrameHeader(stream_id=stream, seq=seq, frame_time=seq / 10, capture_wall_time=_T0 + seq / 10,
                       audio_window=AudioWindowInfo(start=0.0, end=1.0), model_id="m",
                       latency=Latency(capture_to_publish_ms=12.5), mask=MaskInfo(height=32, width=32))


def _publish_many(publisher: Publisher, streams: list[str], stop: threading.Event) -> None:
    seq = 0
    mask = np.zeros((32, 32), np.uint8)
    while not stop.is_set():
        for i, stream in enumerate(streams):
            image = np.full((32, 32, 3), (seq * 7 + i * 20) % 255, np.uint8)
            publisher.publish(_header(stream, seq), mask, encode_jpeg(image))
        seq += 1
        time.sleep(0.1)


@needs_chromium
def test_many_streams_each_get_a_tile_and_the_api_answers(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    streams = [f"cam{i:02d}" for i in range(12)]
    publisher = Publisher(endpoint)
    stop = threading.Event()
    sender = threading.Thread(target=_publish_many, args=(publisher, streams, stop))
    viewer = Viewer(endpoint, ("127.0.0.1", 0))
    try:
        host, port = viewer.start()
        sender.start()
        base = f"http://{host}:{port}"
        listed = _wait_for_streams(base + "/api/streams", 12, timeout_s=20)
        status, body, headers = _get(base + listed[0]["image"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert int(headers["X-Seq"]) >= listed[0]["seq"]
        assert _get(base + "/stream/nope.img")[0] == 404
        assert _get(base + "/stream/..%2F..%2Fetc%2Fpasswd.img")[0] == 404
        assert listed[0]["fps"] == pytest.approx(10, rel=0.05)  # from seq and capture times
        tiles = _tiles(_chromium(base + "/", tmp_path / "profile", "--dump-dom"))
    finally:
        stop.set()
        sender.join(5)
        viewer.close()
        publisher.close()
    assert set(tiles) == set(streams)
    assert all(t["loads"] >= 1 for t in tiles.values())
