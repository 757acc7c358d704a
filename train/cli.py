"""`ddavs-rt train --config configs/train/NAME.yaml [--resume] [--out DIR] [--epochs N] [--max-steps N] [--seed N]`.

Under torchrun (`torchrun --nproc-per-node N -m ddavs_rt.cli train ...`) every process trains
its shard with DistributedDataParallel; rank 0 writes the log and the checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last")
    parser.add_argument("--out", default=None, help="output folder (default: the config's out_dir)")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed (weights, data order, augmentation)")


def run(args: argparse.Namespace) -> int:
    from .trainer import Trainer, load_train_config

    cfg = load_train_config(args.config)
    updates = {}
    if args.epochs is not None:
        updates["epochs"] = args.epochs
    if args.max_steps is not None:
        updates["max_steps"] = args.max_steps
    if args.seed is not None:
        updates["seed"] = args.seed
    if updates:
        cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    trainer = Trainer(cfg, Path(args.out) if args.out else None, resume=args.resume, config_dir=Path(args.config).resolve().parent)
    try:
        row = trainer.fit()
    finally:
        trainer.close()
    if trainer.is_main:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float))
        print(f"trained to step {trainer.step} (epoch {trainer.epoch}); {summary}; checkpoints in {trainer.out_dir}")
    return 0
