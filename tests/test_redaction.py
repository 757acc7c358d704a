"""An RTSP password never leaves the process: not in logs, headers, metrics, recordings or stats."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import zmq

from ddavs_rt.config import ModelConfig, load_config
from support.rtsp_server import free_port

REPO = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "ddavs-rt")
SECRET = "secret"


def _collect(endpoint: str, stop: threading.Event, messages: list[list[bytes]]) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.subscribe(b"")  # every topic, whatever the stream
    socket.connect(endpoint)
    try:
        while not stop.is_set():
            if socket.poll(100):
                messages.append(socket.recv_multipart())
    finally:
        socket.close()
        context.term()


def test_credentials_are_redacted_everywhere(checkpoint: Path, tmp_path: Path) -> None:
    refused = free_port()  # nothing listens there
    url = f"rtsp://user:{SECRET}@127.0.0.1:{refused}/x"
    metrics_port, zmq_port = free_port(), free_port()
    record, stats = tmp_path / "rec", tmp_path / "stats.json"
    messages: list[list[bytes]] = []
    stop = threading.Event()
    collector = threading.Thread(target=_collect, args=(f"tcp://127.0.0.1:{zmq_port}", stop, messages))
    collector.start()
    process = subprocess.Popen(
        [EXE, "-vv", "--rtsp", url, "--reconnect", "forever", "--demo", "--checkpoint", str(checkpoint), "--backend", "torch",
         "--publish", f"tcp://127.0.0.1:{zmq_port}", "--metrics", f"127.0.0.1:{metrics_port}",
         "--record", str(record), "--record-rotate-s", "2", "--stats-interval", "1", "--stats-json", str(stats),
         "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    metrics_text = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the RTSP source has failed and retried at least once
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
                    metrics_text = reply.read().decode("utf-8")
            except OSError:
                continue
            if re.search(r'ddavs_reconnects_total\{stream="rtsp0"\} [1-9]', metrics_text) and len(messages) >= 5:
                break
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        stop.set()
        collector.join(10)
    assert process.returncode == 0, output[-3000:]

    # the checks below look at real material: the URL was logged (redacted), the rtsp stream is in
    # the metrics, the demo published and recorded
    assert f"rtsp://user:***@127.0.0.1:{refused}/x" in output
    assert 'ddavs_source_state{state="reconnecting",stream="rtsp0"}' in metrics_text
    assert len(messages) >= 5
    recorded = [p for p in record.rglob("*") if p.is_file()]
    assert any(p.name == "headers.jsonl" for p in recorded) and any(p.suffix == ".png" for p in recorded)
    assert stats.exists() and "rtsp0" in stats.read_text()

    assert SECRET not in output
    assert SECRET not in metrics_text
    for parts in messages:
        assert all(SECRET.encode() not in part for part in parts[:2])  # topic and header JSON
    for path in recorded:
        assert SECRET.encode() not in path.read_bytes(), path
        assert SECRET not in str(path.relative_to(record))
    assert SECRET not in stats.read_text()
