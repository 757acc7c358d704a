"""`ddavs-rt keys --out DIR`: CURVE key pairs, and the publisher that admits only known clients.

The folder `ddavs-rt keys` makes (the layout `--curve-keys DIR` reads):

    DIR/server.key                      the publisher's public certificate (give it to subscribers)
    DIR/server.key_secret               the publisher's secret certificate (stays with the publisher)
    DIR/<client>.key, <client>.key_secret   one pair per subscriber (default name "client")
    DIR/authorized_clients/<client>.key     public keys the publisher admits

A publisher started with `--curve-keys DIR` encrypts with server.key_secret and, through pyzmq's
ThreadAuthenticator (ZAP), accepts only clients whose public key is in DIR/authorized_clients/.
A subscriber with `--curve-keys DIR` uses server.key and DIR/client.key_secret (or
`--curve-client NAME`). On another machine a subscriber's DIR needs only those two files.
Secret files are written with mode 0600, each file atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.curve import CurveClient, CurveServer
from ddavs_rt.publish.publisher import Publisher

log = logging.getLogger(__name__)

SERVER_NAME = "server"
DEFAULT_CLIENT = "client"
AUTHORIZED_DIR = "authorized_clients"


# ------------------------------------------------------------------------------------ making keys
def create_keys(out: str | Path, clients: list[str] | None = None, force: bool = False) -> list[Path]:
    """Make the server pair (kept if it exists, unless `force`) and one pair per client name.

    Returns the paths written. A client whose pair exists is refused unless `force`.
    """
    out = Path(out)
    clients = clients or [DEFAULT_CLIENT]
    for name in clients:
        if not name or name == SERVER_NAME or "/" in name or name.startswith("."):
            raise DdavsError(f"client name {name!r} is not usable: pick a plain name other than {SERVER_NAME!r}")
    out.mkdir(parents=True, exist_ok=True)
    (out / AUTHORIZED_DIR).mkdir(exist_ok=True)
    written: list[Path] = []
    if force or not (out / f"{SERVER_NAME}.key_secret").exists():
        written += _create_pair(out, SERVER_NAME)
    for name in clients:
        if (out / f"{name}.key_secret").exists() and not force:
            raise DdavsError(f"{out / (name + '.key_secret')} exists; pick another --client name or pass --force")
        written += _create_pair(out, name)
        authorised = out / AUTHORIZED_DIR / f"{name}.key"
        shutil.copyfile(out / f"{name}.key", authorised.with_suffix(".key.tmp"))
        os.replace(authorised.with_suffix(".key.tmp"), authorised)
        written.append(authorised)
    return written


def _create_pair(out: Path, name: str) -> list[Path]:
    """zmq.auth.create_certificates into a scratch folder, then each file moved in atomically."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".keys-") as scratch:
        public, secret = zmq.auth.create_certificates(scratch, name)
        os.chmod(secret, 0o600)
        paths = []
        for made in (Path(public), Path(secret)):
            destination = out / made.name
            os.replace(made, destination)
            paths.append(destination)
    return paths


# ------------------------------------------------------------------------------------ using keys
def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DdavsError(f"{path} is missing ({what}); make the keys with `ddavs-rt keys --out {path.parent}`")
    return path


def server_keys(folder: str | Path) -> tuple[CurveServer, Path]:
    """The publisher's key pair and the folder of authorised client public keys."""
    folder = Path(folder)
    server = CurveServer.from_certificate(_need(folder / f"{SERVER_NAME}.key_secret", "the publisher's secret key"))
    authorised = folder / AUTHORIZED_DIR
    if not authorised.is_dir() or not any(authorised.glob("*.key")):
        raise DdavsError(f"{authorised} holds no client keys: add one with `ddavs-rt keys --out {folder} --client NAME`")
    return server, authorised


def client_keys(folder: str | Path, client: str = DEFAULT_CLIENT) -> CurveClient:
    """A subscriber's keys: the server's public certificate and this client's secret one."""
    folder = Path(folder)
    return CurveClient.from_certificates(
        _need(folder / f"{SERVER_NAME}.key", "the publisher's public key"),
        _need(folder / f"{client}.key_secret", f"the secret key of client {client!r}"),
    )


class AuthorisedPublisher(Publisher):
    """A Publisher with CURVE on, admitting only the public keys in `authorised_dir`.

    It owns its context and the ZAP authenticator thread; `close()` stops both.
    """

    def __init__(
        self,
        endpoint: str,
        server: CurveServer,
        authorised_dir: str | Path,
        send_hwm: int = 50,
        drop_policy: Literal["slow-only", "all"] = "slow-only",
    ) -> None:
        self._auth_context = zmq.Context()
        # The authenticator must run before the socket binds, so the first handshake is checked.
        self._authenticator: ThreadAuthenticator | None = ThreadAuthenticator(self._auth_context, log=log)
        try:
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(authorised_dir))
            super().__init__(endpoint, send_hwm=send_hwm, curve=server, drop_policy=drop_policy,
                             context=self._auth_context)
        except BaseException:
            self._stop_authenticator()
            raise
        log.info("CURVE on: clients must hold a key from %s", authorised_dir)

    def close(self) -> None:
        super().close()
        self._stop_authenticator()

    def _stop_authenticator(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if not self._auth_context.closed:
            self._auth_context.term()


def open_publisher(endpoint: str, send_hwm: int = 50, curve_keys: str | Path | None = None) -> Publisher:
    """The runtime's publisher: plain, or CURVE with authorised clients when `curve_keys` is given."""
    if curve_keys is None:
        return Publisher(endpoint, send_hwm=send_hwm)
    server, authorised = server_keys(curve_keys)
    return AuthorisedPublisher(endpoint, server, authorised, send_hwm=send_hwm)


# ------------------------------------------------------------------------------------ the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the key files")
    parser.add_argument("--client", action="append", metavar="NAME",
                        help=f"make a client pair with this name (repeatable; default {DEFAULT_CLIENT!r})")
    parser.add_argument("--force", action="store_true", help="replace existing key pairs")


def run(args: argparse.Namespace) -> int:
    if not zmq.has("curve"):
        raise DdavsError("this libzmq has no CURVE support: install a pyzmq wheel built with libsodium")
    written = create_keys(args.out, args.client, force=args.force)
    for path in written:
        print(path)
    print(f"publisher: ddavs-rt ... --curve-keys {args.out}  (keep server.key_secret private)")
    print("subscriber: copy server.key and a client's .key_secret into a folder, then --curve-keys DIR")
    return 0
