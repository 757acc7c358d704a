"""`ddavs-rt --dask`: streams spread over a real Dask cluster on loopback, one endpoint, failover.

The real parts: a `dask scheduler` and two `dask worker` processes (no nanny) bound to
127.0.0.1, the real CLI as a subprocess, a real GStreamer RTSP server, real ZeroMQ sockets
(the proxy, a subscriber), the real Prometheus endpoint. A worker is killed by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from ddavs_rt.publish.keys import client_keys, create_keys
from ddavs_rt.publish.proxy import HopPublisher, Proxy
from ddavs_rt.publish.subscriber import Subscriber
from support.dask_cluster import DaskCluster, listening_addresses
from support.rtsp_server import free_port

pytest.importorskip("distributed", reason="the cluster extra (distributed) is not installed")

SYNTHETIC = ["s0", "s1", "s2", "s3"]


def _write_site(folder: Path, checkpoint: Path, sources: list[dict]) -> Path:
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"engine": str(checkpoint), "backend": "torch", "overlay": False,
                                    "stats_interval_s": 5.0, "sources": sources}))
    return site


def _cli(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ddavs_rt.cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_until(predicate, timeout: float, what: str, *logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"{what} within {timeout:.0f} s\n{tails}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_worker_moves_its_shard_and_every_stream_publishes_again_through_one_endpoint(
        tmp_path, checkpoint, rtsp_server):
    # each worker advertises two units; each shard needs one, so the survivor can hold both
    cluster = DaskCluster(tmp_path, workers=2, threads=3, resources="GPU=2")
    publish, metrics_port = free_port(), free_port()
    sources = [{"kind": "synthetic", "id": s, "fps": 5, "seed": i + 1} for i, s in enumerate(SYNTHETIC)]
    sources.append({"kind": "media", "id": "cam", "location": rtsp_server.url, "read_timeout_s": 5.0})
    site = _write_site(tmp_path, checkpoint, sources)
    log = tmp_path / "cli.log"
    arrivals: dict[str, list[tuple[float, int, int]]] = defaultdict(list)  # topic -> (monotonic, epoch, seq)
    stop = threading.Event()
    subscriber = Subscriber(f"tcp://127.0.0.1:{publish}")

    def listen() -> None:
        while not stop.is_set():
            message = subscriber.recv(0.2)
            if message is not None:
                arrivals[message.header.stream_id].append((time.monotonic(), message.header.epoch, message.header.seq))

    listener = threading.Thread(target=listen, daemon=True)
    cli = None
    try:
        cluster.start()
        # every Dask process listens on loopback only (the scheduler's HTTP port included)
        for pid in cluster.pids():
            addresses = listening_addresses(pid)
            assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), (pid, addresses)
        listener.start()
        cli = _cli(["--config", str(site), "--dask", cluster.address, "--shards", "2", "--resources", "GPU=1",
                    "--engine-threads", "1",
                    "--publish", f"tcp://127.0.0.1:{publish}", "--metrics", f"127.0.0.1:{metrics_port}",
                    "--duration", "600"], log)
        everyone = [*SYNTHETIC, "cam"]
        _wait_until(lambda: all(len(arrivals[s]) >= 3 for s in everyone), 240,
                    "not every stream published through the one endpoint", log)
        assert all(epoch == 0 for s in everyone for _, epoch, _ in arrivals[s])
        killed_at = time.monotonic()
        cluster.kill_worker(0)
        survivor = cluster.worker_address(1)
        _wait_until(lambda: all(any(t > killed_at + 1.0 for t, _, _ in arrivals[s]) for s in everyone), 240,
                    "not every stream published again after the worker was killed", log)
        # the killed worker's shard restarted: its streams came back with epoch 1
        restarted = {s for s in everyone if any(epoch == 1 for _, epoch, _ in arrivals[s])}
        assert restarted, "no stream came back with a new epoch"
        assert restarted != set(everyone), "the surviving worker's shard restarted too"
        # one endpoint serves every shard's counters, all on the survivor once the restarted
        # shard's first report is in: reports come every second, so frames can arrive first
        def scrape() -> str:
            return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read().decode()

        def processed(text: str) -> list[str]:
            return [line for line in text.splitlines() if line.startswith("ddavs_frames_processed_total{")]

        def all_on_survivor() -> bool:
            lines = processed(scrape())
            return all(any(f'stream="{s}"' in line and f'worker="{survivor}"' in line for line in lines)
                       for s in everyone)

        _wait_until(all_on_survivor, 60, "the endpoint did not show every stream on the surviving worker", log)
        text = scrape()
        for s in everyone:  # and no stream is counted on the killed worker any more
            assert not any(f'stream="{s}"' in line and f'worker="{survivor}"' not in line
                           for line in processed(text)), (s, processed(text))
        epochs = [line for line in text.splitlines() if line.startswith("ddavs_cluster_shard_epoch{")]
        assert len(epochs) == 2 and all(f'worker="{survivor}"' in line for line in epochs), epochs
        os.kill(cli.pid, signal.SIGTERM)
        assert cli.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        stop.set()
        listener.join(timeout=5)
        subscriber.close()
        if cli is not None and cli.poll() is None:
            os.kill(cli.pid, signal.SIGKILL)
            cli.wait(timeout=30)
        cluster.stop()
    # never published twice at once: per stream, epochs only rise in arrival order, and within
    # an epoch seq only rises (a second live copy would interleave an old epoch or repeat seqs)
    for stream, seen in arrivals.items():
        epochs = [epoch for _, epoch, _ in seen]
        assert epochs == sorted(epochs), f"{stream}: epochs interleaved {epochs}"
        for epoch in set(epochs):
            seqs = [seq for _, e, seq in seen if e == epoch]
            assert all(b > a for a, b in zip(seqs, seqs[1:])), f"{stream} epoch {epoch}: seq {seqs}"


def test_shards_whose_streams_fault_end_with_their_fault_class_and_are_not_retried(tmp_path, checkpoint):
    refused = f"rtsp://127.0.0.1:{free_port()}/x"  # nothing listens: a transient fault, given up after 3 s
    site = _write_site(tmp_path, checkpoint, [
        {"kind": "media", "id": "gone", "location": str(tmp_path / "no.mp4")},  # permanent: no such file
        {"kind": "media", "id": "down", "location": refused, "reconnect_timeout_s": 3},
    ])
    log = tmp_path / "cli.log"
    cli = _cli(["--config", str(site), "--dask", "local:1", "--shards", "2", "--engine-threads", "1",
                "--publish", f"tcp://127.0.0.1:{free_port()}"], log)
    try:
        code = cli.wait(timeout=240)
    finally:
        if cli.poll() is None:
            os.kill(cli.pid, signal.SIGKILL)
            cli.wait(timeout=30)
    text = log.read_text()
    assert code == 2, text[-3000:]  # the worst of the shards' codes: 2 (permanent) over 1 (transient)
    assert "shard 0 ended with a permanent fault" in text and "no.mp4" in text, text[-3000:]
    assert "shard 1 ended with a transient fault" in text, text[-3000:]
    assert "restarted" not in text  # neither shard was run again


def test_without_dask_nothing_of_dask_is_imported(tmp_path, checkpoint):
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('DASK-MODULES', sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('dask', 'distributed'))))\n"
        "from ddavs_rt.cli import main\n"
        f"sys.exit(main(['--demo', '--checkpoint', {str(checkpoint)!r}, '--backend', 'torch', '--duration', '2',"
        f" '--publish', 'tcp://127.0.0.1:{free_port()}']))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "final [demo]" in run.stdout  # the runtime really ran
    assert "DASK-MODULES []" in run.stdout, run.stdout[-2000:]


@pytest.mark.parametrize("flag, value, expected", [
    ("--dask", "10.0.0.5", "is not an address"),
    ("--dask", "local:0", "local:N needs"),
    ("--resources", "GPU", "NAME=AMOUNT"),
])
def test_bad_cluster_flags_fail_with_one_line(flag, value, expected, tmp_path, checkpoint):
    args = ["--demo", "--checkpoint", str(checkpoint), "--dask", "local:1", flag, value]
    run = subprocess.run([sys.executable, "-m", "ddavs_rt.cli", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr


def test_curve_covers_the_hop_and_the_endpoint(tmp_path):
    create_keys(tmp_path / "keys")
    proxy = Proxy("tcp://127.0.0.1:*", curve_keys=tmp_path / "keys")
    proxy.start()
    try:
        admitted = Subscriber(proxy.publish_endpoint, curve=client_keys(tmp_path / "keys"))
        stranger = Subscriber(proxy.publish_endpoint)  # no keys: the XPUB side must not admit it
        good = HopPublisher(proxy.hop_endpoint, curve=proxy.hop_client)
        rogue = HopPublisher(proxy.hop_endpoint)  # plain: the hop must not take its messages
        try:
            assert good.wait_for_subscriber(20), "the subscription never crossed the CURVE hop"
            from ddavs_rt.publish.schema import FrameHeader, encode_message
            import numpy as np

            def message(stream: str, seq: int) -> list[bytes]:
                header = FrameHeader(stream_id=stream, seq=seq, frame_time=0.0, capture_wall_time=0.0,
                                     audio_window={"start": 0, "end": 1}, model_id="m",
                                     mask={"height": 2, "width": 2})
                return encode_message(header, np.zeros((2, 2), np.uint8))

            got: list[str] = []
            deadline = time.monotonic() + 20
            seq = 0
            while not got and time.monotonic() < deadline:
                good.send(message("good", seq))
                rogue.send(message("rogue", seq))
                seq += 1
                frame = admitted.recv(0.2)
                if frame is not None:
                    got.append(frame.header.stream_id)
            assert got == ["good"]
            for _ in range(10):  # more from both; only the keyed shard's messages arrive
                good.send(message("good", seq))
                rogue.send(message("rogue", seq))
                seq += 1
            received = []
            while (frame := admitted.recv(1.0)) is not None:
                received.append(frame.header.stream_id)
            assert received and set(received) == {"good"}
            assert stranger.recv(0.5) is None
        finally:
            for socket in (admitted, stranger, good, rogue):
                socket.close()
    finally:
        proxy.close()
