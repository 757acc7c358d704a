"""A real ZeroMQ SUB on 127.0.0.1 that keeps the header of every frame message it receives, on a
thread of its own (for tests that watch a runtime publish)."""

from __future__ import annotations

import threading

import zmq

from ddavs_rt.publish.schema import FrameHeader, decode_message


class HeaderListener:
    def __init__(self, port: int) -> None:
        self.headers: list[FrameHeader] = []
        self._stop = threading.Event()
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.setsockopt(zmq.SUBSCRIBE, b"ddavs/")
        self._socket.connect(f"tcp://127.0.0.1:{port}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(100):
                self.headers.append(decode_message(self._socket.recv_multipart()).header)

    def of(self, stream_id: str) -> list[FrameHeader]:
        """The headers received from one stream, in arrival order."""
        return [h for h in list(self.headers) if h.stream_id == stream_id]

    def seqs(self, stream_id: str) -> list[int]:
        return [h.seq for h in self.of(stream_id)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._socket.close()
