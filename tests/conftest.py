"""Shared fixtures for the real-parts capture tests (helpers live in tests/support/).

- `rtsp_server`: a GStreamer RTSP server (H.264 + AAC) on a free loopback port, stopped by PID.
- `pulse_server`: a private PulseAudio daemon with a null sink, PULSE_SERVER exported.
- `checkpoint`: a ddavs-tiny checkpoint folder with seeded random weights (made once per session).
Each skips with the missing package named only when the system binaries are absent; CI
installs them (`scripts/setup.sh --dev`), so there they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.pulse import PulseAudioServer, pulse_available
from support.rtsp_server import RtspServer, free_port, system_rtsp_available


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    reason = system_rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    server = RtspServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseAudioServer]:
    reason = pulse_available()
    if reason is not None:
        pytest.skip(reason)
    server = PulseAudioServer(tmp_path_factory.mktemp("pulse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ddavs_rt.engine.random_weights import write_random_checkpoint

    tiny = Path(__file__).resolve().parents[1] / "configs" / "model" / "ddavs-tiny.yaml"
    return write_random_checkpoint(tiny, tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(autouse=True)
def _grad_mode_is_left_as_found() -> Iterator[None]:
    """A test (or the code it calls in-process) that switches autograd off for the whole process
    breaks every later training test with 'does not require grad'; fail the test that did it."""
    import torch

    before = torch.is_grad_enabled()
    yield
    after = torch.is_grad_enabled()
    torch.set_grad_enabled(before)
    assert after == before, "this test left torch's grad mode switched off (torch.set_grad_enabled leaked)"
