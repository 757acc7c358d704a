"""OpenVINO backend: the exported ONNX graph (or an OpenVINO IR `.xml` beside it) on the CPU.

`openvino` is an optional extra (`pip install ddavs-rt[openvino]`), imported only here, lazily.

Precision (`precision=`): `fp32`; `bf16` (OpenVINO's inference precision hint: matrix work in
bfloat16, which only pays on CPUs with AMX or AVX-512 BF16, refused elsewhere so a slow emulated
path is never chosen silently); `int8` is a property of the file, not a hint: an int8 IR written
by `ddavs-rt calibrate --engine openvino` (NNCF post-training quantization, FakeQuantize nodes) or
a Q/DQ ONNX, both of which OpenVINO runs with its int8 kernels. Threads and the performance hint
(`LATENCY`: one call uses every thread; `THROUGHPUT`: the threads are split into CPU streams that
each run one call, so `concurrency` calls from as many threads run at once, as the scheduler's
inference loops do) come from the caller (the runtime config). Calls from several threads are
safe: each takes an idle infer request of its graph. The sidecar is the one written with the
graph, checked like ONNX Runtime's.

Static shapes (`static_shapes=True`, the default): the graph is compiled once per batch bucket
(BATCH_BUCKETS: 1, 2, 3, 4, 6, 8, 12, 16, ... up to the file's batch_max) with every dimension
fixed: batch 1 at open, the buckets a scheduler can need in `prepare()` before its first frame,
any other on its first use (about 0.7 s and 90 MB each on 2 cores, logged). A batch is padded up
to its bucket by repeating its last item (the padded rows' outputs are dropped). OpenVINO's CPU
plugin runs a fixed-shape graph 1.45 to 1.65 times faster than the same graph with a dynamic
batch dimension (docs/results/cpu-engines.md); `static_shapes=False` compiles the dynamic graph
once instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np

from ddavs_rt.engine.base import Engine, EngineSpec
from ddavs_rt.engine.identity import ModelIdentity, check_onnx_identity
from ddavs_rt.engine.machine import cpu_flags, physical_cores
from ddavs_rt.engine.sidecar import OnnxSidecar, read_onnx_sidecar
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)

OPENVINO_MISSING = "OpenVINO is not installed: pip install 'ddavs-rt[openvino]' (or pick --backend onnxruntime)"
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("fp32", "bf16", "int8")
IR_SUFFIX = ".xml"
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # the fixed batch sizes compiled (on first use)


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def native_bf16() -> bool:
    """The CPU multiplies bfloat16 natively (AMX or AVX-512 BF16); elsewhere bf16 is emulated and slow."""
    flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & flags)


class OpenVinoEngine(Engine):
    """An exported graph compiled by OpenVINO for the CPU."""

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None,
                 precision: str | None = None, hint: str = "LATENCY", expected: ModelIdentity | None = None,
                 static_shapes: bool = True) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise DdavsError(OPENVINO_MISSING) from None
        self.path = Path(path)
        if device is not None and device != "cpu":
            raise ConfigError(f"the openvino backend runs on the CPU here, not {device!r}; use --backend tensorrt or torch for a GPU")
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: not found; export one with `ddavs-rt export --checkpoint DIR --out FILE.onnx`")
        if self.path.suffix not in (".onnx", IR_SUFFIX):
            raise CheckpointError(f"{self.path}: openvino runs an .onnx export or an OpenVINO IR (.xml), not {self.path.suffix!r}")
        self.sidecar: OnnxSidecar = read_onnx_sidecar(self.path)
        check_onnx_identity(self.sidecar, self.path, expected)
        file_precision = self.sidecar.precision
        precision = precision or ("int8" if file_precision == "int8" else "fp32")
        if precision not in PRECISIONS:
            raise ConfigError(f"openvino precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if (precision == "int8") != (file_precision == "int8"):
            raise ConfigError(f"{self.path} is a {file_precision} graph; int8 needs an int8 file "
                              f"(`ddavs-rt calibrate --engine openvino`), other precisions the fp32 export")
        if precision == "bf16" and not native_bf16():
            raise ConfigError("openvino bf16 needs a CPU with AMX or AVX-512 BF16, and this one has neither; use fp32 or int8")
        hint = hint.upper()
        if hint not in HINTS:
            raise ConfigError(f"openvino performance hint {hint!r}: choose {' or '.join(HINTS)}")
        self.threads = threads or physical_cores()
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": hint,
            # bf16 where asked; f32 otherwise (OpenVINO would pick bf16 by itself on an AMX CPU)
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        self._core, self._config = ov.Core(), config
        try:
            self._model = self._core.read_model(str(self.path))
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: OpenVINO cannot read it ({_first_line(error)}); re-export it with `ddavs-rt export`") from None
        names = [port.get_any_name() for port in self._model.inputs]
        if sorted(names) != ["audio", "frames"]:
            raise CheckpointError(f"{self.path}: graph inputs {names} are not (frames, audio); re-export it with `ddavs-rt export`")
        self.spec = EngineSpec.from_config(
            self.sidecar.model_cfg(),
            batch_min=self.sidecar.batch_min,
            batch_max=self.sidecar.batch_max,
            model_id=self.sidecar.model_id,
            precision=precision,
            backend="openvino",
            device="cpu",
        )
        fixed = all(dim.is_static for port in self._model.inputs for dim in list(port.get_partial_shape())[1:])
        if static_shapes and not fixed:
            log.info("%s: an input has a dynamic dimension besides the batch; compiling the dynamic graph", self.path.name)
        self.static_shapes = static_shapes and fixed
        self.hint = hint
        # batch bucket (None: the dynamic graph) -> (compiled model, its idle infer requests, output port)
        self._compiled: dict[int | None, tuple] = {}
        self._compile_lock = threading.Lock()
        first = self._compile(1 if self.static_shapes else None)  # fails here, at open, if the graph does not compile
        # THROUGHPUT splits the threads into CPU streams, one call each; LATENCY gives one call all of them
        self.concurrency = max(1, int(first[0].get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))) if hint == "THROUGHPUT" else 1
        log.info("openvino engine %s: %s, %d threads, hint %s (%d call(s) at once), %s shapes", self.path.name,
                 precision, self.threads, hint, self.concurrency, "static" if self.static_shapes else "dynamic")

    @property
    def compiled_batches(self) -> list[int | None]:
        """The batch buckets compiled so far (None: the one dynamic graph)."""
        return sorted(self._compiled, key=lambda b: -1 if b is None else b)

    def bucket(self, batch: int) -> int:
        """The fixed batch size a batch of `batch` items runs at: the first of BATCH_BUCKETS that holds
        it, at most batch_max (steps of at most 1.5x: at most a third of a run is padding)."""
        for size in BATCH_BUCKETS:
            if size >= batch:
                return min(size, self.spec.batch_max)
        return self.spec.batch_max

    def prepare(self, max_batch: int) -> None:
        """Compile every bucket a batch of up to `max_batch` items can run in (the scheduler calls this)."""
        if self.static_shapes:
            for size in sorted({self.bucket(n) for n in range(1, min(max_batch, self.spec.batch_max) + 1)}):
                self._compile(size)

    def _compile(self, batch: int | None) -> tuple:
        entry = self._compiled.get(batch)
        if entry is not None:
            return entry
        with self._compile_lock:  # two inference loops may meet a new bucket at once
            entry = self._compiled.get(batch)
            return entry if entry is not None else self._compile_locked(batch)

    def _compile_locked(self, batch: int | None) -> tuple:
        model = self._model
        if batch is not None:
            model = model.clone()
            model.reshape({port.get_any_name(): [batch, *[dim.get_length() for dim in list(port.get_partial_shape())[1:]]]
                           for port in model.inputs})
        started = time.perf_counter()
        try:
            compiled = self._core.compile_model(model, "CPU", self._config)
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: OpenVINO cannot compile it ({_first_line(error)}); re-export it with `ddavs-rt export`") from None
        requests: queue.SimpleQueue = queue.SimpleQueue()
        requests.put(compiled.create_infer_request())
        entry = self._compiled[batch] = (compiled, requests, compiled.output("mask_logits"))
        if batch is not None and batch > 1:
            log.info("openvino engine %s: compiled batch %d in %.1f s", self.path.name, batch, time.perf_counter() - started)
        return entry

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        count = len(frames)
        size = None
        if self.static_shapes:
            size = self.bucket(count)
            if size > count:  # pad with copies of the last item; their outputs are dropped
                frames = np.concatenate([frames, np.repeat(frames[-1:], size - count, axis=0)])
                audio = np.concatenate([audio, np.repeat(audio[-1:], size - count, axis=0)])
        compiled, requests, output = self._compile(size)
        try:  # an idle request of this graph, or a new one when every one is busy (calls from several threads)
            request = requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            result = request.infer({"frames": np.ascontiguousarray(frames), "audio": np.ascontiguousarray(audio)},
                                   share_inputs=True)
            return np.array(result[output][:count], copy=True)
        finally:
            requests.put(request)

    def close(self) -> None:
        self._compiled.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
