"""The training log: one CSV row per epoch and a PNG of the curves, both rewritten atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ddavs_rt.atomic import atomic_path, atomic_write_text

COLUMNS = ["epoch", "step", "lr", "total", "ce", "dice", "iou", "focal", "con", "val_j", "val_f", "val_jf", "val_acc", "time_s"]


def write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def write_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("total", "ce", "dice", "iou", "focal", "con"):
        values = [row.get(key) for row in rows]
        if any(isinstance(v, float) and v != 0.0 for v in values):
            left.plot(epochs, values, marker="o", label=key)
    left.set_xlabel("epoch")
    left.set_title("training loss")
    left.legend(fontsize=8)
    for key in ("val_j", "val_f", "val_jf", "val_acc"):
        values = [row.get(key) for row in rows]
        if all(isinstance(v, float) for v in values):
            right.plot(epochs, values, marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_title("validation")
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
