"""Errors a user can act on.

Every error raised for bad input (a config field, a checkpoint, a device, a URL, a file) is a
`DdavsError` whose message is one line: what was wrong, and what to do. The CLI prints it as
`ddavs-rt: error: <message>` and exits non-zero; library callers can catch the subclasses.
"""

from __future__ import annotations


class DdavsError(Exception):
    """Base class: a one-line, user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(DdavsError):
    """A config file or option is invalid."""


class CheckpointError(DdavsError):
    """A checkpoint, bank or engine file is missing, corrupt or does not match its config."""


class BankError(CheckpointError):
    """A prototype bank does not match the model that loads it."""


class SourceError(DdavsError):
    """A capture source (camera, microphone, RTSP/HTTP URL, file) cannot be opened or read."""


class DataError(DdavsError):
    """A dataset tree is malformed (a missing file or column)."""


class EngineFailed(DdavsError):
    """The inference engine itself keeps failing (not one stream's input): the runtime must stop."""
