"""Recording (`--record DIR`): each stream's masks as PNG files and its headers as JSON lines.

    DIR/<stream_id>/<UTC start>-<first seq>/headers.jsonl     one FrameHeader JSON per line
    DIR/<stream_id>/<UTC start>-<first seq>/masks/<seq>.png   the mask PNG exactly as published

Why PNG files and not a video of masks: the masks are class ids, which a lossy codec would
corrupt and a lossless one would tie to one container; a video cut by a kill loses its index
(MP4) or its tail, while a PNG sequence loses at most the frame being written. The bytes are the
ones published, so a recording reads with the same decoder as the wire.

Segments rotate by size (`rotate_mb`) or age (`rotate_s`), whichever comes first. A segment is
written under `.<name>.partial` and renamed to `<name>` when closed, so a final name always
holds a finished segment. Inside, each mask is written to a temporary name and renamed, before
its header line is appended with one `os.write` (flushed per line): after a SIGKILL, an
unfinished segment exists only under its `.partial` name, every complete line of its
headers.jsonl names a complete mask, and `recover()` (run when a Recorder starts) trims a torn
last line, removes temporary files and renames it to its final name.

Writing happens on the recorder's own thread: `on_published` (called by the scheduler) only
queues, and a full queue drops the frame from the recording (counted in `dropped`) rather than
slowing the pipeline.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ddavs_rt.atomic import fsync_dir
from ddavs_rt.publish.schema import FrameHeader

log = logging.getLogger(__name__)

HEADERS = "headers.jsonl"
MASKS = "masks"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial$")
_STOP = object()


@dataclass(slots=True)
class _Segment:
    stream_id: str
    final: Path  # DIR/<stream>/<name>
    partial: Path  # DIR/<stream>/.<name>.partial
    opened: float  # monotonic
    fd: int
    bytes_written: int = 0
    frames: int = 0
    first_seq: int = 0
    masks: Path = field(init=False)

    def __post_init__(self) -> None:
        self.masks = self.partial / MASKS


class Recorder:
    """Writes published frames to `folder`; `on_published` is the scheduler hook, `close()` ends."""

    def __init__(
        self,
        folder: str | Path,
        rotate_mb: float | None = None,
        rotate_s: float | None = None,
        queue_size: int = 256,
    ) -> None:
        self.folder = Path(folder)
        self.rotate_bytes = None if rotate_mb is None else int(rotate_mb * 1_000_000)
        self.rotate_s = rotate_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self.recovered = recover(self.folder)
        self.written = 0
        self.dropped = 0
        self.segments_closed: list[Path] = []
        self._segments: dict[str, _Segment] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- scheduler side
    def on_published(self, stream_id: str, header: FrameHeader, mask_png: bytes, _overlay: bytes | None) -> None:
        try:
            self._queue.put_nowait((stream_id, header.seq, header.to_json().encode("utf-8"), mask_png))
        except queue.Full:
            self.dropped += 1

    # ---------------------------------------------------------------- writer thread
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._write(*item)
                self.written += 1
            except OSError:
                self.dropped += 1
                log.exception("recording a frame of stream %s failed", item[0])

    def _write(self, stream_id: str, seq: int, header_json: bytes, mask_png: bytes) -> None:
        segment = self._segments.get(stream_id)
        if segment is not None and self._due(segment):
            self._close_segment(segment)
            segment = None
        if segment is None:
            segment = self._open_segment(stream_id, seq)
        mask = segment.masks / f"{seq:08d}.png"
        tmp = segment.masks / f".{seq:08d}.png.tmp"
        with open(tmp, "wb") as handle:
            handle.write(mask_png)
        os.replace(tmp, mask)  # the mask is whole before its header line exists
        line = header_json + b"\n"
        os.write(segment.fd, line)  # one write per line: a kill leaves whole lines (or one torn last line)
        segment.bytes_written += len(mask_png) + len(line)
        segment.frames += 1

    def _due(self, segment: _Segment) -> bool:
        if self.rotate_bytes is not None and segment.bytes_written >= self.rotate_bytes:
            return True
        return self.rotate_s is not None and time.monotonic() - segment.opened >= self.rotate_s

    def _open_segment(self, stream_id: str, seq: int) -> _Segment:
        # stream ids are topic-safe ([A-Za-z0-9_.:-]); a leading dot ("..") must not climb out
        stream_dir = self.folder / (stream_id if not stream_id.startswith(".") else "_" + stream_id)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}-{seq:08d}"
        suffix = 1
        while (stream_dir / name).exists() or (stream_dir / f".{name}.partial").exists():
            suffix += 1
            name = f"{stamp}-{seq:08d}-{suffix}"
        partial = stream_dir / f".{name}.partial"
        (partial / MASKS).mkdir(parents=True)
        fd = os.open(partial / HEADERS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        segment = _Segment(stream_id, stream_dir / name, partial, time.monotonic(), fd, first_seq=seq)
        self._segments[stream_id] = segment
        log.debug("recording %s into %s", stream_id, partial)
        return segment

    def _close_segment(self, segment: _Segment) -> None:
        os.fsync(segment.fd)
        os.close(segment.fd)
        os.replace(segment.partial, segment.final)
        fsync_dir(segment.final.parent)
        self._segments.pop(segment.stream_id, None)
        self.segments_closed.append(segment.final)
        log.info("recorded %s: %d frames, %.1f MB", segment.final, segment.frames, segment.bytes_written / 1e6)

    # ---------------------------------------------------------------- closing
    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close every open segment under its final name."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=timeout_s)
        for segment in list(self._segments.values()):
            try:
                self._close_segment(segment)
            except OSError:
                log.exception("closing the recording segment %s failed", segment.partial)


def recover(folder: str | Path) -> list[Path]:
    """Finish segments a killed recorder left under `.partial` names; returns their final paths."""
    folder = Path(folder)
    finished: list[Path] = []
    for partial in sorted(folder.glob("*/.*.partial")):
        match = _PARTIAL.match(partial.name)
        if match is None or not partial.is_dir():
            continue
        headers = partial / HEADERS
        if headers.exists():
            data = headers.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]  # drop a torn last line
            if whole != data:
                with open(headers, "r+b") as handle:
                    handle.truncate(len(whole))
        for tmp in (partial / MASKS).glob(".*.tmp"):
            tmp.unlink()
        final = partial.with_name(match.group("name"))
        if final.exists():
            final = partial.with_name(match.group("name") + "-recovered")
        os.replace(partial, final)
        finished.append(final)
        log.warning("recovered the unfinished recording segment %s", final)
    return finished


def read_segment(segment: str | Path) -> list[tuple[FrameHeader, bytes]]:
    """The headers and mask PNG bytes of a recorded segment, in order."""
    segment = Path(segment)
    frames = []
    for line in (segment / HEADERS).read_text("utf-8").splitlines():
        header = FrameHeader.model_validate_json(line)
        frames.append((header, (segment / MASKS / f"{header.seq:08d}.png").read_bytes()))
    return frames
