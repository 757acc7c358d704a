"""`ddavs-rt calibrate`: INT8 post-training quantization of an exported ONNX file on representative clips.

    ddavs-rt calibrate --onnx model.onnx --data data/synthavs --out model.int8.xml --engine openvino [--clips 32]
    ddavs-rt calibrate --onnx model.onnx --data data/synthavs --out model.int8.onnx [--method entropy]
        [--check-data data/synthavs-test --check-clips 300]

`--engine openvino` (default when OpenVINO is installed): NNCF post-training quantization into an
OpenVINO IR (`openvino_int8.py`). `--engine onnxruntime`: ONNX Runtime's static Q/DQ quantization
(`quantize.py`; the form TensorRT consumes). `--check-data` then measures J&F of the fp32 graph and
the int8 file on those clips and records it in the int8 sidecar (`calibration.accuracy`); only a
checked file within 0.01 J&F is picked by `--backend auto`.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ddavs_rt.calibration.quantize import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_engine = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    parser.add_argument("--onnx", required=True, type=Path, help="fp32 ONNX from `ddavs-rt export`")
    parser.add_argument("--data", type=Path, default=None, help="SynthAVS (or AVSBench) dataset folder with clip folders")
    parser.add_argument("--out", required=True, type=Path, help="int8 file to write: NAME.xml (openvino) or NAME.onnx (onnxruntime); sidecar OUT.json")
    parser.add_argument("--engine", choices=["openvino", "onnxruntime"], default=default_engine,
                        help=f"which quantizer: NNCF for OpenVINO, or ONNX Runtime's Q/DQ (default here: {default_engine})")
    parser.add_argument("--clips", type=int, default=32, help="clips to calibrate on (5 samples each; default 32)")
    parser.add_argument("--method", choices=sorted(METHODS), default="entropy", help="onnxruntime calibration method")
    parser.add_argument("--cache-dir", type=Path, default=None, help="calibration range cache (default: ONNX_DIR/calibration_cache)")
    parser.add_argument("--check-data", type=Path, default=None, help="SynthAVS clips (not the calibration ones) to measure the J&F drop on")
    parser.add_argument("--check-clips", type=int, default=300, help="clips of --check-data to use (default 300)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the accuracy check")


def run(args: argparse.Namespace) -> int:
    from ddavs_rt.errors import ConfigError

    if args.engine == "openvino":
        from ddavs_rt.calibration.openvino_int8 import quantize_openvino

        if args.data is None:
            raise ConfigError("--engine openvino needs --data DIR (SynthAVS clips to calibrate on)")
        out = quantize_openvino(args.onnx, args.data, args.out, args.clips)
    else:
        from ddavs_rt.calibration.quantize import calibrate_onnx

        out = calibrate_onnx(args.onnx, args.data, args.out, args.clips, args.method, cache_dir=args.cache_dir)
    print(out)
    if args.check_data is not None:
        check = record_accuracy(args.onnx, out, args.engine, args.check_data, args.check_clips, args.threads)
        print(f"J&F on {check['clips']} clips: fp32 {check['jf_fp32']:.4f}, int8 {check['jf_int8']:.4f} (drop {check['jf_drop']:+.4f})")
    return 0


def record_accuracy(fp32: Path, int8: Path, engine: str, data: Path, clips: int, threads: int | None = None) -> dict:
    """Measure the J&F drop of `int8` against `fp32` and store it in the int8 sidecar."""
    from ddavs_rt.calibration.accuracy import engine_accuracy
    from ddavs_rt.engine import open_engine, read_onnx_sidecar, write_sidecar

    reference = open_engine(fp32, backend="onnxruntime", device="cpu", threads=threads)
    candidate = open_engine(int8, backend=f"{engine}:int8", device="cpu", threads=threads)
    check = engine_accuracy(reference, candidate, data, clips)
    sidecar = read_onnx_sidecar(int8)
    write_sidecar(int8, sidecar.model_copy(update={"calibration": {**(sidecar.calibration or {}), "accuracy": check}}))
    return check
