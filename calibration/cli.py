"""`ddavs-rt calibrate`: INT8 Q/DQ quantization of an exported ONNX file on representative clips.

    ddavs-rt calibrate --onnx model.onnx --data data/synthavs --out model.int8.onnx [--clips 32] [--method entropy]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ddavs_rt.calibration.quantize import METHODS, calibrate_onnx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, type=Path, help="fp32 ONNX from `ddavs-rt export`")
    parser.add_argument("--data", type=Path, default=None, help="SynthAVS (or AVSBench) dataset folder with clip folders")
    parser.add_argument("--out", required=True, type=Path, help="int8 Q/DQ ONNX to write (sidecar: OUT.json)")
    parser.add_argument("--clips", type=int, default=32, help="clips to calibrate on (5 samples each; default 32)")
    parser.add_argument("--method", choices=sorted(METHODS), default="entropy")
    parser.add_argument("--cache-dir", type=Path, default=None, help="calibration range cache (default: ONNX_DIR/calibration_cache)")


def run(args: argparse.Namespace) -> int:
    out = calibrate_onnx(args.onnx, args.data, args.out, args.clips, args.method, cache_dir=args.cache_dir)
    print(out)
    return 0
