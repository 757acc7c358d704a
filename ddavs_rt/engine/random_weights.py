"""A random-weights checkpoint from a model config: for benchmarks and tests without training."""

from __future__ import annotations

from pathlib import Path

from ddavs_rt.config import ModelConfig, load_config


def write_random_checkpoint(config: str | Path | ModelConfig, folder: str | Path, seed: int = 0) -> Path:
    """Build the model of `config` with seeded random weights and save it as a checkpoint folder."""
    import torch

    from ddavs_rt.model.checkpoint import save_checkpoint
    from ddavs_rt.model.ddavs import build_model

    cfg = config if isinstance(config, ModelConfig) else load_config(config, ModelConfig)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    return save_checkpoint(folder, model, cfg)
