"""`ddavs-rt export`: a checkpoint folder -> one ONNX graph + its sidecar.

    ddavs-rt export --checkpoint runs/tiny --out model.onnx [--batch 1-32] [--opset 18]

The whole engine contract is in the graph: uint8 frames [batch, H, W, 3] and float32 audio
[batch, S] in, float32 `mask_logits` [batch, K, H, W] out, with normalisation, resizing and the
log-mel front-end inside, and the prototype bank baked in as a constant (it is a buffer of the
model). H = W = cfg.input_size and S = cfg.window_samples are fixed; the batch dim is dynamic
between the --batch bounds. The dynamo exporter (`torch.onnx.export(dynamo=True)`) is used: the
legacy exporter bakes attention reshapes to the example batch size.

After export: shape reads of the uint8 `frames` input are moved onto its float cast (same
shape; TensorRT's Shape takes no uint8), `onnx.checker.check_model`, then the check against the
documented rules of TensorRT's ONNX parser (`trt_ops`: opset, operators, types, no uint8 inside
the graph, attribute restrictions): a graph that breaks them is refused with one line (unless
`--no-tensorrt-check`, for an ONNX Runtime-only graph). Then the file is moved into place
atomically and the sidecar `<out>.json` is written.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from ddavs_rt.atomic import atomic_path
from ddavs_rt.engine.sidecar import OnnxSidecar, TensorInfo, sidecar_path, write_sidecar
from ddavs_rt.engine.identity import checkpoint_identity, read_config_dict
from ddavs_rt.engine.trt_ops import problems_line, tensorrt_problems
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

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


class TensorRTRulesError(DdavsError):
    """The exported graph breaks the documented rules of TensorRT's ONNX parser."""


def move_shape_reads_off_uint8_inputs(model) -> int:
    """Point every Shape/Size node that reads a uint8 graph input at that input's Cast instead.

    The cast output has the input's shape, so the graph computes the same; TensorRT's Shape and
    Size take no uint8 tensor (operators.md), so a uint8 input may meet only its Cast. Returns
    how many nodes were moved."""
    import onnx

    uint8_inputs = {v.name for v in model.graph.input if v.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    casts = {}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input and node.input[0] in uint8_inputs:
            casts.setdefault(node.input[0], node.output[0])
    moved = 0
    for node in model.graph.node:
        if node.op_type in ("Shape", "Size") and node.input and node.input[0] in casts:
            node.input[0] = casts[node.input[0]]
            moved += 1
    if moved:  # a Cast now feeds nodes placed before it: restore the topological order
        sort_topologically(model.graph)
    return moved


def sort_topologically(graph) -> None:
    ready = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # inputs from an outer scope or a cycle: keep the rest as they were
            ordered.extend(rest)
            break
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def check_graph_for_tensorrt(model, out: str | Path, refuse: bool = True) -> list[str]:
    """Raise TensorRTRulesError (one line) when `model` breaks TensorRT's ONNX parser rules; with
    refuse=False, log each problem as a warning instead. Returns the problems."""
    problems = tensorrt_problems(model)
    if problems and refuse:
        raise TensorRTRulesError(f"{out}: not written: {problems_line(problems)}; fix the model, "
                                 "or pass --no-tensorrt-check for an ONNX Runtime-only graph")
    for problem in problems:
        log.warning("TensorRT compatibility: %s", problem)
    return problems


def export_checkpoint(checkpoint: str | Path, out: str | Path, batch: tuple[int, int] = (1, 32),
                      opset: int = DEFAULT_OPSET, check_tensorrt: bool = True) -> Path:
    """Export a checkpoint folder to `out` (+ `out.json`); returns `out`.

    Raises TensorRTRulesError (one line) when the graph breaks TensorRT's ONNX parser rules,
    unless `check_tensorrt` is False (then each problem is a warning)."""
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
    move_shape_reads_off_uint8_inputs(proto)

    log.info("[3/5] checking the graph against TensorRT's ONNX parser rules")
    check_graph_for_tensorrt(proto, out, refuse=check_tensorrt)

    log.info("[4/5] writing %s", out)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
        onnx.checker.check_model(str(tmp))

    log.info("[5/5] writing %s", sidecar_path(out))
    identity = checkpoint_identity(folder)
    batch_name: int | str = "batch" if bmax > bmin else bmin
    k = cfg.decoder.num_classes
    write_sidecar(out, OnnxSidecar(
        model_id=identity.model_id,
        config=read_config_dict(folder),  # as stored: its checksum is part of model_id
        checkpoint_sha256=identity.weights_sha256,
        bank_sha256=identity.bank_sha256,
        config_sha256=identity.config_sha256,
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
    parser.add_argument("--no-tensorrt-check", action="store_true",
                        help="write a graph that breaks TensorRT's ONNX parser rules (warnings only; for ONNX Runtime)")


def run(args: argparse.Namespace) -> int:
    if args.opset < 17:
        raise ConfigError(f"--opset {args.opset}: use 17 or newer (LayerNormalization as one node)")
    out = export_checkpoint(args.checkpoint, args.out, parse_batch_range(args.batch), args.opset,
                            check_tensorrt=not args.no_tensorrt_check)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB), sidecar {sidecar_path(out)}")
    return 0
