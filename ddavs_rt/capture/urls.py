"""Credentials never reach a log line or an error message: `redact_url` hides them.

`rtsp://admin:secret@10.0.0.5:554/live` becomes `rtsp://admin:***@10.0.0.5:554/live`; query
parameters that carry secrets (`password=`, `token=`, ...) get the same treatment. Use
`redact_text(text, url)` for text that may quote the raw URL (an FFmpeg error message).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)([?&;](?:password|passwd|pass|pwd|token|access_token|auth|key|apikey|api_key|secret|signature|sig)=)([^&;#]*)"
)
_NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp")


def is_network_url(location: str) -> bool:
    """True for a URL read over the network (rtsp, http(s), rtmp, srt, ...), False for a file path."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    return scheme in _NETWORK_SCHEMES


def redact_url(url: str) -> str:
    """The URL with its password (and secret-looking query values) replaced by `***`."""
    text = str(url)
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if parts is not None and "@" in parts.netloc:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            # user:password keeps the user name; a bare userinfo may itself be a token
            # (https://TOKEN@host), so it is hidden whole.
            netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
            text = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _SECRET_QUERY_KEYS.sub(lambda m: m.group(1) + MASK, text)


def redact_text(text: str, url: str) -> str:
    """`text` with every occurrence of the raw URL, and of its password, replaced by the redacted form."""
    text = str(text)
    redacted = redact_url(url)
    if url and redacted != url:
        text = text.replace(url, redacted)
        try:
            parts = urlsplit(url)
            secret = parts.password or ("" if parts.password is not None else parts.username or "")
        except ValueError:
            secret = ""
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return _SECRET_QUERY_KEYS.sub(lambda m: m.group(1) + MASK, text)
