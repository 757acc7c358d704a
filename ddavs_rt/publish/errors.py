"""Errors of the publishing side: one line each, saying what is wrong and what to do."""

from __future__ import annotations

from ddavs_rt.errors import DdavsError


class PublishError(DdavsError):
    """A publisher or subscriber socket cannot bind or connect (bad endpoint, address in use)."""


class MessageError(DdavsError):
    """A received message does not follow the wire schema (wrong part count, bad JSON or image)."""
