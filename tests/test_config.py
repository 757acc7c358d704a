"""Config loading: valid files validate; invalid ones fail with one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddavs_rt.config import (
    ModelConfig,
    RuntimeConfig,
    TrainConfig,
    load_config,
    parse_config,
)
from ddavs_rt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_model_variant_fills_dims_and_depths() -> None:
    cfg = parse_config({"name": "x", "visual": {"variant": "b0"}}, ModelConfig)
    assert cfg.visual.embed_dims == (32, 64, 160, 256)
    assert cfg.visual.depths == (2, 2, 2, 2)
    cfg = parse_config({"name": "x", "visual": {"variant": "b5"}}, ModelConfig)
    assert cfg.visual.depths == (3, 6, 40, 3)


def test_audio_encoder_kind_selects_its_own_frontend() -> None:
    htsat = parse_config({"name": "x", "audio": {"kind": "htsat"}}, ModelConfig)
    vggish = parse_config({"name": "x", "audio": {"kind": "vggish"}}, ModelConfig)
    assert htsat.audio.frontend.sample_rate == 32000 and htsat.audio.out_dim == 768
    assert vggish.audio.frontend.hop_length == 160 and vggish.audio.out_dim == 128


def test_invalid_field_names_file_field_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\naqm:\n  num_queries: five\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ModelConfig)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "aqm.num_queries" in message and "'five'" in message


def test_unknown_field_is_an_error_not_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\navam:\n  positoins: [3, 4]\n")
    with pytest.raises(ConfigError, match=r"avam\.positoins"):
        load_config(path, ModelConfig)


def test_bad_injection_position_and_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="positions must be among 1-4"):
        load_config(_write(tmp_path, "name: x\navam: {positions: [0, 3]}\n"), ModelConfig)
    with pytest.raises(ConfigError, match=r"audio"):
        load_config(_write(tmp_path, "name: x\naudio: {kind: wav2vec}\n"), ModelConfig)


def test_com_without_aqm_is_refused() -> None:
    with pytest.raises(ConfigError, match="com.enabled needs aqm.enabled"):
        parse_config({"name": "x", "aqm": {"enabled": False}, "com": {"enabled": True}}, ModelConfig)


def test_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", ModelConfig)
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1"):
        load_config(_write(tmp_path, "name: x\naqm: [1, 2\n"), ModelConfig)
    with pytest.raises(ConfigError, match="empty config"):
        load_config(_write(tmp_path, ""), ModelConfig)


def test_train_and_runtime_configs_validate() -> None:
    train = parse_config({"model": "configs/model/ddavs-tiny.yaml", "data": {"root": "data/x"}}, TrainConfig)
    assert train.lr == 1e-4 and train.weight_decay == 0.05
    with pytest.raises(ConfigError, match="jpeg_quality"):
        parse_config({"jpeg_quality": 0}, RuntimeConfig)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "model").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_model_config_validates(path: Path) -> None:
    cfg = load_config(path, ModelConfig)
    assert cfg.name


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    import os

    from ddavs_rt.atomic import atomic_write_text

    target = tmp_path / "out.json"
    atomic_write_text(target, "{}")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert target.read_text() == "{}" and not list(tmp_path.glob(".*.tmp"))
