"""Real ZeroMQ on loopback: a publisher and subscribers in separate processes exchange messages.

Endpoints are tcp://127.0.0.1:* (the OS picks a free port; the publisher reports it). Every
receive has a timeout; sockets have linger 0; contexts are closed in teardown. The slow joiner
(messages sent before a subscription arrives are lost) is handled by publishing until the
first message is received, never by sleeping.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest
import zmq

from ddavs_rt.publish.curve import CurveClient, CurveServer
from ddavs_rt.publish.errors import PublishError
from ddavs_rt.publish.overlay import encode_jpeg
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.publish.schema import FrameHeader, encode_message
from ddavs_rt.publish.subscriber import Subscriber

SPAWN = mp.get_context("spawn")
TIMEOUT = 20.0  # generous bound for anything to arrive on a loaded 2-core machine


def _header(seq: int, stream: str = "cam1") -> FrameHeader:
    return FrameHeader(
        stream_id=stream,
        seq=seq,
        frame_time=seq / 25,
        capture_wall_time=1_790_000_000.0 + seq / 25,
        audio_window={"start": seq / 25 - 1, "end": seq / 25},
        model_id="test",
        mask={"height": 16, "width": 16, "encoding": "png-class", "num_classes": 8},
        classes=[{"class_id": seq % 8, "name": f"c{seq % 8}", "pixels": 16, "score": 0.5}],
    )


def _mask(seq: int) -> np.ndarray:
    mask = np.zeros((16, 16), np.uint8)
    mask[seq % 16, :] = seq % 8  # row and class depend on seq: a wrong frame is visible
    return mask


def _publisher_process(endpoints, stop, stream: str) -> None:
    with Publisher("tcp://127.0.0.1:*") as pub:
        endpoints.put(pub.endpoint)
        seq = 0
        while not stop.is_set() and seq < 100_000:
            pub.publish(_header(seq, stream), _mask(seq), b"")
            seq += 1
            time.sleep(0.002)


@pytest.fixture
def publisher_process():
    endpoints, stop = SPAWN.Queue(), SPAWN.Event()
    proc = SPAWN.Process(target=_publisher_process, args=(endpoints, stop, "cam7"), daemon=True)
    proc.start()
    try:
        yield endpoints.get(timeout=TIMEOUT)
    finally:
        stop.set()
        proc.join(timeout=TIMEOUT)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


def test_messages_from_another_process_arrive_in_order_and_decode(publisher_process: str) -> None:
    with Subscriber(publisher_process) as sub:
        first = sub.recv(TIMEOUT)  # the slow joiner: wait for the first message
        assert first is not None
        frames = [sub.recv(TIMEOUT) for _ in range(20)]
    assert all(f is not None for f in frames)
    seqs = [f.header.seq for f in frames]
    assert seqs == list(range(first.header.seq + 1, first.header.seq + 21))
    for frame in frames:
        assert frame.header.stream_id == "cam7"
        np.testing.assert_array_equal(frame.mask, _mask(frame.header.seq))
    assert sub.missed == 0 and sub.malformed == 0


def _until_first(pub: Publisher, sub: Subscriber, make) -> int:
    """Publish make(i) until `sub` receives something; returns how many were sent."""
    for i in range(10_000):
        pub.send(make(i))
        if sub.recv(0.01) is not None:
            return i + 1
    raise AssertionError("no message arrived")


@pytest.fixture
def publisher():
    with Publisher("tcp://127.0.0.1:*", send_hwm=50) as pub:
        yield pub


def test_a_new_epoch_counts_as_a_restart_and_gaps_within_an_epoch_as_missed(publisher: Publisher) -> None:
    def send(epoch: int, seq: int) -> None:
        publisher.publish(_header(seq).model_copy(update={"epoch": epoch}), _mask(seq), b"")

    with Subscriber(publisher.endpoint) as sub:
        sent = _until_first(publisher, sub, lambda i: encode_message(_header(i), _mask(i), b""))
        for seq in range(sent, sent + 5):  # epoch 0 goes on
            send(0, seq)
        for seq in (0, 1, 2, 5, 6):  # the publisher restarted (epoch 1); 3 and 4 are lost
            send(1, seq)
        while (frame := sub.recv(TIMEOUT)) is not None and (frame.header.epoch, frame.header.seq) != (1, 6):
            pass
    assert frame is not None, "the last message never arrived"
    assert sub.restarts == 1  # seq back to 0 with a higher epoch: a restart
    assert sub.missed == 2


def test_topic_filtering_delivers_only_the_subscribed_stream(publisher: Publisher) -> None:
    from ddavs_rt.publish.schema import encode_message

    with Subscriber(publisher.endpoint, topics=["ddavs/cam2"]) as sub:
        _until_first(publisher, sub, lambda i: encode_message(_header(i, "cam2"), _mask(i)))
        for seq in range(10):
            for stream in ("cam1", "cam2", "cam22"):
                publisher.publish(_header(1000 + seq, stream), _mask(seq))
        got = []
        while (frame := sub.recv(1.0)) is not None:
            got.append((frame.header.stream_id, frame.header.seq))
    # "ddavs/cam2" is a prefix, so cam22 comes too (ZeroMQ topics are prefixes); cam1 never.
    assert [s for s, _ in got].count("cam2") == 10 and [s for s, _ in got].count("cam22") == 10
    assert all(stream != "cam1" for stream, _ in got)


def test_latest_only_keeps_the_newest_frame_per_stream(publisher: Publisher) -> None:
    from ddavs_rt.publish.schema import encode_message

    with Subscriber(publisher.endpoint, latest_only=True) as sub:
        _until_first(publisher, sub, lambda i: encode_message(_header(i, "warm"), _mask(i)))
        while sub.recv(0.2) is not None:  # drop any warm-up stragglers
            pass
        skipped_before = sub.skipped
        for seq in range(10):
            publisher.publish(_header(100 + seq, "cam1"), _mask(seq))
            publisher.publish(_header(200 + seq, "cam2"), _mask(seq))
        time.sleep(0.5)  # let all 20 reach the subscriber's queue (not a timing assertion)
        first, second = sub.recv(TIMEOUT), sub.recv(TIMEOUT)
        assert sub.recv(0.3) is None
    assert {(first.header.stream_id, first.header.seq), (second.header.stream_id, second.header.seq)} == {
        ("cam1", 109),
        ("cam2", 209),
    }
    assert sub.skipped - skipped_before == 18


def _fast_subscriber(endpoint: str, results, total: int) -> None:
    with Subscriber(endpoint, receive_hwm=100_000) as sub:
        seqs = []
        results.put("joined" if sub.recv(TIMEOUT) is not None else "never joined")
        while len(seqs) < total and (frame := sub.recv(5.0)) is not None:
            if frame.header.stream_id == "load":
                seqs.append(frame.header.seq)
        results.put(seqs)


@pytest.mark.parametrize("policy", ["slow-only", "all"])
def test_a_subscriber_that_never_reads_never_blocks_the_publisher(policy: str) -> None:
    from ddavs_rt.publish.schema import encode_message

    total = 300
    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", send_hwm=5, drop_policy=policy)
    slow = ctx.socket(zmq.SUB)  # never reads; its queues and the kernel's fill up
    slow.linger = 0
    slow.rcvhwm = 5
    slow.subscribe(b"ddavs/")
    slow.connect(pub.endpoint)
    results = SPAWN.Queue()
    fast = SPAWN.Process(target=_fast_subscriber, args=(pub.endpoint, results, total), daemon=True)
    fast.start()
    try:
        assert pub.wait_for_subscriber(TIMEOUT)
        warm = encode_message(_header(0, "warm"), _mask(0))
        deadline = time.monotonic() + TIMEOUT
        while results.empty() and time.monotonic() < deadline:  # until the fast one is in
            pub.send(warm)
            time.sleep(0.01)
        assert results.get(timeout=TIMEOUT) == "joined"
        sent0, dropped0 = pub.sent, pub.dropped
        noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
        payload = encode_jpeg(noise, quality=100)  # ~250 kB: fills the kernel's socket buffers quickly
        for seq in range(total):
            pub.publish(_header(seq, "load"), _mask(seq), payload)  # returns at once, every time
            time.sleep(0.003)
        fast_seqs = results.get(timeout=TIMEOUT + 10)
    finally:
        fast.join(timeout=TIMEOUT)
        if fast.is_alive():
            fast.kill()
        slow_got = 0
        while slow.poll(200):
            slow.recv_multipart()
            slow_got += 1
        slow.close()
        ctx.term()
        pub.close()
    sent, dropped = pub.sent - sent0, pub.dropped - dropped0
    assert sent + dropped == total
    assert dropped > 0, "the stalled subscriber's misses were not counted"
    assert slow_got < total
    if policy == "slow-only":
        assert fast_seqs == list(range(total)), "a subscriber that keeps up must miss nothing"
    else:
        assert dropped > total // 2  # the stalled one holds everything back: exact accounting
        assert len(fast_seqs) == sent  # the fast one got exactly what was not counted as dropped


def test_bad_endpoint_and_address_in_use_are_one_line_errors(publisher: Publisher) -> None:
    with pytest.raises(PublishError, match="address is in use"):
        Publisher(publisher.endpoint)
    with pytest.raises(PublishError, match=r"bad endpoint 'udp5://x'.*tcp://HOST:PORT"):
        Publisher("udp5://x")
    with pytest.raises(PublishError, match="no interface"):
        Publisher("tcp://203.0.113.9:5555")
    with pytest.raises(PublishError, match="bad endpoint"):
        Subscriber("nonsense")


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_encrypted_stream_needs_the_servers_public_key() -> None:
    from ddavs_rt.publish.schema import encode_message

    server = CurveServer.generate()
    with Publisher("tcp://127.0.0.1:*", curve=server) as pub:
        with Subscriber(pub.endpoint, curve=CurveClient(server.public_key)) as good:
            _until_first(pub, good, lambda i: encode_message(_header(i), _mask(i)))
        wrong = CurveClient(CurveServer.generate().public_key)
        with Subscriber(pub.endpoint, curve=wrong) as bad, Subscriber(pub.endpoint) as plain:
            for seq in range(100):
                pub.publish(_header(seq), _mask(seq))
                assert bad.recv(0.01) is None and plain.recv(0.01) is None
