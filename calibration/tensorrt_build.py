"""`ddavs-rt build-engine` (offline tool, installed as ddavs_rt.calibration.tensorrt_build): compile an exported ONNX file into a TensorRT engine.

    ddavs-rt build-engine --onnx model.onnx --precision fp16 [--timing-cache trt.cache] [--out FILE]

TensorRT 10.x: an explicit-batch network (the only kind in 10.x), builder precision flags
(FP16; INT8 for a Q/DQ graph: explicit quantization, the calibrator API is deprecated).
TensorRT 11.x: strongly typed networks only, no precision flags: the ONNX carries the precision.
fp16 then needs an fp16 graph (converted here with onnxconverter-common when it is installed,
else with onnxruntime.transformers.float16, which ships with onnxruntime; inputs and outputs keep
their types), and int8 needs the Q/DQ graph `ddavs-rt calibrate` writes (`--calib-data DIR`
runs that calibration first, for either version).

One optimization profile spans the sidecar's batch range (opt = --batch-opt, default the max).
The engine is written atomically with a sidecar (GPU, compute capability, TensorRT and CUDA
versions, precision, ONNX and checkpoint sha256). The timing cache is loaded only when its key
(GPU, compute capability, CUDA, TensorRT version, precision) matches, and saved after the build.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ddavs_rt.atomic import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file
from ddavs_rt.engine import OnnxSidecar, TensorRTSidecar, read_onnx_sidecar, write_sidecar
from ddavs_rt.engine.cuda_device import cuda_index
from ddavs_rt.engine.tensorrt_backend import gpu_identity, import_tensorrt  # the backend's own GPU/TensorRT probes
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Pure helpers (tested without TensorRT)
# --------------------------------------------------------------------------------------------


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def default_engine_path(onnx_path: Path, sidecar: OnnxSidecar, gpu_name: str, precision: str) -> Path:
    """`{model}_b{max batch}_{gpu}_{precision}.engine` beside the ONNX file."""
    gpu = "".join(ch.lower() if ch.isalnum() else "-" for ch in gpu_name).strip("-")
    gpu = "-".join(part for part in gpu.split("-") if part)
    name = sidecar.config.get("name", onnx_path.stem)
    return onnx_path.with_name(f"{name}_b{sidecar.batch_max}_{gpu}_{precision}.engine")


def timing_cache_key(*, gpu_name: str, compute_capability: str, cuda_version: str | None,
                     tensorrt_version: str, precision: str) -> dict[str, Any]:
    return {"gpu_name": gpu_name, "compute_capability": compute_capability, "cuda_version": cuda_version,
            "tensorrt_version": tensorrt_version, "precision": precision}


def timing_cache_key_path(cache_path: str | Path) -> Path:
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.name + ".key.json")


def load_timing_cache_bytes(cache_path: str | Path | None, key: dict[str, Any]) -> bytes:
    """The cache's bytes when its key file matches `key`, else b'' (a fresh cache)."""
    if cache_path is None:
        return b""
    cache_path = Path(cache_path)
    key_path = timing_cache_key_path(cache_path)
    if not cache_path.is_file() or not key_path.is_file():
        return b""
    try:
        stored = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        stored = None
    if stored != key:
        log.info("timing cache %s was made for %s, not %s: starting a fresh one", cache_path, stored, key)
        return b""
    return cache_path.read_bytes()


def save_timing_cache_bytes(cache_path: str | Path, data: bytes, key: dict[str, Any]) -> None:
    atomic_write_bytes(cache_path, data)
    atomic_write_text(timing_cache_key_path(cache_path), json.dumps(key, indent=2) + "\n")


STRONGLY_TYPED_SINCE = (10, 12)  # the FP16/INT8 builder flags are deprecated from here (11: removed)


def tensorrt_version_tuple(version: str | int) -> tuple[int, int]:
    """'10.12.0.36' -> (10, 12); a bare major (10) -> (10, 0)."""
    if isinstance(version, int):
        return version, 0
    parts = [int(p) for p in str(version).split(".")[:2] if p.isdigit()]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def precision_plan(precision: str, onnx_precision: str, trt_version: str | int) -> dict[str, Any]:
    """What the build must do for a requested precision, given the ONNX's own precision.

    TensorRT 10.12+ and 11 build strongly typed networks (the graph carries the precision): fp16
    from an fp32 ONNX converts it to fp16 first (front-end fp32), and int8 converts the Q/DQ ONNX
    to fp16 everywhere outside the Q/DQ nodes, so layers that are not quantized run fp16, not fp32.
    TensorRT 10.0-10.11 build with precision flags and pin the front-end's layers to fp32.

    Returns {"strongly_typed", "flags": [BuilderFlag names], "convert_fp16", "keep_qdq",
    "fp32_front_end"}. Raises ConfigError for combinations that cannot work (e.g. int8 from a
    graph without Q/DQ).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"--precision must be fp32, fp16 or int8, not {precision!r}")
    if precision == "int8" and onnx_precision != "int8":
        raise ConfigError(
            "int8 needs a Q/DQ ONNX: run `ddavs-rt calibrate --onnx MODEL.onnx --data DIR --out MODEL.int8.onnx` "
            "and build from it, or pass --calib-data DIR"
        )
    if precision != "int8" and onnx_precision == "int8":
        raise ConfigError(f"this ONNX is int8 (Q/DQ); build it with --precision int8, or use the fp32 export for {precision}")
    if precision == "fp32" and onnx_precision == "fp16":
        raise ConfigError("this ONNX is fp16; build it with --precision fp16, or use the fp32 export for fp32")
    if tensorrt_version_tuple(trt_version) >= STRONGLY_TYPED_SINCE:
        convert = precision in ("fp16", "int8") and onnx_precision in ("fp32", "int8")
        return {"strongly_typed": True, "flags": [], "convert_fp16": convert, "keep_qdq": precision == "int8",
                "fp32_front_end": False}
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    if flags:
        flags = flags + ["OBEY_PRECISION_CONSTRAINTS"]  # the front-end layers pinned to fp32
    return {"strongly_typed": False, "flags": flags, "convert_fp16": False, "keep_qdq": False,
            "fp32_front_end": bool(flags)}


# --------------------------------------------------------------------------------------------
# fp16 conversion (strongly typed builds)
# --------------------------------------------------------------------------------------------

FRONT_END_CLASS = "ddavs_rt.model.frontend.LogMel"  # the exporter records each node's module path
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def front_end_nodes(model) -> list[str]:
    """Names of the audio front-end's nodes (waveform -> log-mel) in an ONNX from `ddavs-rt export`.

    The front-end stays fp32 in every precision: in fp16 its decibel floor (1e-10) is 0 and a
    full-scale tone's power spectrum passes 65504, so silence gives -inf and a loud tone NaN."""
    names = []
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.class_hierarchy" and FRONT_END_CLASS in prop.value:
                names.append(node.name)
                break
    return names


def _float16_module():
    try:
        from onnxconverter_common import float16  # optional

        return float16, "onnxconverter-common"
    except ImportError:
        from onnxruntime.transformers import float16

        return float16, "onnxruntime.transformers.float16"


def fp16_model(model, keep_qdq: bool = False):
    """An fp16 copy of an fp32 (or Q/DQ int8) ONNX model: inputs and outputs keep their types, the
    audio front-end stays fp32, and with `keep_qdq` the Q/DQ nodes stay fp32 too (fp16 everywhere
    outside them: the strongly typed int8 build). Returns (model, converter name)."""
    float16, tool = _float16_module()
    keep = front_end_nodes(model)
    if not keep:
        raise CheckpointError("no audio front-end nodes found in this ONNX (export it with `ddavs-rt export`): "
                              "converting it to fp16 whole would make silence -inf")
    op_block = list(float16.DEFAULT_OP_BLOCK_LIST) + (list(QDQ_OPS) if keep_qdq else [])
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, op_block_list=op_block)
    drop_fp16_round_trips(converted, tuple(keep) + tuple(op_block))
    from ddavs_rt.engine.export import sort_topologically

    sort_topologically(converted.graph)  # the converter appends its Casts at the end
    return converted, tool


def drop_fp16_round_trips(model, kept_ops: list[str] | tuple[str, ...] = ()) -> int:
    """Remove fp32 -> fp16 -> fp32 Cast pairs: the converter casts every kept-fp32 node's output to
    fp16 and back before the next kept node, which would round the front-end's power spectrum
    and decibel floor through fp16 after all. A consumer of such a pair reads the fp32 tensor
    directly; the fp16 cast stays only where an fp16 node reads it. An fp32 tensor is a graph
    input, an initializer or a Cast-to-float output of type float, or any output of a node the
    converter kept (it casts only float tensors). Returns the pairs removed."""
    import onnx

    graph = model.graph
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    fp32 = {t.name for t in graph.initializer if t.data_type == float32}
    fp32 |= {v.name for v in graph.input if v.type.tensor_type.elem_type == float32}
    cast_to = {}
    for node in graph.node:
        if node.op_type == "Cast":
            cast_to[node.output[0]] = (node, next(a.i for a in node.attribute if a.name == "to"))
        elif node.op_type in kept_ops or node.name in kept_ops:
            fp32.update(node.output)
    fp32 |= {name for name, (_, to) in cast_to.items() if to == float32}
    renamed: dict[str, str] = {}
    dropped = []
    for node in graph.node:
        if node.op_type != "Cast" or cast_to[node.output[0]][1] != float32:
            continue
        source = cast_to.get(node.input[0])
        if source is None or source[1] != float16 or source[0].input[0] not in fp32:
            continue
        renamed[node.output[0]] = source[0].input[0]
        dropped.append(node)
    outputs = {v.name for v in graph.output}
    dropped = [node for node in dropped if node.output[0] not in outputs]
    if not dropped:
        return 0
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for node in dropped:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | outputs
    for node in [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]:
        graph.node.remove(node)  # an fp16 cast no fp16 node reads any more
    return len(dropped)


def convert_onnx_to_fp16(onnx_path: Path, out_path: Path, keep_qdq: bool | None = None) -> tuple[Path, str]:
    """Write an fp16 copy of an fp32 or Q/DQ ONNX (see `fp16_model`) and its sidecar (precision
    fp16, or int8 for a Q/DQ source; `source_onnx_sha256` names the source)."""
    import onnx

    sidecar = read_onnx_sidecar(onnx_path)
    if keep_qdq is None:
        keep_qdq = sidecar.precision == "int8"
    converted, tool = fp16_model(onnx.load(str(onnx_path)), keep_qdq=keep_qdq)
    with atomic_path(out_path) as tmp:
        onnx.save(converted, str(tmp))
    precision = "int8" if keep_qdq else "fp16"
    write_sidecar(out_path, sidecar.model_copy(update={
        "precision": precision, "source_onnx_sha256": sha256_file(onnx_path),
        "exporter": f"{sidecar.exporter}; {tool} fp16 from {onnx_path.name} (front-end{' and Q/DQ' if keep_qdq else ''} fp32)",
    }))
    log.info("converted %s to fp16 with %s (front-end%s kept fp32) -> %s", onnx_path.name, tool,
             " and Q/DQ" if keep_qdq else "", out_path)
    return out_path, tool


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def build_engine(
    onnx_path: str | Path,
    precision: str = "fp16",
    out: str | Path | None = None,
    calib_data: str | Path | None = None,
    timing_cache: str | Path | None = None,
    batch_opt: int | None = None,
    workspace_gib: float | None = None,
    device: str | None = None,
) -> Path:
    """Build and write a TensorRT engine (+ sidecar) on the GPU `device` names (`cuda:N`; default
    the first visible one): an engine is built for, named after and checked against that GPU."""
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CheckpointError(f"{onnx_path}: ONNX file not found; export one with `ddavs-rt export --checkpoint DIR --out {onnx_path}`")
    index = cuda_index(device)
    gpu_name, capability, cuda_version = gpu_identity(index)  # one line if the machine has no GPU `index`
    import torch

    torch.cuda.set_device(index)  # TensorRT's builder works on the current CUDA device
    if precision == "int8" and calib_data is not None:
        onnx_path = _calibrate_first(onnx_path, Path(calib_data))
    sidecar = read_onnx_sidecar(onnx_path)
    plan = precision_plan(precision, sidecar.precision, trt.__version__)
    front_end: list[str] = []
    if plan["fp32_front_end"]:
        import onnx

        front_end = front_end_nodes(onnx.load(str(onnx_path), load_external_data=False))
    if plan["convert_fp16"]:
        onnx_path, _ = convert_onnx_to_fp16(onnx_path, onnx_path.with_name(onnx_path.stem + ".fp16.onnx"),
                                            keep_qdq=plan["keep_qdq"])
        sidecar = read_onnx_sidecar(onnx_path)
    out = Path(out) if out else default_engine_path(onnx_path, sidecar, gpu_name, precision)
    bmin, bmax = sidecar.batch_min, sidecar.batch_max
    bopt = min(max(batch_opt or bmax, bmin), bmax)
    key = timing_cache_key(gpu_name=gpu_name, compute_capability=capability, cuda_version=cuda_version,
                           tensorrt_version=trt.__version__, precision=precision)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan["strongly_typed"] else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log.info("parsing %s", onnx_path)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise CheckpointError(f"{onnx_path}: TensorRT's ONNX parser rejected it: {errors}")
    config = builder.create_builder_config()
    for flag in plan["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if front_end:
        pinned = pin_layers_fp32(trt, network, set(front_end))
        log.info("%d audio front-end layers pinned to fp32", pinned)
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _add_profile(builder, config, network, bmin, bopt, bmax)
    cache = config.create_timing_cache(load_timing_cache_bytes(timing_cache, key))
    config.set_timing_cache(cache, False)

    log.info("building a %s TensorRT %s engine for %s (batch %d/%d/%d); this takes minutes",
             precision, trt.__version__, gpu_name, bmin, bopt, bmax)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DdavsError(f"{onnx_path}: the TensorRT build failed (see the TensorRT log above)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(serialized))
    write_sidecar(out, TensorRTSidecar(
        onnx=sidecar, onnx_path=str(onnx_path), onnx_sha256=sha256_file(onnx_path),
        checkpoint_sha256=sidecar.checkpoint_sha256, precision=precision,  # type: ignore[arg-type]
        tensorrt_version=trt.__version__, gpu_name=gpu_name, compute_capability=capability,
        cuda_version=cuda_version, batch_min=bmin, batch_opt=bopt, batch_max=bmax,
        strongly_typed=plan["strongly_typed"],
    ))
    if timing_cache:
        save_timing_cache_bytes(timing_cache, bytes(config.get_timing_cache().serialize()), key)
    log.info("wrote %s", out)
    return out


def pin_layers_fp32(trt, network, names: set[str]) -> int:
    """Run the layers the ONNX parser made from these nodes (layer name = node name) in fp32 (a
    weakly typed fp16/int8 build with OBEY_PRECISION_CONSTRAINTS). Returns how many were pinned."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in names or layer.name.split(" ")[0] in names:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def _add_profile(builder, config, network, bmin: int, bopt: int, bmax: int) -> None:
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]  # everything after the dynamic batch dim
        if any(d < 0 for d in rest):
            raise CheckpointError(f"input {tensor.name} has dynamic non-batch dims {tuple(tensor.shape)}; re-export with fixed H, W, S")
        profile.set_shape(tensor.name, (bmin, *rest), (bopt, *rest), (bmax, *rest))
    config.add_optimization_profile(profile)


def _calibrate_first(onnx_path: Path, data: Path) -> Path:
    from ddavs_rt.calibration.quantize import calibrate_onnx  # offline tool, imported only here

    out = onnx_path.with_name(onnx_path.stem + ".int8.onnx")
    return calibrate_onnx(onnx_path, data, out)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, type=Path, help="ONNX file from `ddavs-rt export` (or `calibrate` for int8)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    parser.add_argument("--calib-data", type=Path, default=None, help="int8: calibrate on these SynthAVS clips first")
    parser.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file (reused when it matches)")
    parser.add_argument("--batch-opt", type=int, default=None, help="batch size to tune for (default: the max)")
    parser.add_argument("--workspace-gib", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="engine file (default: {model}_b{max}_{gpu}_{precision}.engine)")
    parser.add_argument("--device", default=None, metavar="cuda:N", help="the GPU to build for (default: the first visible one)")


def run(args: argparse.Namespace) -> int:
    out = build_engine(args.onnx, args.precision, args.out, args.calib_data, args.timing_cache, args.batch_opt, args.workspace_gib,
                       device=args.device)
    print(out)
    return 0
