"""CURVE encryption keys for a publisher that leaves the machine.

The publisher is the CURVE server (its secret key stays with it); each subscriber knows the
server's public key and has a key pair of its own (made fresh when not given). Keys are the
40-character Z85 strings that `zmq.curve_keypair()` and pyzmq's certificate files
(`zmq.auth.create_certificates`) hold. Restricting which clients may connect needs pyzmq's
authenticator (`zmq.auth.thread.ThreadAuthenticator`) on the publisher's context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq

from ddavs_rt.publish.errors import PublishError


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise PublishError("this libzmq has no CURVE support: install a pyzmq wheel built with libsodium")


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        raise PublishError(f"cannot read CURVE certificate {path} ({error}): make one with zmq.auth.create_certificates") from None
    return public, secret


@dataclass(frozen=True, slots=True)
class CurveServer:
    """The publisher's key pair."""

    public_key: bytes
    secret_key: bytes

    @classmethod
    def generate(cls) -> "CurveServer":
        _require_curve()
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @classmethod
    def from_certificate(cls, path: str | Path) -> "CurveServer":
        """From a secret certificate file (the `.key_secret` file of zmq.auth)."""
        public, secret = _load(path)
        if not secret:
            raise PublishError(f"{path} holds no secret key: give the publisher its .key_secret file")
        return cls(public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        _require_curve()
        socket.curve_server = True
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key


@dataclass(frozen=True, slots=True)
class CurveClient:
    """A subscriber's view: the server's public key, and the client's own pair (fresh if None)."""

    server_public_key: bytes
    public_key: bytes | None = None
    secret_key: bytes | None = None

    @classmethod
    def from_certificates(cls, server_public: str | Path, client_secret: str | Path | None = None) -> "CurveClient":
        server_key, _ = _load(server_public)
        if client_secret is None:
            return cls(server_key)
        public, secret = _load(client_secret)
        if not secret:
            raise PublishError(f"{client_secret} holds no secret key: give the subscriber its .key_secret file")
        return cls(server_key, public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        _require_curve()
        public, secret = self.public_key, self.secret_key
        if public is None or secret is None:
            public, secret = zmq.curve_keypair()
        socket.curve_serverkey = self.server_public_key
        socket.curve_publickey = public
        socket.curve_secretkey = secret
