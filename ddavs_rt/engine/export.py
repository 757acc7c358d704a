"""`ddavs-rt export`: a checkpoint folder -> one ONNX graph + its sidecar.

    ddavs-rt export --checkpoint runs/tiny --out model.onnx [--batch 1-32] [--opset 18]

The whole engine contract is in the graph: uint8 frames [batch, H, W, 3] and float32 audio
[batch, S] in, float32 `mask_logits` [batch, K, H, W] out, with normalisation, resizing and the
log-mel front-end inside, and the prototype bank baked in as a constant (it is a buffer of the
model). H = W = cfg.input_size and S = cfg.window_samples are fixed; the batch dim is dynamic
between the --batch bounds. The dynamo exporter (`torch.onnx.export(dynamo=True)`) is used: the
legacy exporter bakes attention reshapes to the example batch size.

After export: `onnx.checker.check_model`, a check against TensorRT's ONNX operator list (a
warning per operator TensorRT would refuse), then the file is moved into place atomically and
the sidecar `<out>.json` is written.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from ddavs_rt.atomic import atomic_path, sha256_file
from ddavs_rt.config import dump_config
from ddavs_rt.engine.sidecar import OnnxSidecar, TensorInfo, sidecar_path, write_sidecar
from ddavs_rt.engine.torch_backend import model_id_for
from ddavs_rt.engine.trt_ops import tensorrt_problems
from ddavs_rt.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
INPUT_NAMES = ("frames", "audio")
OUTPUT_NAME = "mask_logits"


def parse_batch_range(text: str) -> tuple[int, int]:
    """'1-32' -> (1, 32); '8' -> (8, 8)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise ConfigError(f"--batch {text!r}: expected MIN-MAX (e.g. 1-32) or one size (e.g. 8)")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low < 1 or high < low:
        raise ConfigError(f"--batch {text!r}: need 1 <= MIN <= MAX")
    return low, high


def export_checkpoint(checkpoint: str | Path, out: str | Path, batch: tuple[int, int] = (1, 32),
                      opset: int = DEFAULT_OPSET) -> Path:
    """Export a checkpoint folder to `out` (+ `out.json`); returns `out`."""
    import onnx
    import torch

    from ddavs_rt.model.checkpoint import load_checkpoint

    folder = Path(checkpoint)
    out = Path(out)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no model.safetensors; pass a checkpoint folder written by `ddavs-rt train`")
    bmin, bmax = batch
    for noisy in ("onnx_ir", "onnxscript"):  # per-initializer INFO lines from the exporter's passes
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
    log.info("[1/5] loading %s", folder)
    model, cfg = load_checkpoint(folder)
    model = model.eval().cpu()
    size, samples = cfg.input_size, cfg.window_samples

    example_batch = min(max(2, bmin), bmax)  # not 1: torch.export specialises a size-1 dim
    frames = torch.randint(0, 256, (example_batch, size, size, 3), dtype=torch.uint8)
    audio = (torch.rand(example_batch, samples) * 2 - 1) * 0.5
    dynamic_shapes = None
    if bmax > bmin:
        batch_dim = torch.export.Dim("batch", min=bmin, max=bmax)
        dynamic_shapes = {"frames": {0: batch_dim}, "audio": {0: batch_dim}}

    log.info("[2/5] exporting with the dynamo exporter (opset %d, batch %d-%d)", opset, bmin, bmax)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            model, (frames, audio), dynamo=True, opset_version=opset,
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
        )
    proto = program.model_proto

    log.info("[3/5] checking the graph")
    problems = tensorrt_problems(proto)
    for problem in problems:
        log.warning("TensorRT compatibility: %s", problem)

    log.info("[4/5] writing %s", out)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
        onnx.checker.check_model(str(tmp))

    log.info("[5/5] writing %s", sidecar_path(out))
    checkpoint_sha = sha256_file(weights)
    bank_file = folder / "bank.safetensors"
    batch_name: int | str = "batch" if bmax > bmin else bmin
    k = cfg.decoder.num_classes
    write_sidecar(out, OnnxSidecar(
        model_id=model_id_for(cfg.name, checkpoint_sha),
        config=dump_config(cfg),
        checkpoint_sha256=checkpoint_sha,
        bank_sha256=sha256_file(bank_file) if bank_file.is_file() else None,
        opset=opset,
        inputs=[TensorInfo(name="frames", dtype="uint8", shape=[batch_name, size, size, 3]),
                TensorInfo(name="audio", dtype="float32", shape=[batch_name, samples])],
        outputs=[TensorInfo(name=OUTPUT_NAME, dtype="float32", shape=[batch_name, k, size, size])],
        batch_min=bmin, batch_max=bmax, precision="fp32",
        exporter=f"torch {torch.__version__} (dynamo), onnx {onnx.__version__}",
    ))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (config.json, model.safetensors)")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write; its sidecar goes to OUT.json")
    parser.add_argument("--batch", default="1-32", help="dynamic batch range MIN-MAX (default 1-32)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET}, >= 17)")


def run(args: argparse.Namespace) -> int:
    if args.opset < 17:
        raise ConfigError(f"--opset {args.opset}: use 17 or newer (LayerNormalization as one node)")
    out = export_checkpoint(args.checkpoint, args.out, parse_batch_range(args.batch), args.opset)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB), sidecar {sidecar_path(out)}")
    return 0
