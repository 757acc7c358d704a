"""`ddavs-rt build-bank`: the prototype memory bank (paper appendix B) from single-source clips.

    ddavs-rt build-bank --checkpoint CKPT --data DIR --k K --m M --out bank.safetensors
                        [--layout synthavs] [--split train] [--clips N] [--seed S]

The checkpoint's audio encoder embeds every 1-s window of the clips tagged "single" without
off-screen sound (AudioEncoder.pool); per class, K-means++ finds k modes and the m distinct
features nearest each centroid are kept, so P = C x k x m real embeddings, stored class by class
with the encoder's kind and checksum. P must equal the model's bank.num_prototypes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ddavs_rt.bank import PrototypeBank, module_sha256, save_bank
from ddavs_rt.errors import ConfigError, DataError

from .datasets import ClipDataset, open_dataset
from .kmeans import kmeans
from .labels import single_source_indices

logger = logging.getLogger(__name__)


@torch.no_grad()
def embed_single_source(encoder: torch.nn.Module, dataset: ClipDataset, max_clips: int | None = None, batch_clips: int = 8) -> dict[int, torch.Tensor]:
    """class id -> embeddings [n, d] of every valid 1-s window of its single-source clips."""
    from tqdm import tqdm

    pairs = single_source_indices(dataset)[: max_clips or None]
    if not pairs:
        raise DataError("no single-source clip (tag single, no offscreen) in the data; generate some with `ddavs-rt synth --subsets single`")
    encoder.eval()
    features: dict[int, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(pairs), batch_clips), desc="embedding", unit="batch"):
        chunk = pairs[start:start + batch_clips]
        samples = [dataset[index] for index, _ in chunk]
        for sample, (_, class_id) in zip(samples, chunk):
            audio = torch.from_numpy(sample.audio[sample.frame_valid])  # [T, S]
            pooled = encoder.pool(encoder(audio))  # [T, d]
            features.setdefault(class_id, []).append(pooled.float())
    return {c: torch.cat(parts) for c, parts in sorted(features.items())}


def select_prototypes(features: torch.Tensor, k: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """[n, d] -> [k*m, d]: for each of k K-means++ modes, the m nearest distinct features."""
    unique = torch.unique(features, dim=0)
    if unique.shape[0] < k * m:
        raise DataError(f"a class has {unique.shape[0]} distinct windows, fewer than k*m = {k * m}; use more clips or smaller --k/--m")
    centroids, _ = kmeans(unique, k, generator)
    distances = torch.cdist(centroids.double(), unique.double())  # [k, n]
    taken = torch.zeros(unique.shape[0], dtype=torch.bool)
    chosen = []
    for c in range(k):
        order = distances[c].argsort()
        picks = [int(i) for i in order if not taken[i]][:m]
        taken[picks] = True
        chosen.append(unique[picks])
    return torch.cat(chosen)


def build_bank(model: torch.nn.Module, cfg, dataset: ClipDataset, k: int, m: int, max_clips: int | None = None, seed: int = 0) -> PrototypeBank:
    """Embed, cluster per class and return the bank (classes present, in class-id order)."""
    if k < 1 or m < 1:
        raise ConfigError(f"--k and --m must be at least 1, got k={k}, m={m}")
    encoder = model.audio_encoder
    per_class = embed_single_source(encoder, dataset, max_clips)
    names = dataset.class_names
    missing = [names[c] for c in range(1, len(names)) if c not in per_class]
    if missing:
        logger.warning("no single-source clip for %d class(es): %s", len(missing), ", ".join(missing))
    generator = torch.Generator().manual_seed(seed)
    prototypes, class_index, class_names = [], [], []
    for position, (class_id, features) in enumerate(per_class.items()):
        prototypes.append(select_prototypes(features, k, m, generator))
        class_index.append(torch.full((k * m,), position, dtype=torch.int64))
        class_names.append(names[class_id] if class_id < len(names) else str(class_id))
    return PrototypeBank(
        prototypes=torch.cat(prototypes), class_index=torch.cat(class_index), class_names=class_names,
        encoder_kind=cfg.audio.kind, encoder_sha256=module_sha256(encoder), k=k, m=m,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder whose audio encoder embeds the clips")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--k", type=int, required=True, help="modes (K-means clusters) per class")
    parser.add_argument("--m", type=int, required=True, help="features kept per mode")
    parser.add_argument("--out", required=True, help="bank file to write (.safetensors)")
    parser.add_argument("--layout", default="synthavs", help="dataset layout (default synthavs)")
    parser.add_argument("--split", default="train", help="split to embed (default train)")
    parser.add_argument("--clips", type=int, default=None, help="use at most this many single-source clips")
    parser.add_argument("--seed", type=int, default=0, help="K-means++ seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from ddavs_rt.model.checkpoint import load_checkpoint

    model, cfg = load_checkpoint(args.checkpoint)
    dataset = open_dataset(args.data, args.layout, args.split, size=64, sample_rate=cfg.sample_rate)
    bank = build_bank(model, cfg, dataset, args.k, args.m, args.clips, args.seed)
    if bank.size != cfg.bank.num_prototypes:
        raise ConfigError(
            f"the bank has P = {len(bank.class_names)} classes x k {args.k} x m {args.m} = {bank.size} prototypes, "
            f"the model config says bank.num_prototypes={cfg.bank.num_prototypes}; set bank.num_prototypes: {bank.size} "
            f"in the model config or pick --k/--m so that C*k*m = {cfg.bank.num_prototypes}"
        )
    save_bank(Path(args.out), bank.prototypes, bank.class_index, bank.class_names, bank.encoder_kind, bank.encoder_sha256, bank.k, bank.m)
    print(f"wrote {args.out}: {bank.size} prototypes ({len(bank.class_names)} classes x k {bank.k} x m {bank.m}), "
          f"dim {bank.dim}, encoder {bank.encoder_kind} {bank.encoder_sha256[:12]}")
    return 0
