"""CURVE keys: `ddavs-rt keys` files, and a publisher that admits only authorised clients."""

from __future__ import annotations

import re
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from ddavs_rt.cli import main
from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.curve import CurveClient
from ddavs_rt.publish.keys import AuthorisedPublisher, client_keys, create_keys, server_keys
from ddavs_rt.publish.schema import AudioWindowInfo, FrameHeader, MaskInfo
from ddavs_rt.publish.subscriber import Subscriber
from support.rtsp_server import free_port

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def _header(seq: int) -> FrameHeader:
    return FrameHeader(stream_id="cam", seq=seq, frame_time=seq * 0.04, capture_wall_time=time.time(),
                       audio_window=AudioWindowInfo(start=0.0, end=1.0), model_id="m",
                       mask=MaskInfo(height=4, width=4))


def test_keys_command_writes_pairs_private_secrets_and_the_authorised_folder(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    assert main(["keys", "--out", str(out)]) == 0
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret", "authorized_clients/client.key"):
        assert (out / name).is_file(), name
    assert stat.S_IMODE((out / "server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "client.key_secret").stat().st_mode) == 0o600
    assert (out / "authorized_clients" / "client.key").read_bytes() == (out / "client.key").read_bytes()
    server_before = (out / "server.key_secret").read_bytes()
    # adding a client keeps the server pair; an existing client is not overwritten silently
    create_keys(out, ["second"])
    assert (out / "server.key_secret").read_bytes() == server_before
    assert {p.name for p in (out / "authorized_clients").iterdir()} == {"client.key", "second.key"}
    assert main(["keys", "--out", str(out)]) == 2
    with pytest.raises(DdavsError, match="missing"):
        client_keys(tmp_path / "nowhere")


def _listen(subscriber_args: dict, stop: threading.Event, received: list) -> None:
    with Subscriber(**subscriber_args) as subscriber:
        while not stop.is_set():
            frame = subscriber.recv(0.1)
            if frame is not None:
                received.append(frame.header.seq)


def test_only_an_authorised_subscriber_receives(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_keys(keys)
    server, authorised = server_keys(keys)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stranger_public, stranger_secret = zmq.curve_keypair()  # knows the server key, is not authorised
    listeners = {
        "authorised": {"curve": client_keys(keys)},
        "stranger": {"curve": CurveClient(server.public_key, stranger_public, stranger_secret)},
        "plaintext": {"curve": None},
    }
    publisher = AuthorisedPublisher(endpoint, server, authorised)
    stop = threading.Event()
    received: dict[str, list[int]] = {name: [] for name in listeners}
    threads = [threading.Thread(target=_listen, args=({"endpoint": endpoint, **kw}, stop, received[name]))
               for name, kw in listeners.items()]
    try:
        for thread in threads:
            thread.start()
        mask = np.zeros((4, 4), np.uint8)
        seq = 0
        deadline = time.monotonic() + 20
        # keep sending until the authorised client has had plenty (the strangers had every chance)
        while len(received["authorised"]) < 20 and time.monotonic() < deadline:
            publisher.publish(_header(seq), mask)
            seq += 1
            time.sleep(0.02)
        for _ in range(20):  # and some more after that
            publisher.publish(_header(seq), mask)
            seq += 1
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        publisher.close()
    assert len(received["authorised"]) >= 20
    assert received["stranger"] == []
    assert received["plaintext"] == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from ddavs_rt.config import ModelConfig, load_config
    from ddavs_rt.model.checkpoint import save_checkpoint
    from ddavs_rt.model.ddavs import build_model

    torch.manual_seed(0)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "model" / "ddavs-tiny.yaml", ModelConfig)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(folder, build_model(cfg).eval(), cfg)
    return folder


def test_runtime_with_curve_keys_serves_the_authorised_subscribe_command_only(checkpoint: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "ddavs-rt")
    keys, other = tmp_path / "keys", tmp_path / "other"
    create_keys(keys)
    create_keys(other)  # a client pair the publisher never authorised ...
    shutil.copyfile(keys / "server.key", other / "server.key")  # ... that knows the right server key
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    runtime = subprocess.Popen([exe, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch", "-q",
                                "--publish", endpoint, "--curve-keys", str(keys), "--duration", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    subscribe = [exe, "subscribe", "--connect", endpoint, "-q"]
    try:
        outsider = subprocess.Popen([*subscribe, "--curve-keys", str(other), "--timeout", "12"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        insider = subprocess.run([*subscribe, "--curve-keys", str(keys), "--count", "3", "--timeout", "60"],
                                 capture_output=True, text=True, timeout=120)
        outsider_out, _ = outsider.communicate(timeout=60)
    finally:
        runtime.terminate()
        runtime_out, _ = runtime.communicate(timeout=30)
    assert runtime.returncode == 0, runtime_out
    assert insider.returncode == 0, insider.stdout + insider.stderr
    assert len(re.findall(r"^demo seq=\d+", insider.stdout, re.M)) == 3
    assert outsider.returncode == 1, outsider_out
    assert "seq=" not in outsider_out and "no message" in outsider_out
