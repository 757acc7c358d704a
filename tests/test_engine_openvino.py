"""OpenVINO backend and the CPU rule of `--backend auto`: real exports, real OpenVINO and ONNX Runtime sessions.

The policy tests give `choose_engine` real files whose sidecars say what they are (a copy of the
fp32 export labelled int8 stands in for an int8 file: the policy reads sidecars only and never
opens it); the engine tests compile real graphs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ddavs_rt.atomic import sha256_file
from ddavs_rt.engine import choose_engine, open_engine, read_onnx_sidecar, sidecar_path, write_sidecar
from ddavs_rt.engine.machine import cpu_flags
from ddavs_rt.errors import CheckpointError, ConfigError

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'ddavs-rt[openvino]')")

from ddavs_rt.engine.openvino_backend import OpenVinoEngine, native_bf16  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint):
    from ddavs_rt.engine.export import export_checkpoint

    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("ov") / "tiny.onnx", batch=(1, 3))


def _inputs(size: int, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            (rng.random((batch, 16000), dtype=np.float32) * 2 - 1) * 0.5)


def _labelled_int8(exported: Path, folder: Path, accuracy: dict | None) -> Path:
    """A file whose sidecar says int8, made from `exported` (the policy reads sidecars only)."""
    target = folder / "tiny.int8.onnx"
    shutil.copy(exported, target)
    sidecar = read_onnx_sidecar(exported)
    calibration = {"method": "test"} | ({"accuracy": accuracy} if accuracy else {})
    write_sidecar(target, sidecar.model_copy(update={"precision": "int8", "calibration": calibration,
                                                     "source_onnx_sha256": sha256_file(exported)}))
    return target


def test_openvino_fp32_equals_onnxruntime_fp32(exported):
    ov_engine = open_engine(exported, backend="openvino:fp32", threads=1)  # plain openvino is bf16 on AMX
    ort_engine = open_engine(exported, backend="onnxruntime", threads=1)
    assert (ov_engine.spec.backend, ov_engine.spec.precision) == ("openvino", "fp32")
    assert ov_engine.spec.model_id == ort_engine.spec.model_id == read_onnx_sidecar(exported).model_id
    size = ov_engine.spec.input_size[0]
    for batch in (1, 3, 5):  # 5 > batch_max 3: split into chunks like every backend
        frames, audio = _inputs(size, batch, seed=batch)
        got, want = ov_engine.infer(frames, audio), ort_engine.infer(frames, audio)
        assert got.shape == want.shape == (batch, 1, size, size)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)


def test_openvino_refuses_a_sidecar_that_does_not_match_its_model(exported, tmp_path):
    copy = tmp_path / "m.onnx"
    shutil.copy(exported, copy)
    data = json.loads(sidecar_path(exported).read_text())
    data["bank_sha256"] = "b" * 64  # the model_id no longer hashes to these checksums
    sidecar_path(copy).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="refused") as error:
        OpenVinoEngine(copy, threads=1)
    assert "\n" not in str(error.value)


def test_bf16_only_where_the_cpu_multiplies_bf16(exported):
    assert native_bf16() == bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
    if native_bf16():
        choice = choose_engine(exported, "auto")
        assert (choice.backend, choice.precision) == ("openvino", "bf16")
        assert open_engine(exported, "openvino:bf16", threads=1).spec.precision == "bf16"
    else:
        with pytest.raises(ConfigError, match="AMX or AVX-512 BF16") as error:
            choose_engine(exported, "openvino:bf16")
        assert "\n" not in str(error.value)
        with pytest.raises(ConfigError, match="AMX or AVX-512 BF16"):
            OpenVinoEngine(exported, precision="bf16", threads=1)
        choice = choose_engine(exported, "auto")
        assert (choice.backend, choice.precision) == ("onnxruntime", None) and "fp32 on onnxruntime" in choice.reason


def test_auto_never_picks_int8_and_a_pinned_int8_says_whether_it_was_checked(exported, tmp_path, caplog):
    # int8 measured slower than bf16 (AMX Xeon) and than ONNX Runtime fp32 (AVX2 EPYC): auto passes
    # over even a checked int8 file; pinning runs it, and the reason says what its check found
    folder = tmp_path / "models"
    folder.mkdir()
    graph = folder / "tiny.onnx"
    shutil.copy(exported, graph)
    shutil.copy(sidecar_path(exported), sidecar_path(graph))
    with pytest.raises(CheckpointError, match="ddavs-rt calibrate"):
        choose_engine(graph, "auto:int8")  # pinned int8 and no int8 file: say how to make one
    rule = choose_engine(graph, "auto")
    assert rule.precision != "int8" and rule.target == graph
    int8 = _labelled_int8(graph, folder, accuracy=None)  # never checked
    assert choose_engine(graph, "auto") == rule
    with caplog.at_level("WARNING", logger="ddavs_rt.engine.open"):
        pinned = choose_engine(graph, "auto:int8")  # pinned: the user accepts the unchecked file
    assert pinned.target == int8 and pinned.backend == "openvino" and pinned.precision == "int8"
    assert "never checked" in pinned.reason and any("never checked" in r.getMessage() for r in caplog.records)
    _labelled_int8(graph, folder, accuracy={"jf_drop": 0.02, "jf_fp32": 0.88, "jf_int8": 0.86, "clips": 300})
    assert "loses 0.020" in choose_engine(graph, "auto:int8").reason
    _labelled_int8(graph, folder, accuracy={"jf_drop": 0.004, "jf_fp32": 0.882, "jf_int8": 0.878, "clips": 300})
    caplog.clear()
    with caplog.at_level("INFO", logger="ddavs_rt.engine.open"):
        assert choose_engine(graph, "auto") == rule  # checked and within the bound: still not auto's pick
    assert any("not running" in r.getMessage() and "auto:int8" in r.getMessage() for r in caplog.records)
    chosen = choose_engine(graph, "openvino:int8")
    assert (chosen.target, chosen.backend, chosen.precision) == (int8, "openvino", "int8")
    assert "0.878" in chosen.reason and chosen.named is False
    assert choose_engine(graph, "onnxruntime:int8").backend == "onnxruntime"
    assert choose_engine(graph, "auto:fp32").precision in (None, "fp32")
    assert choose_engine(graph, "onnxruntime").backend == "onnxruntime"


def test_backend_and_precision_are_validated_in_one_line(exported):
    for spec, message in (("openvinoo", "choose one of"), ("openvino:int4", "precision 'int4'"),
                          ("auto:fp16", "GPU precision")):
        with pytest.raises((ConfigError, CheckpointError), match=message) as error:
            choose_engine(exported, spec, "cpu")
        assert "\n" not in str(error.value)


SHIPPED_GRAPH = Path(__file__).resolve().parents[1] / "models" / "ddavs-tiny-synth" / "model.onnx"


def test_a_batch_runs_padded_to_its_static_bucket_and_equals_the_dynamic_graph():
    static = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=1)
    dynamic = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=1, static_shapes=False)
    assert static.compiled_batches == [1] and dynamic.compiled_batches == [None]
    cap = static.spec.batch_max
    assert [static.bucket(n) for n in (1, 2, 3, 5, 7, cap)] == [1, 2, 3, 6, 8, cap]
    size = static.spec.input_size[0]
    frames, audio = _inputs(size, 5, seed=7)
    got = static.infer(frames, audio)
    assert static.compiled_batches == [1, 6]  # five items ran in the batch-6 graph, one padded row
    assert got.shape == (5, 1, size, size)
    np.testing.assert_allclose(got, dynamic.infer(frames, audio), atol=1e-4, rtol=1e-4)
    for i in range(5):  # the padded row changes nothing: each item alone gives its own logits
        np.testing.assert_allclose(static.infer(frames[i:i + 1], audio[i:i + 1]), got[i:i + 1], atol=1e-4, rtol=1e-4)
    assert static.compiled_batches == [1, 6]


def test_prepare_compiles_every_bucket_a_scheduler_batch_can_need_before_the_first_frame():
    engine = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=1)
    engine.prepare(5)  # batches of 1..5 run in the 1, 2, 3, 4 and 6 graphs
    assert engine.compiled_batches == [1, 2, 3, 4, 6]
    engine.prepare(2)
    assert engine.compiled_batches == [1, 2, 3, 4, 6]
    dynamic = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=1, static_shapes=False)
    dynamic.prepare(5)
    assert dynamic.compiled_batches == [None]


def test_throughput_hint_runs_calls_from_several_threads_at_once_each_with_its_own_answer():
    import threading

    latency = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=2, hint="LATENCY")
    assert latency.concurrency == 1  # one call gets every thread: the scheduler runs one inference loop
    engine = OpenVinoEngine(SHIPPED_GRAPH, precision="fp32", threads=2, hint="throughput")
    compiled = engine._compile(1)[0]
    assert engine.concurrency == compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") >= 1
    size = engine.spec.input_size[0]
    inputs = [_inputs(size, batch, seed=20 + i) for i, batch in enumerate((1, 2, 1, 2, 1, 2))]
    alone = [engine.infer(frames, audio) for frames, audio in inputs]  # one at a time
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        start.wait()
        for _ in range(3):  # several rounds, so calls on the same graph overlap and need requests of their own
            results[i] = engine.infer(*inputs[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i, want in enumerate(alone):  # no call got another's input or output
        np.testing.assert_allclose(results[i], want, atol=1e-5, rtol=1e-5)
    idle = {batch: entry[1].qsize() for batch, entry in engine._compiled.items()}
    assert max(idle.values()) >= 2  # the calls really overlapped: a graph needed a second request
