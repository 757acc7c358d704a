"""Benchmark arithmetic (no timings asserted): percentiles, throughput, ratios, peak RSS, argument errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from ddavs_rt.calibration.bench import _ratios, add_arguments, peak_rss_mib, run_bench, summarize
from ddavs_rt.errors import ConfigError


def test_summary_uses_the_median_for_throughput_and_a_real_p95():
    latencies = [0.010] * 19 + [0.100]  # one slow outlier
    row = summarize(latencies, batch=8)
    assert row["median_ms"] == 10.0
    assert row["frames_per_s"] == 800.0
    assert row["p95_ms"] == pytest.approx(np.percentile(latencies, 95) * 1e3)
    assert row["p95_ms"] > row["median_ms"]


def test_ratios_are_against_torch_at_the_same_batch():
    rows = [{"backend": "torch", "batch": 1, "frames_per_s": 40.0}, {"backend": "torch", "batch": 8, "frames_per_s": 80.0},
            {"backend": "onnxruntime", "batch": 1, "frames_per_s": 60.0}, {"backend": "onnxruntime", "batch": 8, "frames_per_s": 100.0}]
    assert _ratios(rows) == {"onnxruntime": {"1": 1.5, "8": 1.25}}


def test_peak_rss_grows_with_a_large_allocation():
    # in a fresh process: in this one an earlier test may already have set a higher peak
    code = (
        "import numpy as np; from ddavs_rt.calibration.bench import peak_rss_mib; before = peak_rss_mib(); "
        "block = np.ones(64 * 1024 * 1024 // 8); print(before, peak_rss_mib())"
    )
    before, after = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split())
    assert after >= before + 32


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("argv, message", [
    (["--config", "x.yaml", "--backend", "torch,cuda-magic"], "cuda-magic"),
    (["--config", "x.yaml", "--batch", "1,a"], "--batch"),
    (["--batch", "1"], "--checkpoint DIR or --config FILE"),
])
def test_bad_arguments_fail_before_any_work(argv, message):
    with pytest.raises(ConfigError, match=message):
        run_bench(_args(*argv))
