"""`open_engine`: one entry point for every backend, and `choose_engine`, the one `auto` policy.

`path` may be
  - a checkpoint folder (config.json, model.safetensors, optional bank.safetensors);
  - an `.onnx` file with its sidecar (an export, or an int8/fp16 derivative of one);
  - a TensorRT engine file (`.engine`, `.plan`, `.trt`) with its sidecar.

`choose_engine` decides, for every backend request, which backend runs which file, and says why
(`EngineChoice.reason`). "Made from this model" is decided by `model_id` (weights, bank and config
checksums, `ddavs_rt.engine.identity`), never by file names. The `auto` rule:

1. A TensorRT engine file: TensorRT when it and a GPU are usable, else the ONNX it was built from.
2. A GPU (only probed when torch is installed): a TensorRT engine made from this model, in the
   folder or beside the file; else, for a checkpoint, torch on CUDA.
3. The CPU: the ONNX graph: the named `.onnx`; for a checkpoint, an export of the same model_id in
   the folder or beside it, else one in the cache (`~/.cache/ddavs-rt/<name>-<model hash>.onnx`),
   else the checkpoint is exported into the cache now (`export=False` forbids that). Torch runs
   the checkpoint only when no graph can be had.

A file the user did not name is never run silently: the reason names it, `open_engine` logs it
(WARNING for a file found beside the checkpoint), and the runtime prints the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

from ddavs_rt.atomic import sha256_file
from ddavs_rt.engine.base import Engine
from ddavs_rt.engine.identity import ModelIdentity, cache_dir, cache_stem, checkpoint_identity, identity_mismatch
from ddavs_rt.engine.sidecar import read_onnx_sidecar, read_tensorrt_sidecar, sidecar_path, tensorrt_mismatch
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
EXPORT_BATCH = (1, 16)  # the batch range of an export made by `auto` (the runtime's max_batch is at most this)


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """What `choose_engine` decided: the backend, the file it opens, and why."""

    backend: str  # torch | onnxruntime | tensorrt
    target: Path
    reason: str
    named: bool  # the user named `target` (False: found beside the checkpoint, cached, or exported)
    identity: ModelIdentity | None = None  # the checkpoint's, when a folder was named: the sidecar must match


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


# --------------------------------------------------------------------------------------------
# What the machine has (probed lazily: torch is imported only when it is installed and needed)
# --------------------------------------------------------------------------------------------


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_usable(device: str | None) -> bool:
    """A CUDA GPU is asked for or allowed, and torch sees one."""
    if device is not None and not device.startswith("cuda"):
        return False
    if not torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())


def tensorrt_usable(device: str | None) -> bool:
    if device is not None and not device.startswith("cuda"):
        return False
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from ddavs_rt.engine.tensorrt_backend import tensorrt_available

    return tensorrt_available()


# --------------------------------------------------------------------------------------------
# Finding files made from a model
# --------------------------------------------------------------------------------------------


def _onnx_candidates(places: list[Path]) -> list[Path]:
    return [c for place in places for c in sorted(place.glob("*.onnx")) if sidecar_path(c).is_file()]


def find_onnx(places: list[Path], identity: ModelIdentity, precision: str = "fp32") -> tuple[Path | None, str | None]:
    """(an ONNX of this model_id and precision in `places`, or None; why a same-weights file was refused)."""
    stale = None
    for candidate in _onnx_candidates(places):
        try:
            sidecar = read_onnx_sidecar(candidate)
        except DdavsError:
            continue
        if sidecar.precision != precision:
            continue
        if sidecar.model_id == identity.model_id and identity_mismatch(sidecar, identity) is None:
            return candidate, None
        if sidecar.checkpoint_sha256 == identity.weights_sha256 and stale is None:
            stale = f"{candidate}: {identity_mismatch(sidecar, identity)}"
    return None, stale


PRECISION_PREFERENCE = {"int8": 0, "fp16": 1, "fp32": 2}  # among engines that all fit: the fastest


def _derived_onnx_sources(places: list[Path]) -> dict[str, str]:
    """sha256 of each derived ONNX (.fp16/.int8 ...) in `places` -> sha256 of the ONNX it was made from."""
    sources: dict[str, str] = {}
    for place in places:
        for candidate in sorted(place.glob("*.onnx")):
            if not sidecar_path(candidate).is_file():
                continue
            try:
                source = read_onnx_sidecar(candidate).source_onnx_sha256
            except DdavsError:
                continue
            if source:
                sources[sha256_file(candidate)] = source
    return sources


def _this_machine(device: str | None) -> tuple[str, str, str] | None:
    """(GPU name, compute capability, TensorRT version) of the device, or None without TensorRT/GPU."""
    if not tensorrt_usable(device):
        return None
    from ddavs_rt.engine.tensorrt_backend import gpu_identity, import_tensorrt

    index = int(device.split(":")[1]) if device and ":" in device else 0
    gpu_name, capability, _ = gpu_identity(index)
    return gpu_name, capability, import_tensorrt().__version__


def find_tensorrt_engine(places: list[Path], *, model_id: str | None = None, onnx_sha: str | None = None,
                         machine: tuple[str, str, str] | None = None, device: str | None = None) -> Path | None:
    """The TensorRT engine in `places` made from this model_id (or this ONNX file, or an .fp16/.int8
    ONNX derived from it, through the sidecars' source checksums) that runs on this machine: its
    GPU, compute capability and TensorRT version (`machine`, probed on `device` when not given).
    Several may fit (fp32/fp16/int8 builds): the fastest precision, then the newest file. None
    when no engine fits."""
    if machine is None:
        machine = _this_machine(device)
    sources = _derived_onnx_sources(places) if onnx_sha is not None else {}
    fitting: list[tuple[int, float, str]] = []
    for place in places:
        for suffix in ENGINE_SUFFIXES:
            for candidate in sorted(place.glob(f"*{suffix}")):
                if not sidecar_path(candidate).is_file():
                    continue
                try:
                    sidecar = read_tensorrt_sidecar(candidate)
                except DdavsError:
                    continue
                made_from = model_id is not None and sidecar.onnx.model_id == model_id
                ancestor, seen = sidecar.onnx_sha256, set()
                while onnx_sha is not None and ancestor and ancestor not in seen and not made_from:
                    made_from = ancestor == onnx_sha
                    seen.add(ancestor)
                    ancestor = sources.get(ancestor) or (sidecar.onnx.source_onnx_sha256 if ancestor == sidecar.onnx_sha256 else None)
                if not made_from:
                    continue
                if machine is not None:
                    gpu_name, capability, version = machine
                    reason = tensorrt_mismatch(sidecar, gpu_name=gpu_name, compute_capability=capability, tensorrt_version=version)
                    if reason is not None:
                        log.info("skipping TensorRT engine %s: %s", candidate, reason)
                        continue
                fitting.append((PRECISION_PREFERENCE.get(sidecar.precision, 3), -candidate.stat().st_mtime, str(candidate)))
    return Path(min(fitting)[2]) if fitting else None


def cached_export_path(identity: ModelIdentity, folder: Path | None = None) -> Path:
    """`<cache>/<name>-<model hash>.onnx`: keyed on model_id (weights, bank and config)."""
    return (folder or cache_dir()) / f"{cache_stem(identity)}.onnx"


def cached_export(checkpoint: Path, identity: ModelIdentity, folder: Path | None = None, export: bool = True) -> tuple[Path | None, str]:
    """(the checkpoint's ONNX in the cache, exporting it first when allowed and missing; how it was had)."""
    target = cached_export_path(identity, folder)
    if target.is_file() and sidecar_path(target).is_file():
        try:
            if identity_mismatch(read_onnx_sidecar(target), identity) is None:
                return target, f"the cached export {target} (same model_id)"
        except DdavsError:
            pass
        log.warning("%s does not match %s; exporting it again", target, identity.model_id)
    if not export:
        return None, "no export of this model_id in the cache"
    if not torch_installed():
        return None, "no export of this model_id, and exporting needs the full install (torch)"
    try:
        from ddavs_rt.engine.export import export_checkpoint

        log.warning("exporting %s (%s) to ONNX once, for the CPU engines: %s", checkpoint, identity.model_id, target)
        return export_checkpoint(checkpoint, target, batch=EXPORT_BATCH), f"a fresh export {target} (model_id {identity.model_id})"
    except DdavsError:
        raise
    except Exception as error:  # an optimisation only: torch still runs the checkpoint
        log.warning("could not export %s to ONNX (%s); running it with torch", checkpoint, error)
        return None, f"the export failed ({type(error).__name__})"


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------


def choose_engine(path: str | Path, backend: str = "auto", device: str | None = None, *, export: bool = True,
                  cache: Path | None = None) -> EngineChoice:
    """The one policy that maps (path, backend request, device) to an engine; see the module docstring."""
    path = Path(path)
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    kind = path_kind(path)
    identity = checkpoint_identity(path) if kind == "checkpoint" else None
    onnx_sha = sha256_file(path) if kind == "onnx" and backend in ("auto", "tensorrt") else None
    near = [path, path.parent] if kind == "checkpoint" else [path.parent]

    if backend == "torch":
        if kind != "checkpoint":
            raise ConfigError(f"{path}: the torch backend runs a checkpoint folder, not a {kind} file")
        return EngineChoice("torch", path, "torch was asked for", True, identity)

    if backend == "tensorrt":
        if kind == "tensorrt":
            return EngineChoice("tensorrt", path, "tensorrt was asked for", True)
        found = find_tensorrt_engine(near, model_id=identity.model_id if identity else None, onnx_sha=onnx_sha)
        if found is None:
            source = path if kind == "onnx" else "MODEL.onnx"
            raise CheckpointError(f"{path}: no TensorRT engine built from it; run `ddavs-rt build-engine --onnx {source}`")
        return EngineChoice("tensorrt", found, f"tensorrt was asked for: {found} was built from this model", False, identity)

    if backend == "onnxruntime":
        if kind == "onnx":
            return EngineChoice("onnxruntime", path, "onnxruntime was asked for", True)
        if kind == "tensorrt":
            raise ConfigError(f"{path}: onnxruntime cannot run a TensorRT engine; pass the .onnx file it was built from")
        return _onnx_for_checkpoint(path, identity, "onnxruntime was asked for", export=False, cache=cache)  # type: ignore[arg-type]

    # ---- auto ----
    if kind == "tensorrt":
        if tensorrt_usable(device):
            return EngineChoice("tensorrt", path, "auto: a TensorRT engine file, and TensorRT and a GPU are usable", True)
        try:
            source = Path(read_tensorrt_sidecar(path).onnx_path)
        except DdavsError:
            source = Path()
        if source.suffix == ".onnx" and source.is_file():
            return EngineChoice("onnxruntime", source, f"auto: TensorRT or a GPU is missing, so {source} (the engine's source ONNX) runs on onnxruntime", False)
        raise DdavsError(f"{path}: a TensorRT engine needs TensorRT and an NVIDIA GPU; pass the .onnx file it was built from instead")
    if tensorrt_usable(device):
        found = find_tensorrt_engine(near, model_id=identity.model_id if identity else None, onnx_sha=onnx_sha)
        if found is not None:
            return EngineChoice("tensorrt", found, f"auto: a GPU with TensorRT, and {found} was built from this model", False, identity)
    if kind == "checkpoint" and cuda_usable(device):
        return EngineChoice("torch", path, "auto: a CUDA GPU (no TensorRT engine of this model): torch on CUDA", True, identity)
    if kind == "onnx":
        return EngineChoice("onnxruntime", path, "auto: an ONNX graph on onnxruntime", True)
    return _onnx_for_checkpoint(path, identity, "auto", export=export, cache=cache)  # type: ignore[arg-type]


def _onnx_for_checkpoint(folder: Path, identity: ModelIdentity, why: str, *, export: bool, cache: Path | None) -> EngineChoice:
    beside, stale = find_onnx([folder, folder.parent], identity)
    if beside is not None:
        return EngineChoice("onnxruntime", beside, f"{why}: {beside}, found beside the checkpoint, has its model_id {identity.model_id}",
                            False, identity)
    if stale:
        log.warning("not using %s", stale)
    cached, how = cached_export(folder, identity, cache, export=export)
    if cached is not None:
        return EngineChoice("onnxruntime", cached, f"{why}: {how}", False, identity)
    if why == "auto":
        return EngineChoice("torch", folder, f"auto: torch on the CPU ({how})", True, identity)
    detail = f" ({stale})" if stale else ""
    raise CheckpointError(f"{folder}: no ONNX export of this model_id {identity.model_id}{detail}; "
                          f"run `ddavs-rt export --checkpoint {folder} --out {folder / 'model.onnx'}`")


def open_engine(path: str | Path, backend: str = "auto", device: str | None = None, *, export: bool = True,
                cache: Path | None = None, **options) -> Engine:
    """Open an engine chosen by `choose_engine`. `options` go to the backend (torch: compile, threads;
    onnxruntime: threads). The engine's `choice` attribute says what was chosen and why."""
    choice = choose_engine(path, backend, device, export=export, cache=cache)
    if not choice.named and choice.target.parent != cache_dir() and choice.target.parent != (cache or cache_dir()):
        log.warning("%s", choice.reason)  # a file the user did not name, outside our cache
    else:
        log.info("%s", choice.reason)
    log.info("backend %s -> %s (%s)", backend, choice.backend, choice.target)
    if choice.backend == "torch":
        from ddavs_rt.engine.torch_backend import TorchEngine

        engine: Engine = TorchEngine(choice.target, device=device, **options)
    elif choice.backend == "onnxruntime":
        from ddavs_rt.engine.ort_backend import OrtEngine

        engine = OrtEngine(choice.target, device=device, expected=choice.identity, **options)
    else:
        from ddavs_rt.engine.tensorrt_backend import TensorRTEngine

        checkpoint_sha = choice.identity.weights_sha256 if choice.identity else None
        engine = TensorRTEngine(choice.target, device=device, checkpoint_sha256=checkpoint_sha)
    engine.choice = choice
    return engine
