"""Audio class labels of SynthAVS clips, read from each clip's meta.json.

    sounding_class_ids(plan)          class ids (index into classes.json) in the clip's audio
    single_source_indices(dataset)    clips tagged "single" and not "offscreen", with their class
"""

from __future__ import annotations

import json
from pathlib import Path

from ddavs_rt.errors import DataError

from .datasets import ClipDataset, ClipPlan


def _meta_path(plan: ClipPlan) -> Path:
    return plan.audio[0].parent / "meta.json"


def sounding_class_ids(plan: ClipPlan) -> list[int]:
    """The class ids sounding on screen in a SynthAVS clip (meta.json 'sounding_classes')."""
    path = _meta_path(plan)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return [int(entry["id"]) for entry in meta["sounding_classes"]]
    except FileNotFoundError:
        raise DataError(f"missing file {path}: audio classes come from a SynthAVS clip's meta.json") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: no readable 'sounding_classes' ({error}); regenerate the clip") from None


def single_source_indices(dataset: ClipDataset) -> list[tuple[int, int]]:
    """(clip index, class id) of the clips with exactly one sound source and no off-screen sound."""
    chosen = []
    for index, plan in enumerate(dataset.plans):
        if "single" not in plan.tags or "offscreen" in plan.tags:
            continue
        ids = sounding_class_ids(plan)
        if len(ids) == 1:
            chosen.append((index, ids[0]))
    return chosen
