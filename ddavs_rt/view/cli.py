"""`ddavs-rt view --connect ENDPOINT [--http 127.0.0.1:8080] [--curve-keys DIR]`: the live web page.

Serves until Ctrl-C or SIGTERM. The page binds loopback by default: it shows the video, so bind
beyond loopback only on a network you trust.
"""

from __future__ import annotations

import argparse
import signal
import threading

from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.keys import DEFAULT_CLIENT, client_keys
from ddavs_rt.view.server import Viewer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", required=True, metavar="ENDPOINT", help="publisher endpoint, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT", help="where to serve the page")
    parser.add_argument("--curve-keys", metavar="DIR", help="CURVE keys from `ddavs-rt keys` (server.key, client.key_secret)")
    parser.add_argument("--curve-client", default=DEFAULT_CLIENT, metavar="NAME", help="which client key pair to use")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")


def parse_http(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise DdavsError(f"--http {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    curve = client_keys(args.curve_keys, args.curve_client) if args.curve_keys else None
    viewer = Viewer(args.connect, parse_http(args.http), curve=curve)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        host, port = viewer.start()
        print(f"ddavs-rt view: http://{host}:{port}/ showing {args.connect}", flush=True)
        stop.wait(args.duration)
    finally:
        viewer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
