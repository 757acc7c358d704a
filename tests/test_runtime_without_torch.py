"""The deployment without torch: the runtime path runs an exported graph with torch made unimportable.

Each check runs the real CLI in a subprocess whose import system refuses torch, torchaudio and the
other packages a `setup.sh --runtime` environment lacks (onnx, onnxscript, safetensors, matplotlib, nncf, openvino); a module that imports torch anywhere on the way fails
the run. The offline commands say in one line that they need the full install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from support.rtsp_server import free_port

BLOCK = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchaudio", "onnx", "onnxscript", "safetensors", "matplotlib", "nncf"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
sys.modules["openvino"] = None  # absent as in a plain --runtime venv: find_spec() gives None, import fails
from ddavs_rt.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio", "onnx", "onnxscript", "safetensors"))
assert not leaked, leaked
sys.exit(code)
"""


def _cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def graph(tmp_path_factory, checkpoint) -> Path:
    from ddavs_rt.engine.export import export_checkpoint

    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("notorch") / "tiny.onnx", batch=(1, 4))


def test_the_blocker_really_blocks_torch():
    result = subprocess.run([sys.executable, "-c", BLOCK.replace("from ddavs_rt.cli import main", "import torch")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "ddavs-tiny-synth"


def test_the_shipped_model_carries_its_own_export_within_50_mb():
    from ddavs_rt.engine import checkpoint_identity, read_onnx_sidecar

    sidecar = read_onnx_sidecar(SHIPPED / "model.onnx")
    assert sidecar.model_id == checkpoint_identity(SHIPPED).model_id and sidecar.precision == "fp32"
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) <= 50 * 1024 * 1024


def test_demo_runs_the_shipped_graph_without_torch():
    port = free_port()
    context = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(f"tcp://127.0.0.1:{port}")
    process = subprocess.Popen([sys.executable, "-c", BLOCK, "--demo", "--backend", "auto",  # the shipped model
                                "--duration", "20", "--publish", f"tcp://127.0.0.1:{port}", "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    received = 0
    try:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        while received < 5 and process.poll() is None:
            if poller.poll(1000):
                socket.recv_multipart()
                received += 1
        output, _ = process.communicate(timeout=180)
    finally:
        socket.close(linger=0)
        if process.poll() is None:
            process.kill()
    assert received >= 5, output
    assert process.returncode == 0, output
    assert "model.onnx, found in the checkpoint folder" in output and "fp32 on onnxruntime" in output


def test_bench_pipeline_without_torch(graph, tmp_path):
    out = tmp_path / "pipeline.json"
    result = _cli("bench-pipeline", "--engine", str(graph), "--backend", "onnxruntime", "--streams", "1",
                  "--seconds", "4", "--overhead-seconds", "1", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] is None


@pytest.mark.parametrize("command", ["subscribe", "view"])
def test_subscribe_and_view_load_without_torch(command):
    result = _cli(command, "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: ddavs-rt " + command in result.stdout


@pytest.mark.parametrize("argv", [["export", "--checkpoint", "x", "--out", "y.onnx"], ["train", "--config", "x.yaml"],
                                  ["calibrate", "--onnx", "x.onnx", "--out", "y.onnx", "--engine", "onnxruntime", "--data", "x"]])
def test_offline_commands_say_they_need_the_full_install(argv):
    result = _cli(*argv, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddavs-rt: error:")]
    assert len(errors) == 1 and "needs the full install" in errors[0], result.stderr


def test_live_scoring_without_torch_equals_the_torch_protocol_code():
    """The runtime's live J / F (ddavs_rt.metrics) falls back to numpy without torch: same numbers."""
    import numpy as np

    from ddavs_rt import metrics

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (4, 40, 48)).astype(np.float32)
    masks = (rng.random((4, 40, 48)) > 0.6).astype(np.float32)
    masks[1] = 0  # an empty ground truth: J's background rule, F skips it
    assert metrics._np_avsbench_j(logits, masks) == pytest.approx(metrics.avsbench_j(logits, masks), abs=1e-6)
    curves_np, counted_np = metrics._np_avsbench_f_curves(logits, masks)
    curves_t, counted_t = metrics.avsbench_f_curves(logits, masks)
    assert (counted_np == counted_t).all()
    np.testing.assert_allclose(curves_np, curves_t, atol=1e-5)
