"""The distribution's package list matches the tree, and the dependency rule holds."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = data["tool"]["setuptools"]
    return set(setuptools["packages"]), setuptools["package-dir"]


def test_every_package_folder_is_declared() -> None:
    declared, package_dir = _declared()
    found = set()
    for prefix, folder in package_dir.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            name = ".".join([prefix, *rel.parts]) if rel.parts else prefix
            found.add(name)
    assert found == declared, f"undeclared: {found - declared}, stale: {declared - found}"


def test_torch_and_torchaudio_are_pinned_together() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.11.0" in deps and "torchaudio==2.11.0" in deps


def test_library_never_imports_training_or_calibration_at_module_level() -> None:
    offenders = []
    for path in (REPO / "ddavs_rt").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:  # module level only: lazy imports inside functions are allowed
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[:2] in (["ddavs_rt", "train"], ["ddavs_rt", "calibration"]) or name.split(".")[0] in ("train", "calibration", "pipelines"):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, offenders


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at module level or lazily inside a function."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


OFFLINE = (("ddavs_rt", "calibration"), ("ddavs_rt", "train"), ("ddavs_rt", "synth"))


def test_engine_is_the_deployment_library_only() -> None:
    """ddavs_rt/engine/ never imports calibration, synth or training code, not even lazily
    (the benchmark and the TensorRT build live in calibration/ with the other offline tools)."""
    offenders = []
    for path in (REPO / "ddavs_rt" / "engine").rglob("*.py"):
        for name in _imports(path):
            parts = tuple(name.split("."))
            if parts[:2] in OFFLINE or parts[0] in ("train", "calibration", "pipelines"):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, offenders
    assert not (REPO / "ddavs_rt" / "engine" / "bench.py").exists()
    assert not (REPO / "ddavs_rt" / "engine" / "tensorrt_build.py").exists()


def test_quantization_uses_only_the_public_engine_api() -> None:
    """calibration/'s INT8 code imports `ddavs_rt.engine` (its __all__), never an engine module."""
    import ddavs_rt.engine as engine

    offenders = []
    for name in ("quantize.py", "reader.py", "clips.py", "cli.py"):
        path = REPO / "calibration" / name
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddavs_rt.engine"):
                if node.module != "ddavs_rt.engine":
                    offenders.append(f"{name}: from {node.module}")
                offenders += [f"{name}: {a.name} not public" for a in node.names if a.name not in engine.__all__]
            elif isinstance(node, ast.Import):
                offenders += [f"{name}: import {a.name}" for a in node.names if a.name.startswith("ddavs_rt.engine")]
    assert not offenders, offenders
