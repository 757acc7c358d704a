"""`open_engine`: one entry point for the three backends, and the `auto` choice between them.

`path` may be
  - a checkpoint folder (config.json, model.safetensors): the torch backend, or an exported
    `.onnx` / built TensorRT engine found in the folder (or beside it) made from that checkpoint;
  - an `.onnx` file with its sidecar: onnxruntime, or a TensorRT engine built from that file;
  - a TensorRT engine file (`.engine`, `.plan`, `.trt`) with its sidecar: tensorrt.

`auto` picks tensorrt (TensorRT importable, a GPU, an engine file), then onnxruntime (an ONNX
file), then torch, and logs the choice. "Made from" is decided by checksums in the sidecars,
never by file names.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ddavs_rt.atomic import sha256_file
from ddavs_rt.engine.base import Engine
from ddavs_rt.engine.sidecar import read_onnx_sidecar, read_tensorrt_sidecar, sidecar_path
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def path_kind(path: Path) -> str:
    """'checkpoint' | 'onnx' | 'tensorrt' for an existing path; CheckpointError otherwise."""
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return "checkpoint"
        raise CheckpointError(f"{path}: folder has no model.safetensors; pass a checkpoint folder, an .onnx file or an engine file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; pass a checkpoint folder, an .onnx file or a TensorRT engine file")
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise CheckpointError(f"{path}: unknown engine file type {path.suffix!r}; expected a folder, .onnx or {', '.join(ENGINE_SUFFIXES)}")


def _tensorrt_usable(device: str | None) -> bool:
    if device is not None and not device.startswith("cuda"):
        return False
    from ddavs_rt.engine.tensorrt_backend import tensorrt_available

    return tensorrt_available()


def _sidecar_field(reader, path: Path, field: str):
    try:
        return getattr(reader(path), field)
    except DdavsError:
        return None


def find_onnx_for_checkpoint(folder: Path, checkpoint_sha: str) -> Path | None:
    """An fp32 `.onnx` in the checkpoint folder or beside it whose sidecar names this checkpoint."""
    for place in (folder, folder.parent):
        for candidate in sorted(place.glob("*.onnx")):
            if not sidecar_path(candidate).is_file():
                continue
            try:
                sidecar = read_onnx_sidecar(candidate)
            except DdavsError:
                continue
            if sidecar.checkpoint_sha256 == checkpoint_sha and sidecar.precision == "fp32":
                return candidate
    return None


def find_tensorrt_engine(places: list[Path], *, checkpoint_sha: str | None = None, onnx_sha: str | None = None) -> Path | None:
    """A TensorRT engine in `places` whose sidecar names this checkpoint (or this ONNX file)."""
    for place in places:
        for suffix in ENGINE_SUFFIXES:
            for candidate in sorted(place.glob(f"*{suffix}")):
                if not sidecar_path(candidate).is_file():
                    continue
                try:
                    sidecar = read_tensorrt_sidecar(candidate)
                except DdavsError:
                    continue
                if onnx_sha is not None and sidecar.onnx_sha256 == onnx_sha:
                    return candidate
                if checkpoint_sha is not None and sidecar.checkpoint_sha256 == checkpoint_sha:
                    return candidate
    return None


def resolve(path: Path, backend: str, device: str | None) -> tuple[str, Path, str | None]:
    """(backend, the file or folder it opens, checkpoint sha256 to check a TensorRT engine against)."""
    kind = path_kind(path)
    checkpoint_sha = sha256_file(path / "model.safetensors") if kind == "checkpoint" else None
    onnx_sha = sha256_file(path) if kind == "onnx" else None
    near = [path] if kind == "checkpoint" else [path.parent]

    if backend == "auto":
        if kind == "tensorrt":
            if _tensorrt_usable(device):
                return "tensorrt", path, None
            onnx_path = Path(_sidecar_field(read_tensorrt_sidecar, path, "onnx_path") or "")
            if onnx_path.suffix == ".onnx" and onnx_path.is_file():
                log.warning("auto: TensorRT or a GPU is missing; running %s (the engine's source ONNX) with onnxruntime", onnx_path)
                return "onnxruntime", onnx_path, None
            raise DdavsError(f"{path}: a TensorRT engine needs TensorRT and an NVIDIA GPU; pass the .onnx file it was built from instead")
        if _tensorrt_usable(device):
            engine = find_tensorrt_engine(near, checkpoint_sha=checkpoint_sha, onnx_sha=onnx_sha)
            if engine is not None:
                return "tensorrt", engine, checkpoint_sha
        if kind == "onnx":
            return "onnxruntime", path, None
        onnx_path = find_onnx_for_checkpoint(path, checkpoint_sha)  # type: ignore[arg-type]
        if onnx_path is not None:
            return "onnxruntime", onnx_path, None
        return "torch", path, None

    if backend == "torch":
        if kind != "checkpoint":
            raise ConfigError(f"{path}: the torch backend runs a checkpoint folder, not a {kind} file")
        return "torch", path, None
    if backend == "onnxruntime":
        if kind == "onnx":
            return "onnxruntime", path, None
        if kind == "checkpoint":
            onnx_path = find_onnx_for_checkpoint(path, checkpoint_sha)  # type: ignore[arg-type]
            if onnx_path is None:
                raise CheckpointError(f"{path}: no exported ONNX made from this checkpoint; run `ddavs-rt export --checkpoint {path} --out {path / 'model.onnx'}`")
            return "onnxruntime", onnx_path, None
        raise ConfigError(f"{path}: onnxruntime cannot run a TensorRT engine; pass the .onnx file it was built from")
    if backend == "tensorrt":
        if kind == "tensorrt":
            return "tensorrt", path, None
        engine = find_tensorrt_engine(near, checkpoint_sha=checkpoint_sha, onnx_sha=onnx_sha)
        if engine is None:
            source = path if kind == "onnx" else "MODEL.onnx"
            raise CheckpointError(f"{path}: no TensorRT engine built from it; run `ddavs-rt build-engine --onnx {source}`")
        return "tensorrt", engine, checkpoint_sha
    raise ConfigError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def open_engine(path: str | Path, backend: str = "auto", device: str | None = None, **options) -> Engine:
    """Open an engine. `options` go to the backend (torch: compile, threads; onnxruntime: threads)."""
    chosen, target, checkpoint_sha = resolve(Path(path), backend, device)
    if backend == "auto":
        log.info("backend auto -> %s (%s)", chosen, target)
    if chosen == "torch":
        from ddavs_rt.engine.torch_backend import TorchEngine

        return TorchEngine(target, device=device, **options)
    if chosen == "onnxruntime":
        from ddavs_rt.engine.ort_backend import OrtEngine

        return OrtEngine(target, device=device, **options)
    from ddavs_rt.engine.tensorrt_backend import TensorRTEngine

    return TensorRTEngine(target, device=device, checkpoint_sha256=checkpoint_sha)
