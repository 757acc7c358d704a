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
from ddavs_rt.engine.cuda_device import cuda_index, visible_cuda_index
from ddavs_rt.engine.identity import ModelIdentity, cache_dir, cache_stem, checkpoint_identity, identity_mismatch
from ddavs_rt.engine.sidecar import read_onnx_sidecar, read_tensorrt_sidecar, sidecar_path, tensorrt_mismatch
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
GRAPH_SUFFIXES = (".onnx", ".xml")  # an ONNX export or an OpenVINO IR, each with its sidecar
INT8_JF_BOUND = 0.01  # an int8 file is 'checked' when its sidecar records a J&F drop within this
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
EXPORT_BATCH = (1, 16)  # the batch range of an export made by `auto` (the runtime's max_batch is at most this)


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """What `choose_engine` decided: the backend, the file it opens, and why."""

    backend: str  # torch | onnxruntime | openvino | tensorrt
    target: Path
    reason: str
    named: bool = True  # the user named `target` (False: found beside the checkpoint, cached, or exported)
    precision: str | None = None  # openvino's: fp32 | bf16 | int8 (the others run the file's own precision)
    identity: ModelIdentity | None = None  # the checkpoint's, when a folder was named: the sidecar must match


def path_kind(path: Path) -> str:
    """'checkpoint' | 'onnx' | 'tensorrt' for an existing path; CheckpointError otherwise."""
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return "checkpoint"
        raise CheckpointError(f"{path}: folder has no model.safetensors; pass a checkpoint folder, an .onnx file or an engine file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; pass a checkpoint folder, an .onnx file or a TensorRT engine file")
    if path.suffix in GRAPH_SUFFIXES:
        return "onnx"  # an ONNX export or an OpenVINO IR: a graph with an ONNX sidecar
    if path.suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise CheckpointError(f"{path}: unknown engine file type {path.suffix!r}; expected a folder, .onnx or {', '.join(ENGINE_SUFFIXES)}")


# --------------------------------------------------------------------------------------------
# What the machine has (probed lazily: torch is imported only when it is installed and needed)
# --------------------------------------------------------------------------------------------


def torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # an import hook that refuses torch (a torch-free deployment, or its test)
        return False


def cuda_usable(device: str | None) -> bool:
    """A CUDA GPU is asked for or allowed, and torch sees the one named (`cuda:N`, else cuda:0);
    ConfigError for an index beyond the visible GPUs."""
    if device is not None and not device.startswith("cuda"):
        return False
    if not torch_installed():
        return False
    return visible_cuda_index(device) is not None


def tensorrt_usable(device: str | None) -> bool:
    """TensorRT imports and the GPU named (`cuda:N`, else cuda:0) is visible; ConfigError for an
    index beyond the visible GPUs."""
    if device is not None and not device.startswith("cuda"):
        return False
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from ddavs_rt.engine.tensorrt_backend import tensorrt_available

    return tensorrt_available(cuda_index(device))


# --------------------------------------------------------------------------------------------
# Finding files made from a model
# --------------------------------------------------------------------------------------------


def _onnx_candidates(places: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for place in places:
        for suffix in GRAPH_SUFFIXES:
            seen += [c for c in sorted(place.glob(f"*{suffix}")) if sidecar_path(c).is_file() and c not in seen]
    return seen


def find_onnx(places: list[Path], identity: ModelIdentity, precision: str = "fp32",
              suffixes: tuple[str, ...] = (".onnx",)) -> tuple[Path | None, str | None]:
    """(a graph of this model_id and precision in `places`, or None; why a same-weights file was refused)."""
    stale = None
    for candidate in _onnx_candidates(places):
        if candidate.suffix not in suffixes:
            continue
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

    gpu_name, capability, _ = gpu_identity(cuda_index(device))
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


def parse_backend(backend: str, precision: str | None = None) -> tuple[str, str]:
    """'openvino:bf16' -> ('openvino', 'bf16'); a `precision` argument overrides the suffix."""
    name, _, pinned = backend.partition(":")
    chosen = precision or pinned or "auto"
    if name not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)} (optionally :PRECISION)")
    if chosen not in PRECISIONS:
        raise ConfigError(f"precision {chosen!r}: choose one of {', '.join(PRECISIONS)}")
    return name, chosen


def int8_verified(sidecar) -> tuple[bool, str]:
    """Whether an int8 file's sidecar records a J&F drop within INT8_JF_BOUND (written by `calibrate --check-data`)."""
    check = (sidecar.calibration or {}).get("accuracy") or {}
    drop = check.get("jf_drop")
    if drop is None:
        return False, "its accuracy was never checked (`ddavs-rt calibrate ... --check-data DIR`)"
    if drop > INT8_JF_BOUND:
        return False, f"it loses {drop:.3f} J&F (bound {INT8_JF_BOUND})"
    return True, f"J&F {check.get('jf_int8', float('nan')):.3f} vs fp32 {check.get('jf_fp32', float('nan')):.3f} on {check.get('clips')} clips"


def find_int8(places: list[Path], identity: ModelIdentity | None, source_sha: str | None, allow_qdq_onnx: bool) -> Path | None:
    """An int8 graph made from this model (IR first, then a Q/DQ ONNX), by model_id or by its source ONNX."""
    suffixes = (".xml", ".onnx") if allow_qdq_onnx else (".xml",)
    for suffix in suffixes:
        for candidate in _onnx_candidates(places):
            if candidate.suffix != suffix:
                continue
            try:
                sidecar = read_onnx_sidecar(candidate)
            except DdavsError:
                continue
            if sidecar.precision != "int8":
                continue
            if identity is not None and sidecar.model_id == identity.model_id and identity_mismatch(sidecar, identity) is None:
                return candidate
            if identity is None and source_sha is not None and sidecar.source_onnx_sha256 == source_sha:
                return candidate
    return None


def openvino_usable() -> bool:
    return importlib.util.find_spec("openvino") is not None


def cpu_choice(graph: Path, named: bool, identity: ModelIdentity | None, backend: str, precision: str, why: str,
               folder: Path | None = None) -> EngineChoice:
    """The CPU rule (docs/architecture.md, "Which engine on which machine"; backed by `ddavs-rt bench`
    in docs/results/cpu-engines.md):

    bf16 on OpenVINO when the CPU multiplies bf16 natively (AMX or AVX-512 BF16); else fp32 on
    ONNX Runtime. int8 runs only when pinned (`auto:int8`, `openvino:int8`) or named: it measured
    slower than bf16 on the AMX Xeon and slower than ONNX Runtime fp32 on the AVX2 EPYC, so `auto`
    never picks it (it logs that a checked int8 file was passed over). A pinned backend or
    precision narrows this, or fails in one line when the machine or the files cannot give it.
    """
    from ddavs_rt.engine.openvino_backend import OPENVINO_MISSING, native_bf16

    have_ov = openvino_usable()
    graph_sidecar = read_onnx_sidecar(graph)
    if graph_sidecar.precision == "int8":  # the user named an int8 file: it runs as it is
        if backend in ("auto", "openvino") and have_ov:
            return EngineChoice("openvino", graph, f"{why}: an int8 graph on openvino", named, "int8", identity)
        if backend == "openvino":
            raise DdavsError(OPENVINO_MISSING)
        return EngineChoice("onnxruntime", graph, f"{why}: an int8 graph on onnxruntime", named, None, identity)
    places = [graph.parent] + ([folder, folder.parent] if folder is not None else [])
    if backend == "openvino" and not have_ov:
        raise DdavsError(OPENVINO_MISSING)

    if precision in ("auto", "int8") and backend in ("auto", "openvino", "onnxruntime"):
        source_sha = sha256_file(graph)
        int8 = find_int8(places, identity, source_sha, allow_qdq_onnx=backend == "onnxruntime" or have_ov)
        if int8 is not None:
            ok, detail = int8_verified(read_onnx_sidecar(int8))
            run_on = "onnxruntime" if backend == "onnxruntime" or not have_ov else "openvino"
            if precision == "int8":  # pinned: the user accepts the file, checked or not
                if not ok:
                    log.warning("running %s although %s", int8, detail)
                return EngineChoice(run_on, int8, f"{why}: int8 {int8} on {run_on} ({detail})", False,
                                    "int8" if run_on == "openvino" else None, identity)
            log.info("not running %s (%s): int8 measured slower than bf16 and fp32 on the CPUs benchmarked; "
                     "pin it with --backend %s:int8", int8, detail, backend)
        if precision == "int8":
            raise CheckpointError(f"{graph}: no int8 file of this model beside it; run `ddavs-rt calibrate --onnx {graph} "
                                  f"--data DIR --engine {'openvino' if have_ov else 'onnxruntime'}`")
    if precision == "bf16" or (precision == "auto" and backend in ("auto", "openvino")):
        if backend in ("auto", "openvino") and have_ov and native_bf16():
            return EngineChoice("openvino", graph, f"{why}: bf16 on openvino (the CPU has AMX or AVX-512 BF16)", named, "bf16", identity)
        if precision == "bf16":
            raise ConfigError("bf16 runs on openvino on a CPU with AMX or AVX-512 BF16; "
                              + ("this CPU has neither" if have_ov else "openvino is not installed"))
    if precision == "fp16":
        raise ConfigError("fp16 is a GPU precision (torch on CUDA, TensorRT); on the CPU pick fp32, bf16 or int8")
    if backend == "openvino":
        return EngineChoice("openvino", graph, f"{why}: fp32 on openvino", named, "fp32", identity)
    return EngineChoice("onnxruntime", graph, f"{why}: fp32 on onnxruntime", named, None, identity)


def choose_engine(path: str | Path, backend: str = "auto", device: str | None = None, *, precision: str | None = None,
                  export: bool = True, cache: Path | None = None) -> EngineChoice:
    """The one policy that maps (path, backend[:precision], device) to an engine; see the module docstring."""
    path = Path(path)
    backend, precision = parse_backend(backend, precision)
    kind = path_kind(path)
    identity = checkpoint_identity(path) if kind == "checkpoint" else None
    onnx_sha = sha256_file(path) if kind == "onnx" and backend in ("auto", "tensorrt") else None
    near = [path, path.parent] if kind == "checkpoint" else [path.parent]
    on_cpu = device is None or device == "cpu"

    if backend == "torch":
        if kind != "checkpoint":
            raise ConfigError(f"{path}: the torch backend runs a checkpoint folder, not a {kind} file")
        return EngineChoice("torch", path, "torch was asked for", True, None, identity)

    if backend == "tensorrt":
        if kind == "tensorrt":
            return EngineChoice("tensorrt", path, "tensorrt was asked for", True)
        found = find_tensorrt_engine(near, model_id=identity.model_id if identity else None, onnx_sha=onnx_sha, device=device)
        if found is None:
            source = path if kind == "onnx" else "MODEL.onnx"
            raise CheckpointError(f"{path}: no TensorRT engine built from it; run `ddavs-rt build-engine --onnx {source}`")
        return EngineChoice("tensorrt", found, f"tensorrt was asked for: {found} was built from this model", False, None, identity)

    if backend in ("onnxruntime", "openvino"):
        if kind == "tensorrt":
            raise ConfigError(f"{path}: {backend} cannot run a TensorRT engine; pass the .onnx file it was built from")
        if path.suffix == ".xml" and backend == "onnxruntime":
            raise ConfigError(f"{path}: an OpenVINO IR runs on --backend openvino, not onnxruntime")
        graph, named, how = (path, True, f"{backend} was asked for") if kind == "onnx" else \
            _graph_for_checkpoint(path, identity, f"{backend} was asked for", export=False, cache=cache)  # type: ignore[arg-type]
        if graph is None:
            raise CheckpointError(how)
        if backend == "onnxruntime" and device is not None and device.startswith("cuda"):
            return EngineChoice("onnxruntime", graph, how, named, None, identity)
        return cpu_choice(graph, named, identity, backend, precision, how, path if kind == "checkpoint" else None)

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
    if not on_cpu or precision in ("auto", "fp16"):
        if tensorrt_usable(device):
            found = find_tensorrt_engine(near, model_id=identity.model_id if identity else None, onnx_sha=onnx_sha, device=device)
            if found is not None:
                return EngineChoice("tensorrt", found, f"auto: a GPU with TensorRT, and {found} was built from this model", False, None, identity)
        if kind == "checkpoint" and cuda_usable(device):
            return EngineChoice("torch", path, "auto: a CUDA GPU (no TensorRT engine of this model): torch on CUDA", True, None, identity)
    if kind == "onnx":
        return cpu_choice(path, True, None, "auto", precision, "auto")
    graph, named, how = _graph_for_checkpoint(path, identity, "auto", export=export, cache=cache)  # type: ignore[arg-type]
    if graph is None:
        if precision not in ("auto", "fp32"):
            raise CheckpointError(f"{path}: {precision} needs an exported graph and {how}")
        return EngineChoice("torch", path, f"auto: torch on the CPU ({how})", True, None, identity)
    return cpu_choice(graph, named, identity, "auto", precision, how, path)


def _graph_for_checkpoint(folder: Path, identity: ModelIdentity, why: str, *, export: bool,
                          cache: Path | None) -> tuple[Path | None, bool, str]:
    """(the fp32 ONNX of this checkpoint's model_id, named-by-user flag, how it was found; or None and why not)."""
    beside, stale = find_onnx([folder, folder.parent], identity)
    if beside is not None:
        inside = beside.parent == folder  # part of the folder the user named (a shipped export) or a sibling
        where = "in the checkpoint folder" if inside else "beside the checkpoint"
        return beside, inside, f"{why}: {beside}, found {where}, has its model_id {identity.model_id}"
    if stale:
        log.warning("not using %s", stale)
    cached, how = cached_export(folder, identity, cache, export=export)
    if cached is not None:
        return cached, False, f"{why}: {how}"
    if why == "auto":
        return None, True, how
    detail = f" ({stale})" if stale else ""
    return None, True, (f"{folder}: no ONNX export of this model_id {identity.model_id}{detail}; "
                        f"run `ddavs-rt export --checkpoint {folder} --out {folder / 'model.onnx'}`")


BACKEND_OPTIONS = {"torch": ("compile", "threads"), "onnxruntime": ("threads", "spinning"), "openvino": ("threads", "hint"), "tensorrt": ()}


def open_engine(path: str | Path, backend: str = "auto", device: str | None = None, *, precision: str | None = None,
                export: bool = True, cache: Path | None = None, **options) -> Engine:
    """Open the engine `choose_engine` picks. `options` (threads, spinning, hint, compile) go to the backends that
    take them; the others ignore them. The engine's `choice` attribute says what was chosen and why."""
    choice = choose_engine(path, backend, device, precision=precision, export=export, cache=cache)
    if not choice.named and choice.target.parent not in (cache_dir(), cache or cache_dir()):
        log.warning("%s", choice.reason)  # a file the user did not name, outside our cache
    else:
        log.info("%s", choice.reason)
    log.info("backend %s -> %s (%s)", backend, choice.backend, choice.target)
    given = {key: value for key, value in options.items() if key in BACKEND_OPTIONS[choice.backend] and value is not None}
    if choice.backend == "torch":
        from ddavs_rt.engine.torch_backend import TorchEngine

        engine: Engine = TorchEngine(choice.target, device=device, **given)
    elif choice.backend == "onnxruntime":
        from ddavs_rt.engine.ort_backend import OrtEngine

        engine = OrtEngine(choice.target, device=device, expected=choice.identity, **given)
    elif choice.backend == "openvino":
        from ddavs_rt.engine.openvino_backend import OpenVinoEngine

        engine = OpenVinoEngine(choice.target, device="cpu", precision=choice.precision, expected=choice.identity, **given)
    else:
        from ddavs_rt.engine.tensorrt_backend import TensorRTEngine

        checkpoint_sha = choice.identity.weights_sha256 if choice.identity else None
        engine = TensorRTEngine(choice.target, device=device, checkpoint_sha256=checkpoint_sha)
    engine.choice = choice
    return engine
