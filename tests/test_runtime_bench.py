"""bench-pipeline writes a complete result: both passes, the machine, overhead split from capture."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ddavs_rt.cli import main
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.model.checkpoint import save_checkpoint
from ddavs_rt.model.ddavs import build_model

REPO = Path(__file__).resolve().parents[1]


def test_bench_pipeline_reports_both_passes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs" / "model" / "ddavs-tiny.yaml", ModelConfig)
    save_checkpoint(tmp_path / "ckpt", build_model(cfg).eval(), cfg)
    out = tmp_path / "bench.json"
    code = main(["bench-pipeline", "--checkpoint", str(tmp_path / "ckpt"), "--backend", "torch",
                 "--seconds", "3", "--overhead-seconds", "2", "--fps", "10", "--json", str(out), "-q"])
    assert code == 0
    result = json.loads(out.read_text())
    full = result["with_engine"]
    assert full["processed"] > 5 and 0.0 <= full["dropped_share"] <= 1.0
    assert full["latency_ms"]["p50"] <= full["latency_ms"]["p95"] <= full["latency_ms"]["p99"]
    assert full["latency_ms"]["frames"] == full["processed"]  # every frame of the pass, not a recent window
    assert full["rss_mib"]["samples"], "memory was never sampled"
    overhead = result["pipeline_overhead"]
    assert overhead["source_cpu_ms_per_frame"] > 0.0  # the scene's rendering was measured apart
    assert overhead["cpu_ms_per_frame"] < overhead["with_source_cpu_ms_per_frame"]
    assert result["machine"] and result["backend"] == "torch"
