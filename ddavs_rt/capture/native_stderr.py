"""Keep a native library's chatter on file descriptor 2 out of the operator's terminal.

PortAudio's ALSA host API and ALSA itself print straight to fd 2 (not through Python) each time
a device fails to open: "ALSA lib pcm_pulse.c:...: Unable to create stream", "Expression '...'
failed in 'src/hostapi/alsa/pa_linux_alsa.c'". A microphone that is reopened about once a
second during an outage (`--reconnect forever`) would write five such lines a second for as long
as it is unplugged, against the rule of one line per fault.

`quiet_native_stderr()` points fd 2 at a temporary file for the duration of one native call and
then puts it back: lines that are PortAudio/ALSA chatter go to `logging` at DEBUG (`-v` shows
them), anything else (another thread's output in that window) is written back to stderr. A
lock serialises the windows; they are short (one device open).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

_NOISE = ("ALSA lib ", "Expression '")
_lock = threading.Lock()


def is_native_chatter(line: str) -> bool:
    """A PortAudio/ALSA diagnostic line (or the blank line ALSA adds after its own)."""
    return not line.strip() or line.startswith(_NOISE)


@contextlib.contextmanager
def quiet_native_stderr(what: str) -> Iterator[None]:
    """Capture fd 2 while the block runs; chatter is logged at DEBUG under `what`, the rest re-emitted."""
    with _lock:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (AttributeError, ValueError, OSError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode(errors="replace")
    kept = []
    for line in text.splitlines():
        if is_native_chatter(line):
            if line.strip():
                log.debug("%s: %s", what, line)
        else:
            kept.append(line)
    if kept:
        try:
            sys.stderr.write("\n".join(kept) + "\n")
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
