"""Checkpoints: a folder with config.json, model.safetensors and (optionally) bank.safetensors.

    save_checkpoint(folder, model, cfg, bank=None)      each file written atomically
    model, cfg = load_checkpoint(folder)                 model in eval mode, bank attached

The prototype bank is not part of model.safetensors (it is a non-persistent buffer); it travels
as its own bank file so the bank's identity (encoder checksum, classes) is checked on load.
Every problem is a one-line CheckpointError saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ddavs_rt.atomic import atomic_path, atomic_write_text
from ddavs_rt.bank import PrototypeBank, attach_bank, load_bank, save_bank
from ddavs_rt.config import ModelConfig, dump_config, parse_config, with_legacy_defaults
from ddavs_rt.errors import CheckpointError, ConfigError
from ddavs_rt.model.ddavs import DDAVS, build_model

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BANK_FILE = "bank.safetensors"


def _names(keys: list[str], limit: int = 3) -> str:
    head = ", ".join(keys[:limit])
    return head + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def save_checkpoint(folder: str | Path, model: DDAVS, cfg: ModelConfig, bank: PrototypeBank | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "ddavs-model/1", "name": cfg.name})
    if bank is not None:
        save_bank(
            folder / BANK_FILE, bank.prototypes, bank.class_index, bank.class_names,
            bank.encoder_kind, bank.encoder_sha256, bank.k, bank.m,
        )
    atomic_write_text(folder / CONFIG_FILE, json.dumps(dump_config(cfg), indent=2) + "\n")
    logger.info("saved checkpoint %s (%d tensors)", folder, len(state))
    return folder


def _read_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_FILE}; a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); re-save the checkpoint") from None
    data = with_legacy_defaults(data)
    try:
        return parse_config(data, ModelConfig, str(path))
    except ConfigError as error:
        raise CheckpointError(f"invalid model config in checkpoint: {error}") from None


def _read_weights(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {WEIGHTS_FILE}; the checkpoint is incomplete, re-save it")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({reason}); re-save the checkpoint") from None


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming missing/unexpected keys or the first shape mismatch."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
        raise CheckpointError(f"{source}: weights do not match the config: {'; '.join(parts)}; check that config.json belongs to these weights")
    for key in sorted(expected):
        if tuple(expected[key].shape) != tuple(given[key].shape):
            raise CheckpointError(
                f"{source}: shape mismatch for '{key}': checkpoint {tuple(given[key].shape)}, "
                f"model {tuple(expected[key].shape)}; check that config.json belongs to these weights"
            )


def load_checkpoint(folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[DDAVS, ModelConfig]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found; check the path")
    cfg = _read_config(folder)
    state = _read_weights(folder / WEIGHTS_FILE, map_location)
    model = build_model(cfg)
    check_state_dict(model.state_dict(), state, str(folder / WEIGHTS_FILE))
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    bank_path = folder / BANK_FILE
    if bank_path.is_file():
        attach_bank(model, load_bank(bank_path))
    elif model.bank_buffer is not None:
        logger.warning("%s has no %s: the AQM refines against an empty bank", folder, BANK_FILE)
    model.eval()
    return model, cfg
