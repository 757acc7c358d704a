"""Binding and connecting ZeroMQ sockets with one-line errors a user can act on."""

from __future__ import annotations

import errno

import zmq

from ddavs_rt.publish.errors import PublishError

_FORMS = "use tcp://HOST:PORT (tcp://0.0.0.0:5555 for every interface, tcp://127.0.0.1:* for a free port) or ipc:///PATH"


def bind(socket: zmq.Socket, endpoint: str) -> str:
    """Bind and return the endpoint actually bound (a `*` port resolved)."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as error:
        raise PublishError(_explain(endpoint, error, "bind")) from None
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(socket: zmq.Socket, endpoint: str) -> None:
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as error:
        raise PublishError(_explain(endpoint, error, "connect")) from None


def _explain(endpoint: str, error: zmq.ZMQError, verb: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"cannot bind {endpoint}: the address is in use; pick another port or stop the program that holds it"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {endpoint}: no interface of this machine has that address; use 127.0.0.1 or 0.0.0.0"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot {verb} {endpoint}: permission denied; use a port above 1023 or a writable ipc path"
    if error.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, errno.ENODEV):
        return f"bad endpoint {endpoint!r} ({zmq.strerror(error.errno)}): {_FORMS}"
    return f"cannot {verb} {endpoint} ({zmq.strerror(error.errno)}): {_FORMS}"
