"""The wire schema: one ZeroMQ multipart message per processed frame.

    [topic b"ddavs/<stream_id>", header JSON (UTF-8), mask PNG, overlay JPEG or b""]

The header is `FrameHeader` (schema "ddavs-rt/frame", version 3). Unknown fields are refused:
any change to the layout bumps `version`, so a subscriber knows what it reads. Version 2 added
`epoch`. Version 3:
`latency.total_ms`/`publish_ms` became `capture_to_publish_ms`/`postprocess_ms` (a header is
serialised before its own message is encoded and sent, so it cannot honestly carry the time of
its own send; capture-to-sent is recorded after the send, in /metrics and the runtime's health),
and `drops.audio_gaps` became the `audio` block (warm-up windows apart from real discontinuities,
ring gaps, microphone overflows). The mask PNG is
8-bit grey: class ids for "png-class", 0/255 for "png-binary" (so it is visible in an image
viewer). `decode_message` returns the mask as class ids in both cases (binary: 0 or 1).
Any client can read a message with a JSON parser and a PNG decoder; this module is the
reference encoder and decoder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddavs_rt.publish.errors import MessageError

SCHEMA_NAME = "ddavs-rt/frame"
SCHEMA_VERSION = 3  # 2: `epoch`, the publisher's restart counter; 3: honest latency and audio health
TOPIC_PREFIX = "ddavs/"
STREAM_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"  # safe in a topic and a file name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioWindowInfo(_Strict):
    """The audio window the frame was segmented with (stream-clock seconds)."""

    start: float
    end: float
    gap_fraction: float = Field(0.0, ge=0.0, le=1.0)
    complete: bool = True


class Latency(_Strict):
    """Milliseconds, all measured before this message is encoded and sent:

    `capture_to_infer_ms` capture -> the engine call began; `infer_ms` the engine call (for the
    whole batch); `postprocess_ms` mask, classes, live score and overlay of this frame;
    `capture_to_publish_ms` capture -> this header was stamped, just before the mask PNG is
    encoded and the message sent. Capture-to-sent (after the send) is not in the header: see
    `ddavs_capture_to_sent_seconds` in /metrics.
    """

    capture_to_infer_ms: float = Field(0.0, ge=0)
    infer_ms: float = Field(0.0, ge=0)
    postprocess_ms: float = Field(0.0, ge=0)
    capture_to_publish_ms: float = Field(0.0, ge=0)


class MaskInfo(_Strict):
    """The mask's size and encoding; `num_classes` counts class ids including background 0."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    encoding: Literal["png-binary", "png-class"] = "png-binary"
    num_classes: int = Field(2, ge=2, le=256)

    @model_validator(mode="after")
    def _binary_has_two_classes(self) -> "MaskInfo":
        if self.encoding == "png-binary" and self.num_classes != 2:
            raise ValueError("a png-binary mask has num_classes 2 (background and sounding)")
        return self


class ClassInfo(_Strict):
    """One class present in the mask: its pixel count and the model's score for it."""

    class_id: int = Field(ge=0, le=255)
    name: str
    pixels: int = Field(ge=0)
    score: float


class Drops(_Strict):
    """Counters since the stream started: frames replaced or dropped before processing, sends
    that found a subscriber queue full (before this message), frames lost to engine failures."""

    frames_dropped: int = Field(0, ge=0)
    publisher_dropped: int = Field(0, ge=0)
    engine_failed: int = Field(0, ge=0)


class AudioHealth(_Strict):
    """Counters since the stream started, including this frame's window:

    `warmup_windows` windows that reached back before the stream's first audio (expected at the
    start); `incomplete_windows` windows missing audio after the stream's audio began (a real
    discontinuity or audio too late for its frame); `ring_gaps` discontinuities in the stream's
    audio; `mic_overflows` PortAudio input overflows of a microphone (0 for other sources).
    """

    warmup_windows: int = Field(0, ge=0)
    incomplete_windows: int = Field(0, ge=0)
    ring_gaps: int = Field(0, ge=0)
    mic_overflows: int = Field(0, ge=0)


class FrameHeader(_Strict):
    """Part 2 of a message. Times: `frame_time` stream clock (s), `capture_wall_time` Unix (s)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_name: Literal["ddavs-rt/frame"] = Field(SCHEMA_NAME, alias="schema")
    version: Literal[3] = SCHEMA_VERSION
    stream_id: str = Field(pattern=STREAM_ID_PATTERN, max_length=128)
    # `seq` counts from 0 on each start of the stream's publisher; `epoch` counts those starts
    # (0 the first time; a cluster shard restarted on another worker publishes epoch + 1), so a
    # subscriber tells a restart (epoch up, seq from 0) from loss (a gap in seq within one epoch).
    epoch: int = Field(0, ge=0)
    seq: int = Field(ge=0)
    frame_time: float
    capture_wall_time: float
    audio_window: AudioWindowInfo
    latency: Latency = Field(default_factory=Latency)
    model_id: str
    mask: MaskInfo
    classes: list[ClassInfo] = Field(default_factory=list)
    drops: Drops = Field(default_factory=Drops)
    audio: AudioHealth = Field(default_factory=AudioHealth)
    silent_audio: bool = False
    # Live accuracy against a synthetic source's ground truth (demo only), e.g. {"iou": 0.71}.
    ground_truth: dict[str, float] | None = None

    @property
    def topic(self) -> bytes:
        return topic_for(self.stream_id)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


@dataclass(slots=True)
class DecodedFrame:
    """A validated message: the header, the mask as class ids uint8 [H, W] (binary: 0/1), the
    overlay as RGB uint8 [h, w, 3] or None, and the raw PNG/JPEG bytes as they came."""

    header: FrameHeader
    mask: np.ndarray
    overlay: np.ndarray | None
    mask_png: bytes
    overlay_jpeg: bytes


def topic_for(stream_id: str) -> bytes:
    return (TOPIC_PREFIX + stream_id).encode("utf-8")


def encode_message(header: FrameHeader, mask: np.ndarray, overlay_jpeg: bytes | None = None) -> list[bytes]:
    """The four parts of one message. `mask` is uint8 [H, W]: class ids, or 0/1 (or 0/255) binary."""
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be uint8 [H, W], got {mask.dtype} {mask.shape}")
    if mask.shape != (header.mask.height, header.mask.width):
        raise ValueError(f"mask is {mask.shape} but the header says {(header.mask.height, header.mask.width)}")
    if header.mask.encoding == "png-binary":
        wire = np.where(mask > 0, 255, 0).astype(np.uint8)
    else:
        if int(mask.max(initial=0)) >= header.mask.num_classes:
            raise ValueError(f"mask holds class {int(mask.max())} but num_classes is {header.mask.num_classes}")
        wire = mask
    ok, png = cv2.imencode(".png", wire)
    if not ok:
        raise ValueError("PNG encoding of the mask failed")
    return [header.topic, header.to_json().encode("utf-8"), png.tobytes(), overlay_jpeg or b""]


def decode_message(parts: list[bytes]) -> DecodedFrame:
    """Validate and decode one message; a malformed one raises a one-line `MessageError`."""
    if len(parts) != 4:
        raise MessageError(f"a ddavs-rt message has 4 parts (topic, header, mask, overlay), got {len(parts)}")
    topic, header_bytes, mask_png, overlay_jpeg = (bytes(p) for p in parts)
    try:
        raw = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MessageError(f"message header is not UTF-8 JSON ({error})") from None
    if not isinstance(raw, dict):
        raise MessageError("message header is not a JSON object")
    if raw.get("schema") != SCHEMA_NAME or raw.get("version") != SCHEMA_VERSION:
        raise MessageError(
            f"message is schema {raw.get('schema')!r} version {raw.get('version')!r}; this client reads "
            f"{SCHEMA_NAME!r} version {SCHEMA_VERSION}: upgrade the client or the publisher"
        )
    try:
        header = FrameHeader.model_validate(raw)
    except ValidationError as error:
        raise MessageError(f"message header is invalid: {_first_error(error)}") from None
    if topic != header.topic:
        raise MessageError(f"message topic {topic!r} does not match its header's stream {header.stream_id!r}")
    mask = _decode_mask(mask_png, header)
    overlay = None
    if overlay_jpeg:
        image = cv2.imdecode(np.frombuffer(overlay_jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise MessageError("message overlay is not a JPEG image")
        overlay = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return DecodedFrame(header=header, mask=mask, overlay=overlay, mask_png=mask_png, overlay_jpeg=overlay_jpeg)


def _decode_mask(png: bytes, header: FrameHeader) -> np.ndarray:
    if not png.startswith(b"\x89PNG"):
        raise MessageError("message mask is not a PNG image")
    wire = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if wire is None or wire.dtype != np.uint8 or wire.ndim != 2:
        raise MessageError("message mask is not an 8-bit single-channel PNG")
    expected = (header.mask.height, header.mask.width)
    if wire.shape != expected:
        raise MessageError(f"message mask is {wire.shape[1]}x{wire.shape[0]} but the header says {expected[1]}x{expected[0]}")
    if header.mask.encoding == "png-binary":
        if np.any((wire != 0) & (wire != 255)):
            raise MessageError("binary message mask holds values other than 0 and 255")
        return (wire // 255).astype(np.uint8)
    if int(wire.max(initial=0)) >= header.mask.num_classes:
        raise MessageError(f"message mask holds class {int(wire.max())} but num_classes is {header.mask.num_classes}")
    return wire


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "header"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return re.sub(r"\s+", " ", f"{where}: {first['msg']}{more}")
