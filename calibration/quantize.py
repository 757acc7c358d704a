"""INT8 post-training quantization of an exported ONNX graph into a Q/DQ graph.

    calibrate_onnx("model.onnx", "data/synthavs", "model.int8.onnx", clips=32, method="entropy")

`onnxruntime.quantization.quantize_static` with QuantFormat.QDQ, symmetric int8 activations and
per-channel symmetric int8 weights (zero points 0: what TensorRT's explicit quantization accepts,
and ONNX Runtime runs the same file on the CPU). The audio front-end (STFT convolution, mel,
log) and the final classifier stay fp32 (`nodes_to_exclude`, found by the exporter's module
scopes): log-mel values span orders of magnitude and the logits are what users threshold, so
quantizing them costs accuracy for little speed.

Calibration ranges are cached as JSON keyed by the ONNX file's sha256 and the method; a later
run on the same ONNX reuses them without reading the data at all.
"""

from __future__ import annotations

import ast
import logging
import tempfile
from pathlib import Path

import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

from ddavs_rt.atomic import atomic_path, sha256_file
from ddavs_rt.calibration.reader import ClipCalibrationReader
from ddavs_rt.engine import read_onnx_sidecar, write_sidecar
from ddavs_rt.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
FP32_SCOPES = ("audio_encoder.frontend", "decoder.classifier")


def nodes_in_scopes(model: onnx.ModelProto, scopes: tuple[str, ...] = FP32_SCOPES) -> list[str]:
    """Names of nodes the exporter attributed to any of these module scopes (e.g. the front-end)."""
    names = []
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key != "pkg.torch.onnx.name_scopes":
                continue
            try:
                node_scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            if any(scope in node_scopes for scope in scopes):
                names.append(node.name)
    return names


def calibrator_options(method: str) -> dict:
    """Calibrator settings.

    Entropy: 512 histogram bins searched down to 128 quantized bins. `quantize_static` leaves
    both at 128, where the KL search has one candidate (the full range) and entropy calibration
    silently equals min-max; TensorRT's 2048 bins make onnxruntime's pure-Python search take
    about 5 minutes for ddavs-tiny on 2 cores (about 1000 candidates x 700 tensors).
    """
    options: dict = {"symmetric": True}
    if method == "entropy":
        options.update(num_bins=512, num_quantized_bins=128)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=99.99)
    return options


def collect_ranges(onnx_path: Path, reader: CalibrationDataReader, method: str, cache: Path) -> None:
    """Run the calibration data through an augmented copy of the graph; save the tensor ranges."""
    with tempfile.TemporaryDirectory(prefix="ddavs-calib.") as scratch:
        calibrator = create_calibrator(
            onnx_path, None, augmented_model_path=str(Path(scratch) / "augmented.onnx"),
            calibrate_method=METHODS[method], extra_options=calibrator_options(method),
        )
        log.info("collecting %s calibration statistics", method)
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache, smooth_quant=False)  # written atomically by onnxruntime
    log.info("saved calibration ranges to %s", cache)


def cache_path_for(onnx_path: Path, onnx_sha256: str, method: str, cache_dir: Path | None = None) -> Path:
    folder = cache_dir or onnx_path.parent / "calibration_cache"
    return folder / f"{onnx_path.stem}.{onnx_sha256[:16]}.{method}.ranges.json"


def calibrate_onnx(
    onnx_path: str | Path,
    data: str | Path | None,
    out: str | Path,
    clips: int = 32,
    method: str = "entropy",
    reader: CalibrationDataReader | None = None,
    cache_dir: str | Path | None = None,
    keep_fp32: tuple[str, ...] = FP32_SCOPES,
) -> Path:
    """Write `out` (Q/DQ int8 ONNX) and its sidecar; returns `out`.

    `reader` overrides the clip reader over `data` (it is not called at all on a cache hit).
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    sidecar = read_onnx_sidecar(onnx_path)
    if sidecar.precision != "fp32":
        raise ConfigError(f"{onnx_path}: calibrate an fp32 export, this one is {sidecar.precision}")
    cfg = sidecar.model_cfg()
    onnx_sha = sha256_file(onnx_path)
    cache = cache_path_for(onnx_path, onnx_sha, method, Path(cache_dir) if cache_dir else None)
    cache_hit = cache.is_file()
    if cache_hit:
        log.info("reusing calibration ranges %s (same ONNX sha256, method %s): the data is not read", cache, method)
    else:
        if reader is None:
            if data is None:
                raise ConfigError("calibration needs --data DIR (SynthAVS clips) when no cached ranges match this ONNX")
            reader = ClipCalibrationReader(data, cfg.input_size, cfg.sample_rate, cfg.window_samples, clips)
        collect_ranges(onnx_path, reader, method, cache)
    model = onnx.load(str(onnx_path))
    excluded = nodes_in_scopes(model, keep_fp32)
    log.info("quantizing %s (method %s, %d nodes kept fp32: %s)", onnx_path.name, method, len(excluded), ", ".join(keep_fp32))
    # QuantizeBias False: biases stay float; TensorRT refuses an INT32 DequantizeLinear (operators.md)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    with atomic_path(out) as tmp:
        quantize_static(
            str(onnx_path), str(tmp), None,  # no reader: the ranges come from the cache
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=METHODS[method],
            extra_options=extra, calibration_cache_path=str(cache),
        )
        onnx.checker.check_model(str(tmp))
    samples = getattr(reader, "count", None)
    write_sidecar(out, sidecar.model_copy(update={
        "precision": "int8",
        "source_onnx_sha256": onnx_sha,
        "exporter": f"{sidecar.exporter}; onnxruntime {onnxruntime.__version__} quantize_static (QDQ)",
        "calibration": {
            "method": method, "clips": clips, "samples": samples, "data": str(data) if data else None,
            "cache": str(cache), "cache_reused": cache_hit, "fp32_scopes": list(keep_fp32),
            "fp32_nodes": len(excluded), "activations": "int8 symmetric", "weights": "int8 symmetric per-channel",
        },
    }))
    log.info("wrote %s", out)
    return out
