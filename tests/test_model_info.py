"""`ddavs-rt model-info` through the real CLI: the numbers it prints are the model's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ddavs_rt.cli import main
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.model.ddavs import build_model
from ddavs_rt.model.info import measure

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/model/ddavs-tiny.yaml"


def _direct_counts() -> dict[str, int]:
    model = build_model(load_config(TINY, ModelConfig))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "visual encoder": count(model.visual),
        "audio encoder": count(model.audio_encoder),
        "AQM": count(model.aqm),
        "COM (training only)": count(model.com),
        "AVAM / fusion": count(model.avam),
        "decoder": count(model.decoder),
        "total": count(model) - count(model.com),
    }


def test_json_output_matches_a_direct_parameter_count(capsys) -> None:
    torch.set_num_threads(1)
    assert main(["model-info", "--config", str(TINY), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    direct = _direct_counts()
    reported = {m["name"]: m["params"] for m in data["modules"]}
    for name, value in direct.items():
        if name != "total":
            assert reported[name] == value, name
    assert data["total_params"] == direct["total"]
    assert data["paper_table8"]["DDAVS (ours)"] == {"params_m": 150.29, "gflops": 85.72}
    assert data["paper_row"] == "DDAVS (ours)"
    # compute: every module that runs at inference costs something, the parts add up to at most the total
    flops = {m["name"]: m["flops"] for m in data["modules"]}
    assert all(flops[name] > 0 for name in ("visual encoder", "audio encoder", "AQM", "AVAM / fusion", "decoder"))
    assert flops["COM (training only)"] == 0
    assert sum(flops.values()) <= data["total_flops"] < 1.2 * sum(flops.values())
    assert data["total_gmacs"] * 2 == data["total_gflops"]


def test_table_output_lists_modules_and_the_paper(capsys) -> None:
    torch.set_num_threads(1)
    assert main(["model-info", "--config", str(TINY)]) == 0
    out = capsys.readouterr().out
    direct = _direct_counts()
    line = next(l for l in out.splitlines() if l.startswith("total (inference)"))
    assert float(line.split()[2]) == round(direct["total"] / 1e6, 3)
    assert "150.29 M" in out and "85.72 G" in out and "GMACs" in out


def test_decoder_flops_match_a_hand_count() -> None:
    cfg = load_config(TINY, ModelConfig).model_copy(update={"input_size": 64})
    info = measure(cfg)
    hidden = cfg.decoder.hidden_dim  # 64
    dims, tokens = (32, 64, 160, 256), (16 * 16, 8 * 8, 4 * 4, 2 * 2)  # MiT-B0 at 64 x 64, strides 4..32
    linear = sum(2 * c * hidden * n for c, n in zip(dims, tokens))
    fuse = 2 * (4 * hidden) * hidden * tokens[0]
    classifier = 2 * hidden * 1 * tokens[0]
    decoder = next(m for m in info.modules if m.name == "decoder")
    assert decoder.flops == linear + fuse + classifier
    assert decoder.macs * 2 == decoder.flops


def test_a_bad_config_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndecoder:\n  hidden_dim: -1\n")
    assert main(["model-info", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "decoder.hidden_dim" in err and len(err.splitlines()) == 1
