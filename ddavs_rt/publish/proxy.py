"""One endpoint for many publishers: a ZeroMQ XSUB/XPUB proxy (`zmq.proxy_steerable`).

    proxy = Proxy(publish="tcp://127.0.0.1:5555", hop="tcp://127.0.0.1:*")
    proxy.start()            # binds both sides; `proxy.hop_endpoint` is where publishers connect
    ...                      # publishers: `connect_publisher(proxy.hop_endpoint, proxy.hop_client)`
    proxy.close()

The cluster's shards (ddavs_rt/cluster/) each publish through a socket that *connects* to the
proxy's XSUB side (the "hop"); subscribers, `ddavs-rt view` and `ddavs-rt subscribe` connect to
its XPUB side, the `--publish` endpoint, exactly as to one runtime. Messages pass through
unchanged (topic, header, mask, overlay) and subscriptions flow back to the shards, so a
shard's messages cross the hop only for topics somebody subscribed to. libzmq's proxy moves the
frames in C; Python touches no message.

CURVE (`curve_keys`, the folder `ddavs-rt keys` makes): the XPUB side encrypts with
server.key_secret and admits only the clients in authorized_clients/, as `--curve-keys` does on
one machine; the hop is CURVE too, with a key pair for the proxy and one for the shards made
fresh for each run (`HopKeys`): the XSUB side admits only that shard key. The shards receive
their secret key as a task argument, so on an untrusted network run Dask with TLS.

Threads: one thread creates, runs and closes the three sockets (a ZeroMQ socket belongs to one
thread); `close()` stops it through an inproc control socket (TERMINATE).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ddavs_rt.publish.curve import CurveClient, CurveServer
from ddavs_rt.publish.endpoint import bind, connect
from ddavs_rt.publish.publisher import Publisher

log = logging.getLogger(__name__)

HOP_DOMAIN = "ddavs-hop"
SUBSCRIBER_DOMAIN = "ddavs-subscribers"


@dataclass(frozen=True, slots=True)
class HopKeys:
    """CURVE keys of the shard -> proxy hop: the proxy's pair and the shards' pair (Z85 bytes)."""

    server: CurveServer
    client: CurveClient

    @classmethod
    def generate(cls) -> "HopKeys":
        server = CurveServer.generate()
        public, secret = zmq.curve_keypair()
        return cls(server, CurveClient(server.public_key, public, secret))


class Proxy:
    """XSUB (`hop`, publishers connect) -> XPUB (`publish`, subscribers connect), on a thread."""

    def __init__(
        self,
        publish: str,
        hop: str = "tcp://127.0.0.1:*",
        curve_keys: str | Path | None = None,
        send_hwm: int = 1000,
        receive_hwm: int = 1000,
    ) -> None:
        self.publish_config = publish
        self.hop_config = hop
        self.curve_keys = curve_keys
        self.send_hwm, self.receive_hwm = send_hwm, receive_hwm
        self.hop_keys: HopKeys | None = HopKeys.generate() if curve_keys is not None else None
        self.publish_endpoint = ""  # bound endpoints, set by start()
        self.hop_endpoint = ""
        self._context = zmq.Context()
        self._authenticator: ThreadAuthenticator | None = None
        self._scratch: Path | None = None
        self._control = f"inproc://ddavs-proxy-control-{uuid.uuid4().hex}"
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def hop_client(self) -> CurveClient | None:
        """What a publisher needs to connect to the hop: None when the hop is plain."""
        return self.hop_keys.client if self.hop_keys is not None else None

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind both sides (one-line PublishError on a bad or busy endpoint) and start forwarding."""
        if self.curve_keys is not None:
            self._start_authenticator()
        self._thread = threading.Thread(target=self._run, name="zmq-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the ZeroMQ proxy did not start")
        if self._error is not None:
            error, self._error = self._error, None
            self.close()
            raise error
        log.info("proxy: publishers connect to %s, subscribers to %s", self.hop_endpoint, self.publish_endpoint)

    def _start_authenticator(self) -> None:
        from ddavs_rt.publish.keys import server_keys

        _, authorised = server_keys(self.curve_keys)  # one-line error if the folder is incomplete
        assert self.hop_keys is not None
        # the authenticator reads public keys from folders: one holding only the shards' key
        self._scratch = Path(tempfile.mkdtemp(prefix="ddavs-hop-"))
        (self._scratch / "shard.key").write_text(
            "metadata\ncurve\n    public-key = \"" + self.hop_keys.client.public_key.decode("ascii") + "\"\n"
        )
        self._authenticator = ThreadAuthenticator(self._context, log=log)
        self._authenticator.start()
        self._authenticator.configure_curve(domain=HOP_DOMAIN, location=str(self._scratch))
        self._authenticator.configure_curve(domain=SUBSCRIBER_DOMAIN, location=str(authorised))

    def _run(self) -> None:
        frontend = self._context.socket(zmq.XSUB)
        backend = self._context.socket(zmq.XPUB)
        control = self._context.socket(zmq.PAIR)
        try:
            for socket in (frontend, backend, control):
                socket.linger = 0
            frontend.rcvhwm = self.receive_hwm
            backend.sndhwm = self.send_hwm
            if self.curve_keys is not None:
                from ddavs_rt.publish.keys import server_keys

                subscriber_server, _ = server_keys(self.curve_keys)
                assert self.hop_keys is not None
                frontend.zap_domain = HOP_DOMAIN.encode()
                self.hop_keys.server.apply(frontend)
                backend.zap_domain = SUBSCRIBER_DOMAIN.encode()
                subscriber_server.apply(backend)
            self.hop_endpoint = bind(frontend, self.hop_config)
            self.publish_endpoint = bind(backend, self.publish_config)
            control.bind(self._control)
        except BaseException as error:  # reported by start()
            self._error = error
            for socket in (frontend, backend, control):
                socket.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        try:
            zmq.proxy_steerable(frontend, backend, None, control)
        except zmq.ZMQError as error:
            if error.errno != zmq.ETERM:
                log.error("the ZeroMQ proxy stopped: %s", error)
        finally:
            for socket in (frontend, backend, control):
                socket.close(linger=0)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            stopper = self._context.socket(zmq.PAIR)
            stopper.linger = 0
            try:
                stopper.connect(self._control)
                stopper.send(b"TERMINATE")
            finally:
                stopper.close(linger=0)
            self._thread.join(timeout=10.0)
        self._thread = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if not self._context.closed:
            self._context.term()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "Proxy":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HopPublisher(Publisher):
    """A `Publisher` whose socket connects to a proxy's hop instead of binding an endpoint.

    The XPUB socket binds a private inproc address (the base class binds) and connects to the
    hop, with the hop's CURVE client keys when given; sending, drop counting and subscriptions
    are the base class's.
    """

    def __init__(self, hop: str, curve: CurveClient | None = None, send_hwm: int = 50) -> None:
        super().__init__(f"inproc://ddavs-hop-{uuid.uuid4().hex}", send_hwm=send_hwm)
        try:
            if curve is not None:
                curve.apply(self._socket)
            connect(self._socket, hop)
        except BaseException:
            self.close()
            raise
        self.endpoint = hop
