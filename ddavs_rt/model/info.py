"""`ddavs-rt model-info --config FILE [--json]`: parameters and compute per module.

Parameters are counted with `numel()` per top-level module of DDAVS. Compute is counted with
`torch.utils.flop_counter.FlopCounterMode` on one inference pass at batch 1, with frames of
`input_size` x `input_size` and one audio window. FlopCounterMode counts a multiply-add as 2
FLOPs (FLOPs = 2 x MACs). The paper's Table 8 "GFLOPs" are almost certainly fvcore-style counts,
which report MACs, so the table shows GMACs (comparable to the paper) and GFLOPs (= 2 x GMACs).
Element-wise operations (LayerNorm, GELU, softmax, adds) are not counted by either tool.
COM runs only in training: its parameters are listed but excluded from the inference total, and
its compute is the projector on n queries of two waveforms (negligible; not in the pass).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddavs_rt.config import ModelConfig, load_config

# Paper Table 8 (module-wise efficiency, MiT-B5 + HTSAT at 224 x 224): params (M), GFLOPs.
PAPER_TABLE8: dict[str, tuple[float, float]] = {
    "Baseline": (129.02, 83.56),
    "+AQM": (152.06, 85.39),
    "+AQM+COM": (152.06, 85.39),
    "+AVAM": (127.24, 83.91),
    "DDAVS (ours)": (150.29, 85.72),
}

# report row -> DDAVS attribute names
MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "visual encoder": ("visual",),
    "audio encoder": ("audio_encoder",),
    "AQM": ("aqm",),
    "COM (training only)": ("com",),
    "AVAM / fusion": ("avam", "fusion"),
    "decoder": ("decoder",),
}

# the comparison variants: report row -> module paths (dotted, relative to the model)
_SDAVS_STAGES = range(4)
VARIANT_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "ddavs": MODULE_GROUPS,
    "ddeseg": {
        "visual encoder": ("visual",),
        "audio encoder": ("audio_encoder",),
        "DDM (derivation)": ("ddm",),
        "DEM (elimination)": ("dem",),
        "fusion blocks": ("fusion",),
        "decoder": ("decoder",),
    },
    "sdavs": {
        "visual encoder": ("visual",),
        "audio encoder": ("audio_encoder",),
        "SNRP": tuple(f"decoder.stages.{i}.snrp" for i in _SDAVS_STAGES),
        "DAMF": tuple(f"decoder.stages.{i}.damf" for i in _SDAVS_STAGES),
        "decoder (rest)": ("decoder.audio_proj", "decoder.mlp", "decoder.classifier")
        + tuple(f"decoder.stages.{i}.{part}" for i in _SDAVS_STAGES for part in ("lateral", "merge", "fuse", "skip")),
    },
}

# what the variants' papers report (trainable parameters, audio encoder frozen and not counted)
PAPER_VARIANT_PARAMS: dict[str, str] = {
    "ddeseg": "DDESeg paper Table 2: 103.84 M trainable ('Trans.' visual backbone, HTSAT or VGGish, audio frozen)",
    "sdavs": "SDAVS paper Table X: 103.2 M trainable (Swin-B + VGGish); SNRP 2.62 M, DAMF 2.44 M",
}


@dataclass
class ModuleInfo:
    name: str
    params: int
    flops: int  # FlopCounterMode FLOPs (2 x MACs)

    @property
    def macs(self) -> int:
        return self.flops // 2


@dataclass
class ModelInfo:
    config: str
    input_size: int
    window_samples: int
    modules: list[ModuleInfo]
    total_params: int  # inference: everything but COM
    total_params_training: int
    total_flops: int  # the whole pass, pre-processing and final upsampling included
    paper_row: str
    variant: str = "ddavs"

    def to_json(self) -> dict:
        data = asdict(self)
        for module in data["modules"]:
            module["gmacs"] = module["flops"] / 2e9
            module["gflops"] = module["flops"] / 1e9
        data["total_gmacs"] = self.total_flops / 2e9
        data["total_gflops"] = self.total_flops / 1e9
        data["flops_convention"] = "flops = 2 x macs (FlopCounterMode); the paper's GFLOPs compare with gmacs"
        data["paper_table8"] = {row: {"params_m": p, "gflops": g} for row, (p, g) in PAPER_TABLE8.items()}
        return data


def paper_row(cfg: ModelConfig) -> str:
    """The Table 8 row this config's switches correspond to ("" for the comparison variants)."""
    if cfg.variant != "ddavs":
        return ""
    aqm, com, avam = cfg.aqm.enabled, cfg.com.enabled, cfg.avam.enabled
    if aqm and avam:
        return "DDAVS (ours)"
    if aqm:
        return "+AQM+COM" if com else "+AQM"
    return "+AVAM" if avam else "Baseline"


def _group_flops(counts: dict[str, dict], root: str, attrs: tuple[str, ...]) -> int:
    """Sum the counts of the shallowest tracked modules under `root.attr` (no double counting)."""
    total = 0
    for attr in attrs:
        prefix = f"{root}.{attr}"
        keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
        shallow = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
        total += sum(sum(counts[k].values()) for k in shallow)
    return total


def _submodule(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """`model.a.b.c` for "a.b.c", or None where a part is missing or None."""
    module: torch.nn.Module | None = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def measure(cfg: ModelConfig, config_name: str = "") -> ModelInfo:
    from ddavs_rt.model.ddavs import build_model

    model = build_model(cfg).eval().requires_grad_(False)  # views of leaves under no_grad upset the module tracker
    frames = torch.zeros(1, cfg.input_size, cfg.input_size, 3, dtype=torch.uint8)
    audio = torch.zeros(1, cfg.window_samples, dtype=torch.float32)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(frames, audio)
    counts = counter.get_flop_counts()
    root = next((k for k in counts if k != "Global" and "." not in k), type(model).__name__)
    modules = []
    for row, attrs in VARIANT_GROUPS[cfg.variant].items():
        params = sum(p.numel() for a in attrs if _submodule(model, a) is not None for p in _submodule(model, a).parameters())
        modules.append(ModuleInfo(row, params, _group_flops(counts, root, attrs)))
    total_training = sum(p.numel() for p in model.parameters())
    com = getattr(model, "com", None)
    com_params = sum(p.numel() for p in com.parameters()) if com is not None else 0
    return ModelInfo(
        config=config_name or cfg.name,
        input_size=cfg.input_size,
        window_samples=cfg.window_samples,
        modules=modules,
        total_params=total_training - com_params,
        total_params_training=total_training,
        total_flops=int(counter.get_total_flops()),
        paper_row=paper_row(cfg),
        variant=cfg.variant,
    )


def format_table(info: ModelInfo) -> str:
    lines = [
        f"model-info: {info.config} at {info.input_size}x{info.input_size}, audio window {info.window_samples} samples, batch 1",
        f"{'module':<22}{'params (M)':>12}{'GMACs':>10}{'GFLOPs':>10}",
    ]
    for m in info.modules:
        lines.append(f"{m.name:<22}{m.params / 1e6:>12.3f}{m.flops / 2e9:>10.3f}{m.flops / 1e9:>10.3f}")
    lines.append(f"{'total (inference)':<22}{info.total_params / 1e6:>12.3f}{info.total_flops / 2e9:>10.3f}{info.total_flops / 1e9:>10.3f}")
    lines.append(f"{'total (training)':<22}{info.total_params_training / 1e6:>12.3f}")
    lines.append("GFLOPs = 2 x GMACs (FlopCounterMode); the paper's GFLOPs are MACs-based (fvcore): compare GMACs.")
    if info.variant in PAPER_VARIANT_PARAMS:
        lines.append(PAPER_VARIANT_PARAMS[info.variant])
        return "\n".join(lines)
    lines.append("paper Table 8 (MiT-B5 + HTSAT, 224x224):")
    for row, (params, gflops) in PAPER_TABLE8.items():
        mark = "  <- this config's row" if row == info.paper_row else ""
        lines.append(f"  {row:<20}{params:>10.2f} M{gflops:>10.2f} G{mark}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="model config YAML (configs/model/*.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, ModelConfig)
    info = measure(cfg, str(args.config))
    print(json.dumps(info.to_json(), indent=2) if args.json else format_table(info))
    return 0
