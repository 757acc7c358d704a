"""Sidecar files: what an exported or compiled engine file was made from, and for where.

Every engine file `X` (an `.onnx` export, an int8/fp16 derivative of one, a TensorRT engine)
has a JSON sidecar `X.json` beside it. The sidecar carries the model config (config.json as
stored in the checkpoint), the model_id and the checksums of the weights, bank and config it came
from (`ddavs_rt.engine.identity`; checked whenever an ONNX engine opens), the precision, the I/O tensors and batch range, and (for a
TensorRT engine) the GPU, compute capability and TensorRT version it was built for. Loaders read
the sidecar instead of guessing, and refuse an engine whose sidecar does not match the machine
or the checkpoint (`tensorrt_mismatch`), with a message that says how to rebuild it.

The mismatch logic is pure functions over sidecar objects, so it is tested without TensorRT.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddavs_rt.atomic import atomic_write_text
from ddavs_rt.config import ModelConfig, with_legacy_defaults
from ddavs_rt.errors import CheckpointError

SIDECAR_FORMAT_VERSION = 1
Precision = Literal["fp32", "fp16", "int8"]


class _Sidecar(BaseModel):
    # `model_*` field names are ours, not pydantic's.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TensorInfo(_Sidecar):
    """One graph input or output; a symbolic dimension is a string ("batch")."""

    name: str
    dtype: str
    shape: list[int | str]


class OnnxSidecar(_Sidecar):
    """Sidecar of an ONNX file written by `ddavs-rt export` or `ddavs-rt calibrate`."""

    format_version: int = SIDECAR_FORMAT_VERSION
    kind: Literal["onnx"] = "onnx"
    model_id: str = Field(description="name@hash of weights, bank and config (ddavs_rt.engine.identity)")
    config: dict[str, Any] = Field(description="the checkpoint's config.json as stored (ModelConfig fields)")
    checkpoint_sha256: str = Field(description="sha256 of the checkpoint's model.safetensors")
    bank_sha256: str | None = Field(None, description="sha256 of bank.safetensors; None without a bank")
    config_sha256: str | None = Field(None, description="sha256 of `config` in canonical JSON; None in older exports (refused)")
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batch_min: int = Field(ge=1)
    batch_max: int = Field(ge=1)
    precision: Precision = "fp32"
    exporter: str = Field(description="what wrote the graph, e.g. 'torch 2.11.0 (dynamo)'")
    source_onnx_sha256: str | None = Field(None, description="for a derived (int8/fp16) file: sha256 of the fp32 ONNX")
    calibration: dict[str, Any] | None = None

    def model_cfg(self) -> ModelConfig:
        return ModelConfig.model_validate(with_legacy_defaults(self.config))  # written before layernorm_eps: legacy


class TensorRTSidecar(_Sidecar):
    """Sidecar of a TensorRT engine written by `ddavs-rt build-engine`."""

    format_version: int = SIDECAR_FORMAT_VERSION
    kind: Literal["tensorrt"] = "tensorrt"
    onnx: OnnxSidecar = Field(description="the sidecar of the ONNX file the engine was built from")
    onnx_path: str
    onnx_sha256: str
    checkpoint_sha256: str
    precision: Precision
    tensorrt_version: str
    gpu_name: str
    compute_capability: str = Field(description="'major.minor', e.g. '9.0'")
    cuda_version: str | None = None
    batch_min: int = Field(ge=1)
    batch_opt: int = Field(ge=1)
    batch_max: int = Field(ge=1)
    strongly_typed: bool = False


def sidecar_path(engine_path: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: OnnxSidecar | TensorRTSidecar) -> Path:
    path = sidecar_path(engine_path)
    atomic_write_text(path, sidecar.model_dump_json(indent=2) + "\n")
    return path


def read_onnx_sidecar(onnx_path: str | Path) -> OnnxSidecar:
    return _read(onnx_path, OnnxSidecar, "ddavs-rt export --checkpoint DIR --out " + shlex.quote(str(onnx_path)))


def read_tensorrt_sidecar(engine_path: str | Path) -> TensorRTSidecar:
    return _read(engine_path, TensorRTSidecar, "ddavs-rt build-engine --onnx MODEL.onnx --out " + shlex.quote(str(engine_path)))


def _read(engine_path: str | Path, cls: type, remedy: str):
    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: sidecar not found next to {engine_path}; recreate both with `{remedy}`") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable sidecar ({error}); recreate it with `{remedy}`") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != SIDECAR_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: sidecar format version {version!r}, this ddavs-rt reads {SIDECAR_FORMAT_VERSION}; "
            f"recreate it with `{remedy}`"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(f"{path}: sidecar field '{field}': {first['msg']}; recreate it with `{remedy}`") from None


# --------------------------------------------------------------------------------------------
# TensorRT engine staleness: pure functions, tested without TensorRT
# --------------------------------------------------------------------------------------------


def rebuild_command(sidecar: TensorRTSidecar, engine_path: str | Path) -> str:
    """The exact command that rebuilds this engine on the current machine."""
    parts = ["ddavs-rt", "build-engine", "--onnx", sidecar.onnx_path, "--precision", sidecar.precision,
             "--out", str(engine_path)]
    return " ".join(shlex.quote(part) for part in parts)


def tensorrt_mismatch(
    sidecar: TensorRTSidecar,
    *,
    gpu_name: str,
    compute_capability: str,
    tensorrt_version: str,
    checkpoint_sha256: str | None = None,
) -> str | None:
    """Why this engine cannot run here, or None when it can.

    An engine runs only on the GPU model (compute capability) and the TensorRT version that built
    it, and is stale when the checkpoint it was made from is no longer the one asked for.
    """
    if sidecar.tensorrt_version != tensorrt_version:
        return f"it was built with TensorRT {sidecar.tensorrt_version}, this machine has TensorRT {tensorrt_version}"
    if sidecar.compute_capability != compute_capability or sidecar.gpu_name != gpu_name:
        return (f"it was built for {sidecar.gpu_name} (compute {sidecar.compute_capability}), "
                f"this machine has {gpu_name} (compute {compute_capability})")
    if checkpoint_sha256 is not None and sidecar.checkpoint_sha256 != checkpoint_sha256:
        return (f"it was built from checkpoint {sidecar.checkpoint_sha256[:12]}, "
                f"the checkpoint now is {checkpoint_sha256[:12]}")
    return None


def check_tensorrt_sidecar(
    sidecar: TensorRTSidecar,
    engine_path: str | Path,
    *,
    gpu_name: str,
    compute_capability: str,
    tensorrt_version: str,
    checkpoint_sha256: str | None = None,
) -> None:
    """Raise a one-line CheckpointError with the rebuild command when the engine does not fit."""
    reason = tensorrt_mismatch(
        sidecar, gpu_name=gpu_name, compute_capability=compute_capability,
        tensorrt_version=tensorrt_version, checkpoint_sha256=checkpoint_sha256,
    )
    if reason:
        raise CheckpointError(f"{engine_path}: stale TensorRT engine: {reason}; rebuild it: {rebuild_command(sidecar, engine_path)}")
