"""A camera that does not exist, and URL redaction."""

from __future__ import annotations

import pytest

from ddavs_rt.capture.camera import CameraSource
from ddavs_rt.capture.urls import is_network_url, redact_text, redact_url
from ddavs_rt.errors import SourceError


@pytest.mark.parametrize("device", [7, "7", "/dev/video99"])
def test_missing_camera_is_a_one_line_source_error(device):
    source = CameraSource(device, "cam")
    with pytest.raises(SourceError) as info:
        source.start()
    message = str(info.value)
    assert message.startswith(f"camera {str(device)} could not be opened")
    assert "\n" not in message and "list devices" in message
    assert source.error is info.value and source.health().error == message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        ("https://TOKEN123@cdn.example/x.m3u8", "https://***@cdn.example/x.m3u8"),
        ("http://h/stream?user=a&password=pw&x=1", "http://h/stream?user=a&password=***&x=1"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
    ],
)
def test_redact_url_hides_passwords_and_tokens(url, expected):
    assert redact_url(url) == expected


def test_redact_text_hides_the_raw_url_and_the_bare_password():
    url = "rtsp://admin:s3cr3t@10.0.0.5/live"
    text = redact_text(f"{url}: 401 Unauthorized (password s3cr3t)", url)
    assert "s3cr3t" not in text and "admin:***@10.0.0.5" in text


def test_is_network_url():
    assert is_network_url("rtsp://h/x") and is_network_url("HTTPS://h/x")
    assert not is_network_url("clip.mp4") and not is_network_url("/a/b.mkv")
