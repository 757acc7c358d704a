"""Stand-ins for official checkpoint files: names and shapes read from data files in
tests/fixtures/official/ (each says which official file it describes), values random."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "official"


def describe(name: str) -> dict[str, Any]:
    """The fixture `name` (e.g. "mit_b0_mmseg"): {"file", "source", "layout", "keys": {key: shape}}."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def random_state(name: str, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """A state dict with the official file's names and shapes: floats ~ N(0, scale^2) (LayerNorm /
    BatchNorm weights around 1), integer buffers zero; callers set buffers with meaning."""
    spec = describe(name)
    dtypes = spec.get("dtypes", {})
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in spec["keys"].items():
        if dtypes.get(key, "float32") != "float32":
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtypes[key]))
            continue
        value = torch.randn(shape, generator=g) * scale
        if key.endswith(".weight") and len(shape) == 1:  # a norm's gain
            value = value + 1.0
        state[key] = value
    return state


def swin_relative_position_index(window: int) -> torch.Tensor:
    """Swin Transformer's relative_position_index buffer from its definition: for every pair of
    positions in a window x window grid, (dy + window - 1) * (2 window - 1) + (dx + window - 1)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, w*w]
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, w*w, w*w]
    return rel[0] * (2 * window - 1) + rel[1]
