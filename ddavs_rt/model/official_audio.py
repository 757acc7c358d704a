"""Load the public HTS-AT and VGGish checkpoints into our encoders.

- HTS-AT: a PyTorch Lightning file; weights in `state_dict` under the prefix `sed_model.`.
  The STFT bases (`spectrogram_extractor.stft.conv_real/conv_imag`), the mel matrix
  (`logmel_extractor.melW`), Swin's constant buffers (`relative_position_index`, `attn_mask`)
  and the AudioSet tagging head (`tscam_conv`, `head`) are checked for shape and skipped: our
  front-end and attention compute them, and our encoder stops at the tokens.
- VGGish: the PyTorch port's state dict, `features.*` and `embeddings.*` (PCA `pproc.*`
  tensors, if present, are skipped: the AVS work uses embeddings without PCA).

Files are read with `torch.load(..., map_location="cpu", weights_only=True)` only. Every
problem is a one-line CheckpointError naming the file and the key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.htsat import HTSATEncoder
from ddavs_rt.model.vggish import VGGishEncoder

log = logging.getLogger(__name__)

HTSAT_PREFIX = "sed_model."


@dataclass
class LoadReport:
    """What a loader did: tensors copied into the encoder, and checkpoint keys skipped on purpose."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _read_state(path: str | Path) -> Mapping[str, object]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({reason})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    return obj


def _shape(value: object) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _check_shape(path: Path, key: str, value: object, expected: tuple[int, ...]) -> None:
    got = _shape(value)
    if got is None:
        raise CheckpointError(f"{path}: key '{key}' is not a tensor ({type(value).__name__})")
    if got != expected:
        raise CheckpointError(
            f"{path}: key '{key}' has shape {list(got)} in the checkpoint but {list(expected)} in the model; "
            "the checkpoint was trained with another configuration: match the audio config to it"
        )


def _load_into(encoder: torch.nn.Module, path: Path, state: Mapping[str, object],
               skip_shapes: Mapping[str, tuple[int, ...]], skip_prefixes: tuple[str, ...]) -> LoadReport:
    """Copy `state` into `encoder` by name after checking shapes; known extras are checked and skipped."""
    ours = encoder.state_dict()
    report = LoadReport()
    new_state: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in ours:
            _check_shape(path, key, value, tuple(ours[key].shape))
            new_state[key] = value  # type: ignore[assignment]
        elif key in skip_shapes:
            _check_shape(path, key, value, skip_shapes[key])
            report.skipped.append(key)
        elif key.startswith(skip_prefixes):
            report.skipped.append(key)
        else:
            unknown.append(key)
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise CheckpointError(
            f"{path}: unexpected key '{unknown[0]}'{more}; this is not a checkpoint of a "
            f"{type(encoder).__name__} with this configuration"
        )
    missing = [key for key in ours if key not in new_state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{path}: key '{missing[0]}'{more} missing from the checkpoint; the file is incomplete or of another model")
    encoder.load_state_dict(new_state, strict=True)
    report.loaded = sorted(new_state)
    log.info("loaded %d tensors from %s (%d skipped)", len(report.loaded), path, len(report.skipped))
    return report


def htsat_skipped_shapes(encoder: HTSATEncoder) -> dict[str, tuple[int, ...]]:
    """Official keys (prefix removed) that we do not load, with the shapes our config implies."""
    cfg = encoder.cfg
    bins = cfg.frontend.n_fft // 2 + 1
    shapes: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (bins, 1, cfg.frontend.n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (bins, 1, cfg.frontend.n_fft),
        "logmel_extractor.melW": tuple(encoder.frontend.mel_fb.shape),
        "tscam_conv.weight": (cfg.num_audioset_classes, encoder.out_dim, encoder.grid // cfg.freq_ratio, 3),
        "tscam_conv.bias": (cfg.num_audioset_classes,),
        "head.weight": (cfg.num_audioset_classes, cfg.num_audioset_classes),
        "head.bias": (cfg.num_audioset_classes,),
    }
    for i, stage in enumerate(encoder.layers):
        for j, block in enumerate(stage.blocks):
            name = f"layers.{i}.blocks.{j}"
            shapes[f"{name}.attn.relative_position_index"] = tuple(block.attn.relative_position_index.shape)
            if block.attn_mask is not None:
                shapes[f"{name}.attn_mask"] = tuple(block.attn_mask.shape)
    return shapes


def load_htsat_checkpoint(encoder: HTSATEncoder, path: str | Path) -> LoadReport:
    """Load an official HTS-AT Lightning checkpoint (`state_dict`, prefix `sed_model.`) into `encoder`."""
    path = Path(path)
    if not isinstance(encoder, HTSATEncoder):
        raise CheckpointError(f"{path}: an HTS-AT checkpoint needs the htsat audio encoder, not {type(encoder).__name__}")
    state = _read_state(path)
    prefixed = {k[len(HTSAT_PREFIX):]: v for k, v in state.items() if k.startswith(HTSAT_PREFIX)}
    if not prefixed:
        raise CheckpointError(f"{path}: no '{HTSAT_PREFIX}*' keys in its state_dict; this is not an HTS-AT Lightning checkpoint")
    report = _load_into(encoder, path, prefixed, htsat_skipped_shapes(encoder), skip_prefixes=())
    report.skipped += [k for k in state if not k.startswith(HTSAT_PREFIX)]
    return report


def load_vggish_checkpoint(encoder: VGGishEncoder, path: str | Path) -> LoadReport:
    """Load the PyTorch VGGish port's state dict (`features.*`, `embeddings.*`) into `encoder`."""
    path = Path(path)
    if not isinstance(encoder, VGGishEncoder):
        raise CheckpointError(f"{path}: a VGGish checkpoint needs the vggish audio encoder, not {type(encoder).__name__}")
    state = _read_state(path)
    return _load_into(encoder, path, state, skip_shapes={}, skip_prefixes=("pproc.",))
