"""The viewer's board: the newest frame of each stream and the numbers shown under its tile."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote

from ddavs_rt.publish.schema import DecodedFrame


@dataclass(slots=True)
class Tile:
    """One stream's newest image and its recent (wall time, seq) marks for the frame rate."""

    stream_id: str
    seq: int = -1
    image: bytes = b""
    content_type: str = "image/jpeg"
    summary: dict = field(default_factory=dict)
    received_at: float = 0.0
    marks: deque = field(default_factory=lambda: deque(maxlen=64))  # (capture wall time, seq)

    def fps(self, window_s: float = 5.0) -> float:
        """Frames the publisher sent per second (from seq and capture times, not what we saw)."""
        if len(self.marks) < 2:
            return 0.0
        t_last, seq_last = self.marks[-1]
        for t_first, seq_first in self.marks:
            if t_last - t_first <= window_s:
                break
        span = t_last - t_first
        return (seq_last - seq_first) / span if span > 0 else 0.0


class Board:
    """Thread-safe: the subscriber thread calls `update`, HTTP threads read."""

    def __init__(self) -> None:
        self._tiles: dict[str, Tile] = {}
        self._lock = threading.Lock()
        self.received = 0

    def update(self, frame: DecodedFrame) -> None:
        h = frame.header
        image, content_type = (frame.overlay_jpeg, "image/jpeg") if frame.overlay_jpeg else (frame.mask_png, "image/png")
        summary = {
            "latency_ms": round(h.latency.capture_to_publish_ms, 1),  # capture to publish start
            "infer_ms": round(h.latency.infer_ms, 1),
            "frames_dropped": h.drops.frames_dropped,
            "publisher_dropped": h.drops.publisher_dropped,
            "audio_gaps": h.audio.incomplete_windows,  # after the stream's audio began, not warm-up
            "silent_audio": h.silent_audio,
            "classes": [c.name for c in h.classes],
        }
        with self._lock:
            tile = self._tiles.get(h.stream_id)
            if tile is None:
                tile = self._tiles[h.stream_id] = Tile(h.stream_id)
            if h.seq < tile.seq:  # the publisher restarted: its counters start again
                tile.marks.clear()
            tile.seq, tile.image, tile.content_type, tile.summary = h.seq, image, content_type, summary
            tile.received_at = time.time()
            tile.marks.append((h.capture_wall_time, h.seq))
            self.received += 1

    def image(self, stream_id: str) -> tuple[bytes, str, int] | None:
        with self._lock:
            tile = self._tiles.get(stream_id)
            if tile is None or not tile.image:
                return None
            return tile.image, tile.content_type, tile.seq

    def snapshot(self) -> list[dict]:
        """What /api/streams returns, sorted by stream id."""
        now = time.time()
        with self._lock:
            tiles = sorted(self._tiles.values(), key=lambda t: t.stream_id)
            return [
                {
                    "id": t.stream_id,
                    "seq": t.seq,
                    "fps": round(t.fps(), 2),
                    "age_s": round(now - t.received_at, 2),
                    "image": f"/stream/{quote(t.stream_id, safe='')}.img?seq={t.seq}",
                    **t.summary,
                }
                for t in tiles
            ]
