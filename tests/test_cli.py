"""The command dispatcher: subcommands resolve, errors are one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ddavs_rt import cli

REPO = Path(__file__).resolve().parents[1]


def test_overview_lists_every_subcommand(capsys) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_every_subcommand_module_exists_and_has_its_interface() -> None:
    import importlib

    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(getattr(module, "add_arguments")), name
        assert callable(getattr(module, "run")), name


def test_console_script_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndecoder: {num_classes: 0}\n")
    exe = Path(sys.executable).parent / "ddavs-rt"
    result = subprocess.run([str(exe), "model-info", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "decoder.num_classes" in lines[0], result.stderr
