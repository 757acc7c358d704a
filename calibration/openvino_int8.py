"""INT8 for OpenVINO: NNCF post-training quantization of the exported ONNX, saved as an OpenVINO IR.

    quantize_openvino("model.onnx", "data/synthavs", "model.int8.xml", clips=32)

NNCF (OpenVINO's own quantization tool) inserts FakeQuantize nodes where the OpenVINO CPU plugin has
int8 kernels (convolutions and matrix multiplications), calibrates their ranges on representative samples (SynthAVS clips,
read by the same reader as `ddavs-rt calibrate`), and corrects the biases the rounding shifts.
The MIXED preset (asymmetric activations, symmetric weights) and the default model type are
required: symmetric activations (PERFORMANCE, with or without bias correction) or the TRANSFORMER
model type (which also quantizes the attention's activation-activation products) collapse this
model (J&F 0.11 and 0.33 against 0.77 for MIXED on the same 10 SynthAVS test clips; see
docs/results/cpu-engines.md). The
audio front-end (STFT convolution, mel, log) and the final classifier stay f32, for the reason
`quantize.py` gives. The IR (`.xml` + `.bin`) is written atomically with the ONNX sidecar copied
beside it (precision int8, the fp32 ONNX's sha256, the calibration settings), so the OpenVINO
backend checks it like any export.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ddavs_rt.atomic import sha256_file
from ddavs_rt.calibration.quantize import FP32_SCOPES, nodes_in_scopes
from ddavs_rt.calibration.reader import ClipCalibrationReader
from ddavs_rt.engine import read_onnx_sidecar, write_sidecar
from ddavs_rt.errors import ConfigError, DdavsError

log = logging.getLogger(__name__)


def _samples(reader: ClipCalibrationReader) -> list[dict]:
    samples = []
    while (sample := reader.get_next()) is not None:
        samples.append(sample)
    return samples


def quantize_openvino(onnx_path: str | Path, data: str | Path, out: str | Path, clips: int = 32,
                      keep_fp32: tuple[str, ...] = FP32_SCOPES, fast_bias_correction: bool = True) -> Path:
    """Write `out` (an int8 OpenVINO IR, `.xml` with its `.bin`) and its sidecar; returns `out`."""
    try:
        import nncf
        import onnx
        import openvino as ov
    except ImportError:
        raise DdavsError("OpenVINO int8 needs the openvino extra: pip install 'ddavs-rt[openvino]'") from None
    onnx_path, out = Path(onnx_path), Path(out)
    if out.suffix != ".xml":
        raise ConfigError(f"--out {out}: an OpenVINO IR is written as NAME.xml (+ NAME.bin)")
    sidecar = read_onnx_sidecar(onnx_path)
    if sidecar.precision != "fp32":
        raise ConfigError(f"{onnx_path}: quantize an fp32 export, this one is {sidecar.precision}")
    cfg = sidecar.model_cfg()
    reader = ClipCalibrationReader(data, cfg.input_size, cfg.sample_rate, cfg.window_samples, clips)
    samples = _samples(reader)
    if not samples:
        raise ConfigError(f"{data}: no calibration samples; pass a SynthAVS dataset (ddavs-rt synth --out DIR)")
    excluded = nodes_in_scopes(onnx.load(str(onnx_path), load_external_data=False), keep_fp32)
    model = ov.Core().read_model(str(onnx_path))
    op_names = {op.get_friendly_name() for op in model.get_ops()}
    ignored = sorted(name for name in excluded if name in op_names)
    log.info("NNCF int8: %d samples from %d clips, %d of %d front-end/classifier nodes kept f32",
             len(samples), len(reader.clips), len(ignored), len(excluded))
    quantized = nncf.quantize(
        model, nncf.Dataset(samples), subset_size=len(samples),
        preset=nncf.QuantizationPreset.MIXED, target_device=nncf.TargetDevice.CPU,
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False), fast_bias_correction=fast_bias_correction,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ov-int8.", dir=out.parent) as scratch:
        tmp_xml = Path(scratch) / out.name
        ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)
        shutil.move(str(tmp_xml.with_suffix(".bin")), str(out.with_suffix(".bin")))  # weights first, then the graph
        shutil.move(str(tmp_xml), str(out))
    write_sidecar(out, sidecar.model_copy(update={
        "precision": "int8",
        "source_onnx_sha256": sha256_file(onnx_path),
        "exporter": f"{sidecar.exporter}; nncf {nncf.__version__} post-training quantization, openvino {ov.__version__} IR",
        "calibration": {
            "method": "nncf-ptq", "clips": clips, "samples": len(samples), "data": str(data),
            "fp32_scopes": list(keep_fp32), "fp32_nodes": len(ignored), "model_type": "default",
            "preset": "mixed", "fast_bias_correction": fast_bias_correction,
        },
    }))
    log.info("wrote %s", out)
    return out
