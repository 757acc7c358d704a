"""The runtime's Prometheus endpoint, scraped over HTTP while the demo runs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.errors import DdavsError
from ddavs_rt.runtime.metrics import parse_host_port
from support.rtsp_server import free_port

REPO = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "ddavs-rt")


def scrape(url: str, timeout_s: float = 60.0) -> dict[str, float]:
    """Sample name with labels -> value, waiting for the endpoint to come up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode("utf-8")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_counters_and_histograms_increase_while_the_demo_runs(checkpoint: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    process = subprocess.Popen(
        [EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch", "--duration", "40", "-q",
         "--publish", f"tcp://127.0.0.1:{free_port()}", "--metrics", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        first = scrape(url)
        while first.get('ddavs_frames_processed_total{stream="demo"}', 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            first = scrape(url)
        time.sleep(2.0)
        second = scrape(url)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    processed = 'ddavs_frames_processed_total{stream="demo"}'
    latency = 'ddavs_capture_to_sent_seconds_count{stream="demo"}'
    assert first[processed] >= 3 and second[processed] > first[processed]
    assert second[latency] > first[latency] and second[latency] == second[processed]
    assert second['ddavs_capture_to_sent_seconds_bucket{le="+Inf",stream="demo"}'] == second[latency]
    assert second["ddavs_batch_size_count"] > first["ddavs_batch_size_count"] >= 1
    assert second["ddavs_batch_size_sum"] >= second["ddavs_batch_size_count"]  # at least one frame a batch
    assert second["ddavs_inference_seconds_count"] == second["ddavs_batch_size_count"]
    for name in ("ddavs_frames_dropped_total", "ddavs_publisher_dropped_total", "ddavs_audio_warmup_windows_total",
                 "ddavs_audio_incomplete_windows_total", "ddavs_audio_ring_gaps_total",
                 "ddavs_microphone_overflows_total", "ddavs_engine_failed_frames_total", "ddavs_reconnects_total"):
        assert f'{name}{{stream="demo"}}' in second, name
    # The first second of a stream is warm-up (its windows reach before the first audio), not a gap:
    assert second['ddavs_audio_warmup_windows_total{stream="demo"}'] >= 1
    assert second['ddavs_audio_incomplete_windows_total{stream="demo"}'] == 0
    assert second['ddavs_engine_failed_frames_total{stream="demo"}'] == 0
    assert second['ddavs_stream_faulted{stream="demo"}'] == 0.0
    assert second['ddavs_source_state{state="running",stream="demo"}'] == 1.0
    assert second['ddavs_source_state{state="error",stream="demo"}'] == 0.0


def test_bad_metrics_addresses_are_one_line_errors(checkpoint: Path) -> None:
    assert parse_host_port("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_host_port(":0") == ("127.0.0.1", 0)
    for bad in ("9100", "host:port", "127.0.0.1:70000"):
        with pytest.raises(DdavsError, match="HOST:PORT"):
            parse_host_port(bad)
    result = subprocess.run([EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch", "-q",
                             "--metrics", "localhost"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "ddavs-rt: error: --metrics 'localhost' is not HOST:PORT, e.g. 127.0.0.1:9100"
