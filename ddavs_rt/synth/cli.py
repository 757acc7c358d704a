"""`ddavs-rt synth`: generate a SynthAVS dataset in the AVS-Semantic layout.

    ddavs-rt synth --out data/synthavs --clips 2000 --seed 0 --split train
    ddavs-rt synth --out data/synthavs --clips 300 --seed 1 --split val
    ddavs-rt synth --out data/synth_weak --clips 200 --seed 7 --subsets weak small

Train, validation and test sets must come from different seeds (clip uids carry the seed).
"""

from __future__ import annotations

import argparse
import time

from ddavs_rt.errors import ConfigError
from ddavs_rt.synth.scene import DEFAULT_MIX, KINDS
from ddavs_rt.synth.writer import write_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder (created; metadata.csv rows of other runs are kept)")
    parser.add_argument("--clips", type=int, required=True, help="number of clips to generate")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; use different seeds for train, val and test")
    parser.add_argument(
        "--subsets",
        nargs="+",
        choices=KINDS,
        default=None,
        metavar="KIND",
        help=f"kinds of clip to draw, from {', '.join(KINDS)} (default: a fixed mixture of all)",
    )
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (default 224)")
    parser.add_argument("--split", default="train", help="split name written to metadata.csv (default train)")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical for any number)")


def run(args: argparse.Namespace) -> int:
    if args.clips < 1:
        raise ConfigError(f"--clips must be at least 1, got {args.clips}")
    if args.size < 32:
        raise ConfigError(f"--size must be at least 32 pixels, got {args.size}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {args.seed}")
    kinds = {kind: DEFAULT_MIX[kind] for kind in args.subsets} if args.subsets else None
    start = time.perf_counter()
    rows = write_dataset(
        args.out, args.clips, args.seed, size=args.size, split=args.split, kinds=kinds, workers=args.workers,
        progress=not getattr(args, "quiet", False),
    )
    elapsed = time.perf_counter() - start
    counts: dict[str, int] = {}
    for row in rows:
        for tag in filter(None, row["tags"].split("|")):
            counts[tag] = counts.get(tag, 0) + 1
    summary = ", ".join(f"{tag} {counts[tag]}" for tag in sorted(counts))
    print(f"wrote {len(rows)} clips to {args.out} in {elapsed:.1f} s ({len(rows) / elapsed:.1f} clips/s); tags: {summary}")
    return 0
