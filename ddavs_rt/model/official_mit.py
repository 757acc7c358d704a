"""Load official ImageNet Mix Transformer weights into our visual encoder.

Two naming schemes are understood:
- mmseg / the SegFormer release (`mit_bX.pth`, a raw state dict, possibly under "state_dict" with
  a "backbone." prefix): patch_embed{i}.proj/norm, block{i}.{j}.norm1/attn.q/attn.kv/attn.sr/
  attn.norm/attn.proj/norm2/mlp.fc1/mlp.dwconv.dwconv/mlp.fc2, norm{i}; `head.*` is ignored.
- Hugging Face Segformer (optionally prefixed "segformer."): encoder.patch_embeddings.{i}.proj/
  layer_norm, encoder.block.{i}.{j}.layer_norm_1/2, attention.self.query/key/value/sr/layer_norm,
  attention.output.dense, mlp.dense1/dwconv(.dwconv)/dense2, encoder.layer_norm.{i}; key and value
  are stacked into our `attn.kv` (key rows first, as mmseg stores them). Decode heads are ignored.

Stage numbers are 1-based in mmseg names and 0-based in Hugging Face names. Every source key must
map, every target key must be filled, and every shape must match; otherwise a one-line
CheckpointError names the key.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor

from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.mit import MixTransformer

logger = logging.getLogger(__name__)

_MMSEG_PATCH = re.compile(r"^patch_embed([1-4])\.(proj|norm)\.(weight|bias)$")
_MMSEG_BLOCK = re.compile(r"^block([1-4])\.(\d+)\.(.+)$")
_MMSEG_NORM = re.compile(r"^norm([1-4])\.(weight|bias)$")

_HF_PATCH = re.compile(r"^encoder\.patch_embeddings\.([0-3])\.(proj|layer_norm)\.(weight|bias)$")
_HF_BLOCK = re.compile(r"^encoder\.block\.([0-3])\.(\d+)\.(.+)$")
_HF_NORM = re.compile(r"^encoder\.layer_norm\.([0-3])\.(weight|bias)$")
_HF_BLOCK_PARTS = {
    "layer_norm_1": "norm1",
    "layer_norm_2": "norm2",
    "attention.self.query": "attn.q",
    "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "mlp.dense1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv",
    "mlp.dwconv": "mlp.dwconv",
    "mlp.dense2": "mlp.fc2",
}


def _strip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop wrapper prefixes ("module." of DataParallel, mmseg's "backbone.", HF's "segformer.")."""
    for prefix in ("module.", "backbone.", "segformer."):
        state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def is_huggingface(state: dict[str, Tensor]) -> bool:
    return any(key.startswith("encoder.") for key in state)


def map_mmseg(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """mmseg names -> ours. Returns (mapped tensors, our key -> source key, unmapped source keys)."""
    mapped: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        if key.startswith(("head.", "decode_head.", "auxiliary_head.", "neck.")):
            continue
        if m := _MMSEG_PATCH.match(key):
            ours = f"stages.{int(m[1]) - 1}.patch_embed.{m[2]}.{m[3]}"
        elif m := _MMSEG_NORM.match(key):
            ours = f"stages.{int(m[1]) - 1}.norm.{m[2]}"
        elif m := _MMSEG_BLOCK.match(key):
            rest = m[3].replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
            ours = f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{rest}"
        else:
            unmapped.append(key)
            continue
        mapped[ours] = value
        source[ours] = key
    return mapped, source, unmapped


def map_huggingface(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """Hugging Face names -> ours (key/value stacked into kv)."""
    mapped: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    unmapped: list[str] = []
    pending_kv: dict[str, dict[str, tuple[str, Tensor]]] = {}
    for key, value in state.items():
        if key.startswith(("decode_head.", "classifier.")):
            continue
        if m := _HF_PATCH.match(key):
            part = "norm" if m[2] == "layer_norm" else "proj"
            ours = f"stages.{m[1]}.patch_embed.{part}.{m[3]}"
        elif m := _HF_NORM.match(key):
            ours = f"stages.{m[1]}.norm.{m[2]}"
        elif m := _HF_BLOCK.match(key):
            prefix = f"stages.{m[1]}.blocks.{m[2]}"
            name, _, param = m[3].rpartition(".")
            if name in ("attention.self.key", "attention.self.value"):
                slot = pending_kv.setdefault(f"{prefix}.attn.kv.{param}", {})
                slot["key" if name.endswith("key") else "value"] = (key, value)
                continue
            if name not in _HF_BLOCK_PARTS:
                unmapped.append(key)
                continue
            ours = f"{prefix}.{_HF_BLOCK_PARTS[name]}.{param}"
        else:
            unmapped.append(key)
            continue
        mapped[ours] = value
        source[ours] = key
    for ours, parts in pending_kv.items():
        if set(parts) != {"key", "value"}:
            present = next(iter(parts.values()))[0]
            raise CheckpointError(f"'{present}' has no matching {'value' if 'key' in parts else 'key'} tensor; the checkpoint is incomplete")
        (key_name, key_tensor), (_, value_tensor) = parts["key"], parts["value"]
        if key_tensor.shape != value_tensor.shape:
            raise CheckpointError(
                f"'{key_name}' {tuple(key_tensor.shape)} and its value {tuple(value_tensor.shape)} differ in shape"
            )
        mapped[ours] = torch.cat([key_tensor, value_tensor], dim=0)  # key rows first
        source[ours] = key_name.replace(".key.", ".key+value.")
    return mapped, source, unmapped


def load_mit_state_dict(encoder: MixTransformer, state: dict[str, Tensor], origin: str = "state dict") -> int:
    """Copy official weights (mmseg or Hugging Face names) into `encoder`; returns tensors loaded."""
    state = _strip(dict(state))
    mapped, source, unmapped = (map_huggingface if is_huggingface(state) else map_mmseg)(state)
    if unmapped:
        raise CheckpointError(
            f"{origin}: {len(unmapped)} key(s) are not Mix Transformer weights, e.g. '{unmapped[0]}'; "
            "pass an official mit_bX.pth or a Hugging Face Segformer state dict"
        )
    target = encoder.state_dict()
    unknown = sorted(set(mapped) - set(target))
    if unknown:
        raise CheckpointError(
            f"{origin}: '{source[unknown[0]]}' has no place in this encoder ({len(unknown)} such key(s)); "
            "the checkpoint is a deeper MiT variant than visual.variant"
        )
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise CheckpointError(
            f"{origin}: no weights for '{missing[0]}' ({len(missing)} missing); "
            "the checkpoint is a shallower MiT variant than visual.variant, or incomplete"
        )
    for key in sorted(target):
        if tuple(mapped[key].shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"{origin}: shape mismatch for '{source[key]}': checkpoint {tuple(mapped[key].shape)}, "
                f"encoder '{key}' {tuple(target[key].shape)}; choose the matching visual.variant"
            )
    with torch.no_grad():
        for key, value in target.items():
            value.copy_(mapped[key].to(value.dtype))
    logger.info("loaded %d Mix Transformer tensors from %s", len(target), origin)
    return len(target)


def read_official_state(path: str | Path) -> dict[str, Tensor]:
    """torch.load(weights_only=True) a .pth file; unwraps {"state_dict": ...} / {"model": ...}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: MiT checkpoint not found; check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad pickle
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: cannot read as a weights-only PyTorch file ({reason})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return data


def load_official_mit(encoder: MixTransformer, path: str | Path) -> int:
    """Load an official `mit_bX.pth` (or a saved Hugging Face state dict) into `encoder`."""
    return load_mit_state_dict(encoder, read_official_state(path), str(path))
