"""Validation split across the ranks of a process group, its sums all-reduced.

Every rank scores a disjoint, contiguous block of the validation clips (`shard_range`: the
first `n % world` ranks one clip more; no clip padded in, none counted twice) and adds what the
metric adds up; one `all_reduce` (SUM, a float64 tensor on the rank's device: gloo and NCCL)
gives every rank the same totals and so the same figures, those of one process scoring every
clip in order.

- Binary J / F / J&F (TPAVI, `ddavs_rt.metrics`): not additive over frames (batch F is a
  maximum over thresholds, dataset figures are means of batch figures), so the sums are kept per
  metric batch (`TpaviBatchSums`). Which batch a frame falls in depends on how many labelled
  frames every clip before it has, so the per-clip counts (and the frames per clip) are reduced
  first (MAX: each count has one owner, the others hold 0), then the per-batch sums (SUM).
- Accuracy (stage audio): correct and total frames, reduced, then divided.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from ddavs_rt.errors import DataError
from ddavs_rt.metrics import BinaryMetrics, TpaviBatchSums, frame_figures

from .datasets import collate_clips
from .evaluate import foreground_scores


def shard_range(n: int, rank: int, world: int) -> range:
    """This rank's contiguous block of `n` items; the blocks of ranks 0..world-1 tile range(n)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside a world of {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _grouped() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_array(values: np.ndarray, device: str | torch.device, op: str = "sum") -> np.ndarray:
    """The element-wise SUM (or MAX) of `values` over every rank (float64 on `device`, so NCCL
    takes it); `values` itself without a process group."""
    if not _grouped():
        return values.astype(np.float64)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


@torch.no_grad()
def evaluate_model_sharded(
    model: torch.nn.Module, clips: Dataset, batch_size: int, device: str | torch.device, rank: int, world: int,
) -> BinaryMetrics:
    """`evaluate_model`'s dataset J / F / J&F (metric batch `batch_size` x frames per clip), this
    rank scoring only `shard_range(len(clips), rank, world)`. Every rank of the group must call it."""
    n = len(clips)  # type: ignore[arg-type]
    if n == 0:
        raise DataError("no clips to evaluate")
    mine = shard_range(n, rank, world)
    was_training = model.training
    model.eval()
    layout = np.zeros(n + 1, dtype=np.float64)  # labelled frames of each clip, then frames per clip
    per_clip: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # clip -> its labelled frames' figures
    for start in range(mine.start, mine.stop, batch_size):
        members = list(range(start, min(start + batch_size, mine.stop)))
        batch = collate_clips([clips[i] for i in members])
        layout[n] = batch["frames"].shape[1]
        scores = foreground_scores(model, batch, device)
        for k, clip in enumerate(members):
            valid = batch["mask_valid"][k]
            layout[clip] = int(valid.sum())
            if bool(valid.any()):
                per_clip[clip] = frame_figures(scores[k][valid], batch["masks"][k][valid].float())
    if was_training:
        model.train()
    # each clip's count comes from its one owner (the others hold 0); frames per clip is the same
    # wherever it is known (ranks with no clips hold 0): MAX gives both
    layout = all_reduce_array(layout, device, op="max")
    counts, frames_per_clip = layout[:n].astype(np.int64), int(layout[n])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    metric_batch = batch_size * frames_per_clip
    sums = TpaviBatchSums(metric_batch, int(offsets[-1]))
    for clip, figures in per_clip.items():
        sums.add_figures(int(offsets[clip]), *figures)
    return TpaviBatchSums.metrics_from_sums(all_reduce_array(sums.sums, device), metric_batch)


def accuracy_across_ranks(correct: int, total: int, device: str | torch.device) -> float:
    """Correct / total over every rank's frames (each rank counted its own shard)."""
    correct_all, total_all = all_reduce_array(np.array([correct, total], dtype=np.float64), device)
    return float(correct_all) / max(1.0, float(total_all))
