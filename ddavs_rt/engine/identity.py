"""One identity for a model: `model_id` hashes the weights, the prototype bank and the model config.

    ident = checkpoint_identity("models/ddavs-tiny-synth")
    ident.model_id            # 'ddavs-tiny@1f0c9a2b7d44'

`model_id = f"{name}@{sha256(weights_sha256 : bank_sha256 or '-' : config_sha256)[:12]}"`, where

- `weights_sha256` is the sha256 of `model.safetensors`,
- `bank_sha256` the sha256 of `bank.safetensors` (None for a checkpoint without a bank),
- `config_sha256` the sha256 of `config.json`'s *content* as stored in the checkpoint folder, in
  canonical JSON (keys sorted, no whitespace, UTF-8). It is the file's own dict, not the pydantic
  model with its defaults filled in: a later ddavs-rt that adds a defaulted config field does not
  change the identity of an old checkpoint.

Every cache (the ONNX export that `--backend auto` keeps in `~/.cache/ddavs-rt`) is keyed on it,
every sidecar carries the three checksums, and opening an engine checks them (`check_onnx_identity`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ddavs_rt.atomic import sha256_file
from ddavs_rt.errors import CheckpointError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BANK_FILE = "bank.safetensors"


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of a config dict in canonical JSON (the same dict always hashes the same)."""
    return hashlib.sha256(canonical_json(config)).hexdigest()


def read_config_dict(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json as stored (a dict), with one-line errors."""
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {CONFIG_FILE}; a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); re-save the checkpoint") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object; re-save the checkpoint")
    return data


def model_id_of(name: str, weights_sha256: str, bank_sha256: str | None, config_sha: str) -> str:
    digest = hashlib.sha256(f"{weights_sha256}:{bank_sha256 or '-'}:{config_sha}".encode()).hexdigest()
    return f"{name}@{digest[:12]}"


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    name: str
    weights_sha256: str
    bank_sha256: str | None
    config_sha256: str

    @property
    def model_id(self) -> str:
        return model_id_of(self.name, self.weights_sha256, self.bank_sha256, self.config_sha256)


def checkpoint_identity(folder: str | Path) -> ModelIdentity:
    """The identity of a checkpoint folder (reads and hashes its three files)."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_FILE}; pass a checkpoint folder written by `ddavs-rt train`")
    config = read_config_dict(folder)
    bank = folder / BANK_FILE
    return ModelIdentity(
        name=str(config.get("name") or folder.name),
        weights_sha256=sha256_file(weights),
        bank_sha256=sha256_file(bank) if bank.is_file() else None,
        config_sha256=config_sha256(config),
    )


def identity_mismatch(sidecar, expected: ModelIdentity | None = None) -> str | None:
    """Why an ONNX sidecar does not describe the model it claims (or `expected`); None when it does.

    Checks, in order: the sidecar has a config checksum (older exports do not), the config it
    carries hashes to that checksum, its model_id is the hash of its three checksums, and, given
    a checkpoint's identity, that the weights, bank and config checksums all match it.
    """
    if sidecar.config_sha256 is None:
        return "it was exported by an older ddavs-rt and carries no config checksum"
    if config_sha256(sidecar.config) != sidecar.config_sha256:
        return "its model config does not match its config checksum"
    claimed = model_id_of(str(sidecar.config.get("name")), sidecar.checkpoint_sha256, sidecar.bank_sha256, sidecar.config_sha256)
    if claimed != sidecar.model_id:
        return f"its model_id {sidecar.model_id} is not the hash of its weights, bank and config ({claimed})"
    if expected is None:
        return None
    if sidecar.checkpoint_sha256 != expected.weights_sha256:
        return f"it was made from weights {sidecar.checkpoint_sha256[:12]}, the checkpoint's are {expected.weights_sha256[:12]}"
    if sidecar.bank_sha256 != expected.bank_sha256:
        was = (sidecar.bank_sha256 or "none")[:12]
        now = (expected.bank_sha256 or "none")[:12]
        return f"it was made with bank {was}, the checkpoint's bank.safetensors is {now}"
    if sidecar.config_sha256 != expected.config_sha256:
        return f"it was made from config {sidecar.config_sha256[:12]}, the checkpoint's config.json is {expected.config_sha256[:12]}"
    return None


def check_onnx_identity(sidecar, path: str | Path, expected: ModelIdentity | None = None, remedy: str | None = None) -> None:
    """Raise a one-line CheckpointError when `identity_mismatch` finds a reason."""
    reason = identity_mismatch(sidecar, expected)
    if reason:
        fix = remedy or f"re-export it: ddavs-rt export --checkpoint CHECKPOINT_DIR --out {path}"
        raise CheckpointError(f"{path}: refused: {reason}; {fix}")


def cache_dir() -> Path:
    """Where ddavs-rt caches derived files: $DDAVS_RT_CACHE, else $XDG_CACHE_HOME/ddavs-rt, else ~/.cache/ddavs-rt."""
    if os.environ.get("DDAVS_RT_CACHE"):
        return Path(os.environ["DDAVS_RT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ddavs-rt"


def cache_stem(identity: ModelIdentity) -> str:
    """File-name stem of a cached derivative: the model_id with '@' made file-name safe."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in identity.name)
    return f"{safe}-{identity.model_id.rsplit('@', 1)[1]}"
