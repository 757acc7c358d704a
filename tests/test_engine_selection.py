"""Which TensorRT engine `open_engine` takes among several in a folder (real files and sidecars):
the one built for this GPU and TensorRT version, made from this ONNX, found also when it was built
from an .fp16.onnx / .int8.onnx (or .int8.fp16.onnx) derived from the .onnx the user passes; and that the GPU probed is the one `--device cuda:N` names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ddavs_rt.atomic import sha256_file
from ddavs_rt.engine.open import choose_engine, cuda_usable, find_tensorrt_engine, tensorrt_usable
from ddavs_rt.engine.sidecar import OnnxSidecar, TensorInfo, TensorRTSidecar, write_sidecar
from ddavs_rt.errors import ConfigError

H100 = ("NVIDIA H100 80GB HBM3", "9.0", "10.15.1")
L4 = ("NVIDIA L4", "8.9", "10.15.1")


def _onnx(folder: Path, name: str, content: bytes, precision: str = "fp32", source: Path | None = None) -> Path:
    path = folder / name
    path.write_bytes(content)
    write_sidecar(path, OnnxSidecar(
        model_id="ddavs-tiny@abc", config={"name": "ddavs-tiny"}, checkpoint_sha256="c" * 64, opset=18,
        inputs=[TensorInfo(name="frames", dtype="uint8", shape=["batch", 160, 160, 3])],
        outputs=[TensorInfo(name="mask_logits", dtype="float32", shape=["batch", 1, 160, 160])],
        batch_min=1, batch_max=8, exporter="test", precision=precision,
        source_onnx_sha256=sha256_file(source) if source else None,
    ))
    return path


def _engine(folder: Path, name: str, onnx_path: Path, machine, precision: str, age: int = 0) -> Path:
    from ddavs_rt.engine.sidecar import read_onnx_sidecar

    path = folder / name
    path.write_bytes(name.encode())
    gpu, capability, version = machine
    write_sidecar(path, TensorRTSidecar(
        onnx=read_onnx_sidecar(onnx_path), onnx_path=str(onnx_path), onnx_sha256=sha256_file(onnx_path),
        checkpoint_sha256="c" * 64, precision=precision, tensorrt_version=version, gpu_name=gpu,
        compute_capability=capability, cuda_version="13.0", batch_min=1, batch_opt=8, batch_max=8,
    ))
    stamp = 1_700_000_000 - age
    os.utime(path, (stamp, stamp))
    return path


def test_the_engine_for_this_gpu_and_tensorrt_version_is_chosen(tmp_path):
    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    l4 = _engine(tmp_path, "a_tiny_l4_fp16.engine", model, L4, "fp16")  # sorts first: once it was taken blindly
    h100 = _engine(tmp_path, "b_tiny_h100_fp16.engine", model, H100, "fp16")
    _engine(tmp_path, "c_tiny_h100_old_trt.engine", model, (*H100[:2], "10.14.0"), "fp16")
    sha = sha256_file(model)
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha, machine=H100) == h100
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha, machine=L4) == l4
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha, machine=("NVIDIA A10", "8.6", "10.15.1")) is None
    assert find_tensorrt_engine([tmp_path], model_id="ddavs-tiny@abc", machine=H100) == h100
    assert find_tensorrt_engine([tmp_path], onnx_sha="f" * 64, machine=H100) is None  # another ONNX


def test_engines_built_from_derived_onnx_files_are_found_from_the_users_onnx(tmp_path):
    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    fp16 = _onnx(tmp_path, "tiny.fp16.onnx", b"fp16 graph", "fp16", source=model)
    int8 = _onnx(tmp_path, "tiny.int8.onnx", b"int8 graph", "int8", source=model)
    int8_fp16 = _onnx(tmp_path, "tiny.int8.fp16.onnx", b"int8 fp16 graph", "int8", source=int8)
    sha = sha256_file(model)
    from_fp16 = _engine(tmp_path, "tiny_h100_fp16.engine", fp16, H100, "fp16")
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha, machine=H100) == from_fp16  # TensorRT 11 fp16 build
    from_int8 = _engine(tmp_path, "tiny_h100_int8.engine", int8_fp16, H100, "int8")  # strongly typed int8: two steps
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha, machine=H100) == from_int8  # int8 before fp16
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha256_file(fp16), machine=H100) == from_fp16
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha256_file(int8), machine=H100) == from_int8


def test_among_equal_engines_the_newest_is_taken(tmp_path):
    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    _engine(tmp_path, "old.engine", model, H100, "fp16", age=100)
    new = _engine(tmp_path, "new.engine", model, H100, "fp16", age=1)
    assert find_tensorrt_engine([tmp_path], onnx_sha=sha256_file(model), machine=H100) == new


# --- the GPU the user named (--device cuda:N) is the one probed -----------------------------------


@pytest.fixture
def two_gpus(monkeypatch):
    """An H100 as cuda:0 and an L4 as cuda:1, with TensorRT 10.15.1: test doubles at the torch.cuda
    boundary and of the `tensorrt` module (no GPU and no TensorRT here). Records the probed indices."""
    import importlib.machinery
    import sys
    import types

    import torch

    gpus = [H100, L4]
    probed: list[int] = []

    def name(index: int = 0) -> str:
        probed.append(index)
        return gpus[index][0]

    def capability(index: int = 0) -> tuple[int, int]:
        probed.append(index)
        major, minor = gpus[index][1].split(".")
        return int(major), int(minor)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "get_device_name", name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    tensorrt = types.ModuleType("tensorrt")
    tensorrt.__version__ = "10.15.1"
    tensorrt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt)
    return probed


def test_auto_probes_and_picks_the_engine_of_the_gpu_named(tmp_path, two_gpus):
    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    h100 = _engine(tmp_path, "a_tiny_h100_fp16.engine", model, H100, "fp16")  # sorts first
    l4 = _engine(tmp_path, "b_tiny_l4_fp16.engine", model, L4, "fp16")
    choice = choose_engine(model, "auto", device="cuda:1")
    assert (choice.backend, choice.target) == ("tensorrt", l4)  # cuda:0's probe would pick the H100 engine
    assert set(two_gpus) == {1}
    two_gpus.clear()
    assert choose_engine(model, "auto", device="cuda:0").target == h100 and set(two_gpus) == {0}
    two_gpus.clear()
    assert choose_engine(model, "auto", device="cuda").target == h100 and set(two_gpus) == {0}
    two_gpus.clear()
    assert choose_engine(model, "tensorrt", device="cuda:1").target == l4 and set(two_gpus) == {1}


def test_onnxruntime_cuda_provider_runs_on_the_gpu_named(monkeypatch):
    """Without `device_id` the CUDA provider runs on GPU 0 whatever --device says (this
    onnxruntime has no CUDA provider: its provider list is stood in for)."""
    import onnxruntime

    from ddavs_rt.engine.ort_backend import ort_providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ort_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]
    assert ort_providers(None)[0] == ("CUDAExecutionProvider", {"device_id": "0"})
    assert ort_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="expected cpu, cuda or cuda:N"):
        ort_providers("cuda:first")


def test_a_gpu_index_beyond_the_visible_ones_is_a_one_line_error(tmp_path, two_gpus):
    from ddavs_rt.engine.tensorrt_backend import TensorRTEngine, gpu_identity, tensorrt_available

    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    engine = _engine(tmp_path, "tiny_l4_fp16.engine", model, L4, "fp16")
    for call in (lambda: choose_engine(model, "auto", device="cuda:2"), lambda: choose_engine(engine, "auto", device="cuda:2"),
                 lambda: cuda_usable("cuda:2"), lambda: tensorrt_usable("cuda:7"), lambda: tensorrt_available(2),
                 lambda: gpu_identity(2), lambda: TensorRTEngine(engine, device="cuda:2")):
        with pytest.raises(ConfigError, match=r"this machine shows 2 GPU\(s\) \(cuda:0..cuda:1\)") as error:
            call()
        assert "\n" not in str(error.value)
    assert two_gpus == []  # nothing asked a GPU that is not there
    with pytest.raises(ConfigError, match="expected cpu, cuda or cuda:N"):
        choose_engine(model, "auto", device="cuda:one")
    assert cuda_usable("cuda:1") and tensorrt_usable("cuda:1") and gpu_identity(1)[:2] == L4[:2]


def test_without_a_visible_gpu_a_named_cuda_device_falls_back_instead(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_usable("cuda:3") is False and cuda_usable(None) is False and cuda_usable("cpu") is False


def test_benchmark_records_and_file_names_say_the_gpu_the_device_names(two_gpus):
    from ddavs_rt.engine.machine import describe_machine, machine_slug

    assert describe_machine("cuda:1")["gpu"]["name"] == L4[0] and describe_machine("cuda:1")["gpu"]["index"] == 1
    assert describe_machine()["gpu"]["name"] == H100[0]  # no device: the first visible GPU
    assert describe_machine("cpu")["gpu"]["index"] == 0  # a CPU run still records the box's first GPU
    assert machine_slug("cuda:1") == "nvidia-l4" and machine_slug("cuda:0").startswith("nvidia-h100")
    assert describe_machine("cuda:5")["gpu"] is None  # a GPU the box does not have is not described as another


def test_build_engine_checks_the_gpu_it_was_asked_to_build_for_before_any_work(two_gpus, tmp_path):
    from calibration.tensorrt_build import build_engine

    model = _onnx(tmp_path, "tiny.onnx", b"fp32 graph")
    with pytest.raises(ConfigError) as caught:
        build_engine(model, "fp16", device="cuda:2")
    assert "\n" not in str(caught.value) and "cuda:2" in str(caught.value) and "2 GPU(s)" in str(caught.value)
    assert two_gpus == []  # refused before any GPU was probed (GPU 0 was never asked about)
