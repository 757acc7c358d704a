"""Every model config builds and gives logits of the engine contract's shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.model.ddavs import build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "model").rglob("*.yaml"))
HEAVY = {"ddavs-b5-htsat.yaml", "ddavs-b5-vggish.yaml"}


def _small(cfg: ModelConfig) -> ModelConfig:
    return cfg.model_copy(update={"input_size": 64})


def test_the_expected_configs_exist() -> None:
    names = {path.relative_to(REPO / "configs" / "model").as_posix() for path in CONFIGS}
    expected = {"ddavs-b5-htsat.yaml", "ddavs-b5-vggish.yaml", "ddavs-tiny.yaml"}
    expected |= {f"ablation/tiny-{row}.yaml" for row in ("baseline", "aqm", "aqm-com", "avam", "full")}
    expected |= {f"ablation/tiny-pos-{p}.yaml" for p in ("1", "4", "34", "1234")}
    assert expected <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_forward_shapes(path: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = load_config(path, ModelConfig)
    model = build_model(_small(cfg)).eval()  # 64x64 inside: shapes, not accuracy
    batch = 1 if path.name in HEAVY else 2
    frames = torch.randint(0, 256, (batch, 48, 80, 3), dtype=torch.uint8)
    audio = torch.randn(batch, cfg.window_samples) * 0.1
    with torch.no_grad():
        logits = model(frames, audio)
    assert logits.shape == (batch, cfg.decoder.num_classes, 48, 80)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    if path.name not in HEAVY:
        with torch.no_grad():
            queries = model.audio_queries(audio)
        n = cfg.aqm.num_queries if cfg.aqm.enabled else model.audio_encoder.num_tokens
        assert queries.shape == (batch, n, model.audio_encoder.out_dim)


def test_the_paper_model_is_near_the_papers_parameter_count() -> None:
    cfg = load_config(REPO / "configs/model/ddavs-b5-htsat.yaml", ModelConfig)
    model = build_model(cfg)
    inference = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.com.parameters())
    assert abs(inference / 1e6 - 150.29) / 150.29 < 0.15
