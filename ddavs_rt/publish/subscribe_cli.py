"""`ddavs-rt subscribe`: print (and optionally save) the masks a ddavs-rt publisher sends.

    ddavs-rt subscribe --connect tcp://HOST:5555 [--topic ddavs/cam1 ...] [--save DIR]
                       [--count N] [--timeout S] [--latest-only]

One line per message: stream, sequence number, frame time, latency, classes. With --save DIR:
DIR/<stream>/<seq>_mask.png and <seq>_overlay.jpg (the bytes as received, each written
atomically) and DIR/headers.jsonl (one header per line, each line written with one append).
Exit status: 0 when at least one message came (or --count was reached), 1 when --timeout
passed with no message at all, 2 on a bad option or endpoint.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ddavs_rt.atomic import atomic_write_bytes
from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.curve import CurveClient
from ddavs_rt.publish.schema import TOPIC_PREFIX, DecodedFrame
from ddavs_rt.publish.subscriber import Subscriber


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", required=True, metavar="ENDPOINT", help="publisher endpoint, e.g. tcp://127.0.0.1:5555")
    parser.add_argument(
        "--topic", action="append", metavar="PREFIX",
        help=f"topic prefix to receive (repeatable; default {TOPIC_PREFIX!r}: every stream)",
    )
    parser.add_argument("--save", type=Path, metavar="DIR", help="save masks, overlays and headers here")
    parser.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages (default: never)")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop when no message came for S seconds")
    parser.add_argument("--latest-only", action="store_true", help="skip queued frames, keep the newest per stream")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="CURVE: the publisher's public certificate")
    parser.add_argument("--client-key", type=Path, metavar="FILE", help="CURVE: this client's secret certificate")
    parser.add_argument("--curve-keys", type=Path, metavar="DIR",
                        help="CURVE: a folder from `ddavs-rt keys` (server.key and client.key_secret)")


def run(args: argparse.Namespace) -> int:
    if args.count < 0:
        raise DdavsError(f"--count must be 0 (no limit) or more, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise DdavsError(f"--timeout must be positive seconds, got {args.timeout}")
    if args.client_key and not args.server_key:
        raise DdavsError("--client-key needs --server-key (the publisher's public certificate)")
    curve = CurveClient.from_certificates(args.server_key, args.client_key) if args.server_key else None
    if args.curve_keys is not None:
        if args.server_key:
            raise DdavsError("give either --curve-keys DIR or --server-key/--client-key, not both")
        from ddavs_rt.publish.keys import client_keys

        curve = client_keys(args.curve_keys)
    topics = args.topic or [TOPIC_PREFIX]
    received = 0
    with Subscriber(args.connect, topics=topics, latest_only=args.latest_only, curve=curve) as subscriber:
        while args.count == 0 or received < args.count:
            frame = subscriber.recv(args.timeout)
            if frame is None:
                print(f"no message for {args.timeout} s on {args.connect}; stopping after {received}")
                break
            received += 1
            print(describe(frame), flush=True)
            if args.save is not None:
                save_frame(args.save, frame)
        if subscriber.missed or subscriber.malformed:
            print(f"missed {subscriber.missed} frames (sequence gaps), skipped {subscriber.malformed} malformed messages")
    return 0 if received else 1


def describe(frame: DecodedFrame) -> str:
    h = frame.header
    classes = ", ".join(f"{c.name}:{c.pixels}px@{c.score:.2f}" for c in h.classes) or "none"
    parts = [
        f"{h.stream_id} seq={h.seq} t={h.frame_time:.3f}s",
        f"to-publish={h.latency.capture_to_publish_ms:.1f}ms (infer {h.latency.infer_ms:.1f})",
        f"classes=[{classes}]",
    ]
    if not h.audio_window.complete:
        parts.append(f"audio_gap={h.audio_window.gap_fraction:.0%}")
    if h.silent_audio:
        parts.append("silent")
    if h.ground_truth:
        parts.append(" ".join(f"{k}={v:.3f}" for k, v in h.ground_truth.items()))
    return " ".join(parts)


def save_frame(folder: Path, frame: DecodedFrame) -> None:
    h = frame.header
    stem = folder / h.stream_id / f"{h.seq:08d}"
    atomic_write_bytes(stem.with_name(stem.name + "_mask.png"), frame.mask_png)
    if frame.overlay_jpeg:
        atomic_write_bytes(stem.with_name(stem.name + "_overlay.jpg"), frame.overlay_jpeg)
    line = (json.dumps(h.model_dump(mode="json", by_alias=True)) + "\n").encode("utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "headers.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write per line: a reader never sees half a header
    finally:
        os.close(fd)
