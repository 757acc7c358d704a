"""Every ready pipeline file is a valid runtime config with the sources it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddavs_rt.config import RuntimeConfig, load_config

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
EXPECTED = {"demo.yaml": {"synthetic"}, "camera-mic.yaml": {"camera"}, "rtsp-ingest.yaml": {"media"},
            "file-replay.yaml": {"media"}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pipeline_file_validates(name: str) -> None:
    config = load_config(PIPELINES / name, RuntimeConfig)
    assert {source.kind for source in config.sources} == EXPECTED[name]
