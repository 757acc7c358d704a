"""`ddavs-rt subscribe` in its own process, through ddavs_rt.cli.main, against a real publisher."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ddavs_rt.publish.overlay import encode_jpeg, render_overlay
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.publish.schema import FrameHeader

CLI = [sys.executable, "-c", "import sys; from ddavs_rt.cli import main; sys.exit(main(sys.argv[1:]))"]


def _frame(seq: int) -> tuple[FrameHeader, np.ndarray, bytes]:
    mask = np.zeros((24, 32), np.uint8)
    mask[seq % 20 : seq % 20 + 4, 4:12] = 1
    header = FrameHeader(
        stream_id="demo",
        seq=seq,
        frame_time=seq / 25,
        capture_wall_time=time.time(),
        audio_window={"start": seq / 25 - 1, "end": seq / 25, "gap_fraction": 0.1, "complete": False},
        latency={"infer_ms": 12.5, "capture_to_publish_ms": 30.25},
        model_id="test",
        mask={"height": 24, "width": 32},
        classes=[{"class_id": 1, "name": "guitar", "pixels": int(mask.sum()), "score": 0.875}],
        ground_truth={"iou": 0.5},
    )
    image = np.full((48, 64, 3), 90, np.uint8)
    return header, mask, encode_jpeg(render_overlay(image, mask))


def test_subscribe_prints_and_saves_masks_overlays_and_headers(tmp_path: Path) -> None:
    out = tmp_path / "saved"
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = subprocess.Popen(
            [*CLI, "subscribe", "--connect", pub.endpoint, "--save", str(out), "--count", "3", "--timeout", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seq = 0
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # publish until it has 3
            pub.publish(*_frame(seq))
            seq += 1
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 3
    assert "demo seq=" in lines[0] and "to-publish=30.2ms (infer 12.5)" in lines[0]
    assert "guitar:" in lines[0] and "@0.88" in lines[0] and "audio_gap=10%" in lines[0] and "iou=0.500" in lines[0]

    headers = [json.loads(line) for line in (out / "headers.jsonl").read_text().splitlines()]
    assert len(headers) == 3 and all(h["schema"] == "ddavs-rt/frame" for h in headers)
    seqs = [h["seq"] for h in headers]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    for s in seqs:
        mask = cv2.imread(str(out / "demo" / f"{s:08d}_mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, _frame(s)[1] * 255)
        overlay = cv2.imread(str(out / "demo" / f"{s:08d}_overlay.jpg"))
        assert overlay is not None and overlay.shape == (48, 64, 3)
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_subscribe_times_out_with_status_1_and_rejects_a_bad_endpoint() -> None:
    with Publisher("tcp://127.0.0.1:*") as pub:  # bound, but never sends
        quiet = subprocess.run(
            [*CLI, "subscribe", "--connect", pub.endpoint, "--timeout", "0.5"], capture_output=True, text=True, timeout=60
        )
    assert quiet.returncode == 1 and "no message for 0.5 s" in quiet.stdout
    bad = subprocess.run([*CLI, "subscribe", "--connect", "udp5://x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("ddavs-rt: error: bad endpoint") and len(bad.stderr.strip().splitlines()) == 1
