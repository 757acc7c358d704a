"""The wire schema: messages round-trip exactly, and malformed ones fail with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ddavs_rt.publish.errors import MessageError
from ddavs_rt.publish.overlay import encode_jpeg
from ddavs_rt.publish.schema import FrameHeader, decode_message, encode_message


def _header(**overrides) -> FrameHeader:
    fields = dict(
        stream_id="cam1",
        seq=7,
        frame_time=12.34,
        capture_wall_time=1_790_000_000.5,
        audio_window={"start": 11.34, "end": 12.34, "gap_fraction": 0.25, "complete": False},
        latency={"capture_to_infer_ms": 3.0, "infer_ms": 20.5, "postprocess_ms": 1.5, "capture_to_publish_ms": 25.0},
        model_id="ddavs-small@abc123",
        mask={"height": 24, "width": 32, "encoding": "png-binary", "num_classes": 2},
        classes=[{"class_id": 1, "name": "sounding", "pixels": 96, "score": 0.9}],
        drops={"frames_dropped": 2, "publisher_dropped": 0, "engine_failed": 1},
        audio={"warmup_windows": 25, "incomplete_windows": 1, "ring_gaps": 1, "mic_overflows": 3},
        silent_audio=False,
        ground_truth={"iou": 0.75},
    )
    fields.update(overrides)
    return FrameHeader.model_validate(fields)


def _binary_mask() -> np.ndarray:
    mask = np.zeros((24, 32), np.uint8)
    mask[4:12, 8:20] = 1
    return mask


def test_binary_message_round_trips_with_overlay() -> None:
    header = _header()
    overlay = np.zeros((48, 64, 3), np.uint8)
    overlay[:, 32:] = (200, 40, 40)
    parts = encode_message(header, _binary_mask(), encode_jpeg(overlay, quality=95))
    assert parts[0] == b"ddavs/cam1"
    wire = json.loads(parts[1])
    assert wire["schema"] == "ddavs-rt/frame" and wire["version"] == 3 and wire["epoch"] == 0 and wire["ground_truth"] == {"iou": 0.75}
    decoded = decode_message(parts)
    assert decoded.header == header
    np.testing.assert_array_equal(decoded.mask, _binary_mask())
    assert decoded.overlay is not None and decoded.overlay.shape == (48, 64, 3)
    # Away from the sharp edge JPEG keeps the colours, in RGB order.
    assert np.abs(decoded.overlay[24, 10].astype(int) - [0, 0, 0]).max() < 8
    assert np.abs(decoded.overlay[24, 50].astype(int) - [200, 40, 40]).max() < 8


def test_binary_png_holds_0_and_255_for_image_viewers() -> None:
    import cv2

    parts = encode_message(_header(), _binary_mask() * 255)
    wire = cv2.imdecode(np.frombuffer(parts[2], np.uint8), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(wire)) == {0, 255}
    assert parts[3] == b"" and decode_message(parts).overlay is None


def test_class_mask_round_trips_class_ids() -> None:
    header = _header(mask={"height": 24, "width": 32, "encoding": "png-class", "num_classes": 71})
    mask = (np.arange(24 * 32).reshape(24, 32) % 71).astype(np.uint8)
    decoded = decode_message(encode_message(header, mask))
    np.testing.assert_array_equal(decoded.mask, mask)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p[:3], "4 parts"),
        (lambda p: [p[0], b"{not json", p[2], p[3]], "not UTF-8 JSON"),
        (lambda p: [p[0], b"[1, 2]", p[2], p[3]], "not a JSON object"),
        (lambda p: [b"ddavs/cam2", *p[1:]], "does not match"),
        (lambda p: [p[0], p[1], b"GIF89a...", p[3]], "not a PNG"),
        (lambda p: [p[0], p[1], p[2], b"\xff\xd8garbage"], "not a JPEG"),
    ],
)
def test_malformed_messages_raise_one_line_errors(mutate, message: str) -> None:
    parts = encode_message(_header(), _binary_mask(), b"")
    with pytest.raises(MessageError, match=message) as info:
        decode_message(mutate(parts))
    assert "\n" not in str(info.value)


def _with_header(**changes) -> list[bytes]:
    parts = encode_message(_header(), _binary_mask())
    raw = json.loads(parts[1])
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return [parts[0], json.dumps(raw).encode(), parts[2], parts[3]]


def test_header_validation_names_the_field() -> None:
    with pytest.raises(MessageError, match=r"version 4.*upgrade"):
        decode_message(_with_header(version=4))
    with pytest.raises(MessageError, match=r"version 2.*upgrade"):  # total_ms stamped before the send
        decode_message(_with_header(version=2))
    with pytest.raises(MessageError, match=r"version 1.*upgrade"):
        decode_message(_with_header(version=1))
    with pytest.raises(MessageError, match=r"epoch: Input should be greater than or equal to 0"):
        decode_message(_with_header(epoch=-1))
    with pytest.raises(MessageError, match=r"seq: Field required"):
        decode_message(_with_header(seq=None))
    with pytest.raises(MessageError, match=r"audio_window\.gap_fraction"):
        decode_message(_with_header(audio_window={"start": 0, "end": 1, "gap_fraction": 2.0, "complete": False}))
    with pytest.raises(MessageError, match=r"colour: Extra inputs"):
        decode_message(_with_header(colour="red"))


def test_mask_that_disagrees_with_its_header_is_refused() -> None:
    import cv2

    parts = encode_message(_header(), _binary_mask())
    small = cv2.imencode(".png", np.zeros((10, 10), np.uint8))[1].tobytes()
    with pytest.raises(MessageError, match="10x10 but the header says 32x24"):
        decode_message([parts[0], parts[1], small, b""])
    grey = cv2.imencode(".png", np.full((24, 32), 7, np.uint8))[1].tobytes()
    with pytest.raises(MessageError, match="other than 0 and 255"):
        decode_message([parts[0], parts[1], grey, b""])


def test_encoder_refuses_masks_it_cannot_describe() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_message(_header(), _binary_mask().astype(np.float32))
    with pytest.raises(ValueError, match="header says"):
        encode_message(_header(), np.zeros((10, 10), np.uint8))
    header = _header(mask={"height": 24, "width": 32, "encoding": "png-class", "num_classes": 3})
    with pytest.raises(ValueError, match="num_classes is 3"):
        encode_message(header, np.full((24, 32), 5, np.uint8))
    with pytest.raises(ValueError, match="stream_id"):
        _header(stream_id="cam 1/evil")
