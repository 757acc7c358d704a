"""The prototype memory bank file (paper appendix B): format, save, load, attach.

A bank is a safetensors file with
    prototypes   float32 [P, d]   the kept audio features, class by class
    class_index  int64   [P]      the class of each prototype (index into class_names)
and string metadata: format "ddavs-bank/1", class_names (JSON list), encoder_kind,
encoder_sha256 (`module_sha256` of the audio encoder that embedded the clips), dim, k (modes per
class), m (features kept per mode). A bank only makes sense with the encoder that built it, so
`attach_bank` refuses a bank whose width, encoder kind, encoder checksum or size P differs from
the model's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ddavs_rt.atomic import atomic_path
from ddavs_rt.errors import BankError

BANK_FORMAT = "ddavs-bank/1"


@dataclass(frozen=True)
class PrototypeBank:
    prototypes: Tensor  # float32 [P, d]
    class_index: Tensor  # int64 [P]
    class_names: list[str]
    encoder_kind: str
    encoder_sha256: str
    k: int
    m: int

    @property
    def dim(self) -> int:
        return int(self.prototypes.shape[1])

    @property
    def size(self) -> int:
        return int(self.prototypes.shape[0])


def module_sha256(module: nn.Module) -> str:
    """sha256 over a module's state_dict: per key in sorted order, its name, dtype, shape, bytes.

    BatchNorm's `num_batches_tracked` counters are left out: they do not change what the
    encoder computes. Running statistics are in: an encoder whose BatchNorm kept training
    after the bank was built no longer produces the bank's features.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        if key.endswith("num_batches_tracked"):
            continue
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(key.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_bank(
    path: str | Path, prototypes: Tensor, class_index: Tensor, class_names: list[str],
    encoder_kind: str, encoder_sha256: str, k: int, m: int,
) -> None:
    """Write a bank file atomically (a reader never sees half a file)."""
    prototypes = prototypes.detach().to(torch.float32).cpu().contiguous()
    class_index = class_index.detach().to(torch.int64).cpu().contiguous()
    if prototypes.dim() != 2 or class_index.shape != (prototypes.shape[0],):
        raise BankError(
            f"bank tensors disagree: prototypes {tuple(prototypes.shape)} must be [P, d] and "
            f"class_index {tuple(class_index.shape)} must be [P]"
        )
    if class_index.numel() and (int(class_index.min()) < 0 or int(class_index.max()) >= len(class_names)):
        raise BankError(f"class_index refers to classes outside the {len(class_names)} class_names")
    metadata = {
        "format": BANK_FORMAT,
        "class_names": json.dumps(list(class_names)),
        "encoder_kind": encoder_kind,
        "encoder_sha256": encoder_sha256,
        "dim": str(prototypes.shape[1]),
        "k": str(k),
        "m": str(m),
    }
    with atomic_path(path) as tmp:
        save_file({"prototypes": prototypes, "class_index": class_index}, str(tmp), metadata=metadata)


def load_bank(path: str | Path) -> PrototypeBank:
    """Read and check a bank file; BankError (one line) when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise BankError(f"{path}: bank file not found; build one with `ddavs-rt build-bank`")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise BankError(f"{path}: not a readable safetensors bank ({error}); rebuild it with `ddavs-rt build-bank`") from None
    if metadata.get("format") != BANK_FORMAT:
        raise BankError(f"{path}: format {metadata.get('format')!r} is not {BANK_FORMAT!r}; rebuild the bank")
    missing = [name for name in ("prototypes", "class_index") if name not in tensors]
    if missing:
        raise BankError(f"{path}: missing tensor(s) {missing}; rebuild the bank")
    try:
        class_names = json.loads(metadata["class_names"])
        bank = PrototypeBank(
            prototypes=tensors["prototypes"].to(torch.float32),
            class_index=tensors["class_index"].to(torch.int64),
            class_names=list(class_names),
            encoder_kind=metadata["encoder_kind"],
            encoder_sha256=metadata["encoder_sha256"],
            k=int(metadata["k"]),
            m=int(metadata["m"]),
        )
        dim = int(metadata["dim"])
    except (KeyError, ValueError, TypeError) as error:
        raise BankError(f"{path}: bad or missing metadata ({error}); rebuild the bank") from None
    if bank.prototypes.dim() != 2 or bank.class_index.shape != (bank.size,) or bank.dim != dim:
        raise BankError(
            f"{path}: prototypes {tuple(bank.prototypes.shape)}, class_index {tuple(bank.class_index.shape)} "
            f"and dim {dim} disagree; rebuild the bank"
        )
    return bank


def attach_bank(model: nn.Module, bank: PrototypeBank) -> None:
    """Copy the bank into a DDAVS model's AQM buffer after checking it belongs to this model."""
    cfg = model.cfg  # type: ignore[attr-defined]
    buffer = model.bank_buffer  # type: ignore[attr-defined]
    if buffer is None:
        raise BankError(
            f"model '{cfg.name}' has no bank refinement (aqm.enabled or aqm.bank_refinement is false); "
            "do not pass a bank, or enable aqm.bank_refinement"
        )
    encoder = model.audio_encoder  # type: ignore[attr-defined]
    if bank.dim != encoder.out_dim:
        raise BankError(
            f"bank width {bank.dim} differs from the audio encoder width {encoder.out_dim}; "
            "rebuild the bank with this model's audio encoder"
        )
    if bank.encoder_kind != cfg.audio.kind:
        raise BankError(
            f"bank was built by a '{bank.encoder_kind}' audio encoder, this model uses '{cfg.audio.kind}'; "
            "rebuild the bank with this model's audio encoder"
        )
    if bank.size != cfg.bank.num_prototypes:
        raise BankError(
            f"bank has {bank.size} prototypes, the config says bank.num_prototypes={cfg.bank.num_prototypes}; "
            "set bank.num_prototypes to the bank's size or rebuild the bank"
        )
    actual = module_sha256(encoder)
    if bank.encoder_sha256 != actual:
        raise BankError(
            f"bank was built by audio encoder weights {bank.encoder_sha256[:12]}, this model's are {actual[:12]}; "
            "rebuild the bank with this checkpoint's audio encoder"
        )
    with torch.no_grad():
        buffer.copy_(bank.prototypes.to(buffer.device, buffer.dtype))
