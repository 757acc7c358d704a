"""One owner per socket: the publisher's ZeroMQ socket is created, used and closed on one thread
(the scheduler thread), never on the thread that starts and stops the runtime."""

from __future__ import annotations

import threading
from pathlib import Path

from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
from ddavs_rt.engine import open_engine
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.runtime.runner import Runtime
from support.rtsp_server import free_port


class ThreadRecordingPublisher(Publisher):
    """The real publisher; it notes which thread creates, sends through and closes its socket."""

    def __init__(self, *args, **kwargs) -> None:
        self.threads: dict[str, set[int]] = {"create": {threading.get_ident()}, "send": set(), "close": set()}
        self.sent_event = threading.Event()
        super().__init__(*args, **kwargs)

    def send(self, parts: list[bytes]) -> bool:
        self.threads["send"].add(threading.get_ident())
        ok = super().send(parts)
        self.sent_event.set()
        return ok

    def close(self) -> None:
        self.threads["close"].add(threading.get_ident())
        super().close()


def test_the_scheduler_thread_owns_the_publisher_socket_from_bind_to_close(checkpoint: Path) -> None:
    made: list[ThreadRecordingPublisher] = []

    def open_publisher() -> ThreadRecordingPublisher:
        made.append(ThreadRecordingPublisher(f"tcp://127.0.0.1:{free_port()}"))
        return made[0]

    config = RuntimeConfig(sources=[SyntheticSourceConfig(id="a", fps=10)], overlay=False)
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1), open_publisher=open_publisher)
    stop = threading.Event()
    try:
        runtime.start()
        assert made and runtime.endpoint is not None  # bound during start(), on the scheduler thread
        watcher = threading.Thread(target=lambda: (made[0].sent_event.wait(120), stop.set()), daemon=True)
        watcher.start()
        runtime.run(stop)
    finally:
        runtime.close()
    publisher = made[0]
    owner = publisher.threads["create"]
    assert owner != {threading.get_ident()}  # not the thread that started and stopped the runtime
    assert publisher.threads["send"] == owner and publisher.threads["close"] == owner
    assert publisher.sent >= 1 or publisher.dropped >= 1
