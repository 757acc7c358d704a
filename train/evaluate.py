"""`ddavs-rt eval`: each dataset's official metric of a checkpoint, overall and per subset tag.

    ddavs-rt eval --checkpoint CKPT --data DIR [--layout synthavs] [--split test] [--tags ...]
                  [--batch-size 4] [--shuffle-audio] [--json OUT] [--seed S]

The protocol follows the layout, and the table and JSON name it:
- s4, ms3, synthavs: binary J / F / J&F, the TPAVI protocol (`avsbench-tpavi`): J and F are
  averaged over batches of frames, the metric batch is batch size x frames per clip.
- avss: per-frame mIoU / F over the dataset's 71 classes (`avss-per-frame`, AVSBench
  `avss/test.py` with `compute_color_metrics.py`): every one of a clip's 10 slots is scored, the
  padding slots of 5-frame v1 clips against an all-background label. The model sees a padding
  slot as a black frame with silence (the official model sees a zero tensor after normalisation,
  a mean-grey frame, and zeroed audio features).
- vpo: dataset-level mIoU / F (`dataset-level`, CAVP `utils/eval_utils.py`), label 255 ignored.
Clips are read in order, `--batch-size` clips per forward pass. `--shuffle-audio` feeds every clip
the audio of another clip (a fixed derangement drawn from --seed): a model that uses the sound
should lose accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ddavs_rt.atomic import atomic_write_text
from ddavs_rt.errors import ConfigError, DataError
from ddavs_rt.metrics import (
    BINARY_PROTOCOL, SEMANTIC_DATASET_LEVEL, SEMANTIC_PER_FRAME, BinaryMetricAccumulator, BinaryMetrics,
    SemanticMetricAccumulator, SemanticMetrics,
)

from .datasets import ClipDataset, ClipSample, collate_clips, open_dataset

logger = logging.getLogger(__name__)

# the official metric of each layout, and the words the table prints for it
PROTOCOLS: dict[str, str] = {
    "s4": BINARY_PROTOCOL, "ms3": BINARY_PROTOCOL, "synthavs": BINARY_PROTOCOL,
    "avss": SEMANTIC_PER_FRAME, "vpo": SEMANTIC_DATASET_LEVEL,
}
PROTOCOL_TITLES: dict[str, str] = {
    BINARY_PROTOCOL: "binary J / F (AVSBench TPAVI)",
    SEMANTIC_PER_FRAME: "per-frame mIoU / F over classes (AVSBench-semantic test.py)",
    SEMANTIC_DATASET_LEVEL: "dataset-level mIoU / F (CAVP, VPO)",
}
VPO_IGNORE = 255


def derangement(n: int, seed: int) -> list[int]:
    """A permutation of range(n) with no fixed point (n >= 2), the same for the same seed."""
    if n < 2:
        raise DataError(f"--shuffle-audio needs at least 2 clips, the selection has {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    # a cyclic shift along a random order has no fixed point: clip order[i] gets order[i + 1]'s audio
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner.tolist()


class ClipSelection(Dataset[ClipSample]):
    """Clips of a dataset chosen by index; optionally each with the audio of its partner clip."""

    def __init__(self, dataset: ClipDataset, indices: list[int], audio_from: list[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = indices
        self.audio_from = audio_from

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> ClipSample:
        sample = self.dataset[self.indices[i]]
        if self.audio_from is not None:
            donor = self.dataset[self.indices[self.audio_from[i]]]
            t = min(sample.num_frames, donor.num_frames)
            audio = np.zeros_like(sample.audio)
            audio[:t] = donor.audio[:t]
            audio[~sample.frame_valid] = 0.0
            sample.audio = audio
        return sample


def select_clips(dataset: ClipDataset, tags: list[str] | None) -> list[int]:
    """Indices of the clips carrying any of `tags` (all clips when None)."""
    if not tags:
        return list(range(len(dataset)))
    wanted = set(tags)
    chosen = [i for i, plan in enumerate(dataset.plans) if wanted & set(plan.tags)]
    if not chosen:
        present = sorted({t for plan in dataset.plans for t in plan.tags})
        raise DataError(f"no clip carries the tag(s) {', '.join(tags)}; tags present: {', '.join(present) or 'none'}")
    return chosen


def foreground_scores(model: torch.nn.Module, batch: dict, device: str | torch.device) -> torch.Tensor:
    """Foreground logits [B, T, H, W] (CPU) of a collated batch: the model's one channel, or with
    K > 1 classes the logit of 1 - p(background)."""
    b, t = batch["frames"].shape[:2]
    frames = batch["frames"].flatten(0, 1).to(device)  # [B*T, H, W, 3]
    audio = batch["audio"].flatten(0, 1).to(device)  # [B*T, S]
    logits = model(frames, audio).float()  # [B*T, K, H, W]
    if logits.shape[1] > 1:  # foreground score as a logit of 1 - p(background)
        p_fg = 1.0 - torch.softmax(logits, dim=1)[:, 0]
        scores = torch.logit(p_fg.clamp(1e-6, 1 - 1e-6))
    else:
        scores = logits[:, 0]
    return scores.view(b, t, *scores.shape[1:]).cpu()


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, clips: Dataset, batch_size: int = 4, device: str | torch.device = "cpu") -> BinaryMetrics:
    """Binary J / F / J&F of `model` (logits [N, 1, H, W]; K > 1: 1 - p(background)) on `clips`."""
    was_training = model.training
    model.eval()
    accumulator: BinaryMetricAccumulator | None = None
    for start in range(0, len(clips), batch_size):
        batch = collate_clips([clips[i] for i in range(start, min(start + batch_size, len(clips)))])
        b, t = batch["frames"].shape[:2]
        if accumulator is None:
            accumulator = BinaryMetricAccumulator(batch_size=batch_size * t)
        scores = foreground_scores(model, batch, device)
        for k in range(b):
            valid = batch["mask_valid"][k]
            if bool(valid.any()):
                accumulator.add(scores[k][valid], batch["masks"][k][valid].float(), batch["tags"][k])
    if was_training:
        model.train()
    if accumulator is None:
        raise DataError("no clips to evaluate")
    return accumulator.result()


@torch.no_grad()
def evaluate_semantic(
    model: torch.nn.Module, clips: Dataset, num_classes: int, protocol: str, batch_size: int = 4,
    device: str | torch.device = "cpu", class_names: list[str] | None = None,
) -> SemanticMetrics:
    """Semantic mIoU / F of `model` (logits [N, K, H, W], K = num_classes) under `protocol`.

    Scored frames: the labelled ones and, as the AVSBench-semantic test does, the padding slots of
    short clips (label all background, the model's prediction on the empty slot counts). Label
    255 (VPO's ignore value) is left out of every area."""
    was_training = model.training
    model.eval()
    accumulator = SemanticMetricAccumulator(num_classes, class_names=class_names if class_names and len(class_names) == num_classes else None)
    for start in range(0, len(clips), batch_size):
        batch = collate_clips([clips[i] for i in range(start, min(start + batch_size, len(clips)))])
        if batch["semantic"] is None:
            raise DataError("the dataset has no class maps; a semantic protocol needs them")
        b, t = batch["frames"].shape[:2]
        frames = batch["frames"].flatten(0, 1).to(device)
        audio = batch["audio"].flatten(0, 1).to(device)
        logits = model(frames, audio).float()  # [B*T, K, H, W]
        if logits.shape[1] != num_classes:
            raise ConfigError(
                f"the {protocol} protocol scores {num_classes} classes but the checkpoint predicts {logits.shape[1]}; "
                "evaluate a model trained on this dataset's classes"
            )
        labels = batch["semantic"].flatten(0, 1).long()  # [B*T, H, W]
        labels = torch.where(labels == VPO_IGNORE, torch.full_like(labels, -1), labels)
        scored = (batch["mask_valid"] | ~batch["frame_valid"]).flatten()  # [B*T]
        labels[~batch["frame_valid"].flatten()] = 0  # padding slots are all background
        if bool(scored.any()):
            accumulator.add(logits.cpu()[scored], labels[scored])
    if was_training:
        model.train()
    if accumulator.num_frames == 0:
        raise DataError("no labelled frames to evaluate")
    return accumulator.result(protocol)  # type: ignore[arg-type]


class EngineAsModel:
    """An inference engine (ONNX Runtime, TensorRT, ...) where evaluate_model expects a module:
    the exported or quantized graph is judged exactly as it runs in deployment."""

    training = False

    def __init__(self, engine) -> None:
        self.engine = engine

    def eval(self) -> "EngineAsModel":
        return self

    def train(self, mode: bool = True) -> "EngineAsModel":
        return self

    def __call__(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        logits = self.engine.infer(frames.cpu().numpy(), audio.cpu().numpy())  # [N, K, h, w]
        out = torch.from_numpy(logits)
        if out.shape[-2:] != frames.shape[1:3]:  # engines answer at their input size
            out = torch.nn.functional.interpolate(out, size=tuple(frames.shape[1:3]), mode="bilinear", align_corners=False)
        return out


@dataclass
class EvalReport:
    metrics: BinaryMetrics | SemanticMetrics
    checkpoint: str
    data: str
    layout: str
    split: str
    shuffle_audio: bool
    seed: int
    num_clips: int

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint, "data": self.data, "layout": self.layout, "split": self.split,
            "protocol_title": PROTOCOL_TITLES[self.metrics.protocol],
            "shuffle_audio": self.shuffle_audio, "seed": self.seed, "num_clips": self.num_clips,
            **self.metrics.to_dict(),
        }


def format_table(report: EvalReport) -> str:
    m = report.metrics
    head = (
        f"{report.checkpoint} on {report.data} ({report.layout} {report.split}, {report.num_clips} clips"
        f"{', shuffled audio seed ' + str(report.seed) if report.shuffle_audio else ''})"
    )
    if isinstance(m, SemanticMetrics):
        names = m.class_names or [str(i) for i in range(len(m.per_class_iou))]
        lines = [
            head, f"protocol {m.protocol}: {PROTOCOL_TITLES[m.protocol]}, {len(names)} classes, {m.num_frames} frames",
            f"{'class':<24}{'IoU':>9}{'F':>9}",
            f"{'mean':<24}{m.miou:>9.4f}{m.f:>9.4f}",
        ]
        for name, iou, f, count in zip(names, m.per_class_iou, m.per_class_f, m.class_counts):
            if count:
                lines.append(f"{name[:23]:<24}{iou:>9.4f}{f:>9.4f}")
        return "\n".join(lines)
    lines = [
        head,
        f"protocol {m.protocol}: {PROTOCOL_TITLES[m.protocol]}, metric batch {m.batch_size} frames",
        f"{'subset':<16}{'frames':>8}{'J':>9}{'F':>9}{'J&F':>9}",
        f"{'all':<16}{m.num_frames:>8}{m.j:>9.4f}{m.f:>9.4f}{m.jf:>9.4f}",
    ]
    for tag, sub in m.per_tag.items():
        lines.append(f"{tag:<16}{sub.num_frames:>8}{sub.j:>9.4f}{sub.f:>9.4f}{sub.jf:>9.4f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "--engine", dest="checkpoint", required=True,
                        help="checkpoint folder (torch), or an .onnx / TensorRT engine file with its sidecar")
    parser.add_argument("--backend", default="auto", help="backend for an engine file (default auto)")
    parser.add_argument("--frame-size", type=int, default=224,
                        help="frames and masks are read at this size (default 224, the engine contract)")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--layout", default="synthavs", choices=sorted(PROTOCOLS),
                        help="dataset layout (default synthavs); it decides the metric: binary J/F for s4, ms3, synthavs, "
                             "per-frame mIoU/F for avss, dataset-level mIoU/F for vpo")
    parser.add_argument("--split", default="test", help="split (default test)")
    parser.add_argument("--subset", default="ss", choices=["ss", "ms", "msmi"], help="VPO subset (default ss)")
    parser.add_argument("--audio-root", default=None,
                        help="VPO: the VGGSound root holding audios/<vgg_file>.wav (default: searched beside the VPO folder)")
    parser.add_argument("--tags", nargs="+", default=None, help="only clips carrying any of these tags")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per batch (default 4)")
    parser.add_argument("--shuffle-audio", action="store_true", help="pair every clip with another clip's audio")
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of the audio derangement (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run(args: argparse.Namespace) -> int:
    from ddavs_rt.model.checkpoint import load_checkpoint

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if Path(args.checkpoint).is_dir():
        model, cfg = load_checkpoint(args.checkpoint, map_location=args.device)
        sample_rate, window_samples = cfg.sample_rate, cfg.window_samples
    else:
        from ddavs_rt.engine import open_engine

        engine = open_engine(args.checkpoint, backend=args.backend)
        model, sample_rate, window_samples = EngineAsModel(engine), engine.spec.sample_rate, engine.spec.window_samples
    options: dict = {}
    if args.layout == "vpo":  # CAVP's crop rule, cut to the model's window
        options = {"subset": args.subset, "audio_root": args.audio_root, "audio_seconds": window_samples / sample_rate}
    dataset = open_dataset(args.data, args.layout, args.split, size=args.frame_size, sample_rate=sample_rate, **options)
    indices = select_clips(dataset, args.tags)
    partner = derangement(len(indices), args.seed) if args.shuffle_audio else None
    clips = ClipSelection(dataset, indices, partner)
    protocol = PROTOCOLS[args.layout]
    metrics: BinaryMetrics | SemanticMetrics
    if protocol == BINARY_PROTOCOL:
        metrics = evaluate_model(model, clips, args.batch_size, args.device)
    else:
        names = dataset.class_names
        num_classes = dataset.info.palette_classes if args.layout == "avss" else len(names)
        metrics = evaluate_semantic(model, clips, num_classes, protocol, args.batch_size, args.device, names)
    report = EvalReport(
        metrics, str(args.checkpoint), str(args.data), args.layout, args.split, bool(args.shuffle_audio), args.seed, len(indices),
    )
    print(format_table(report))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
