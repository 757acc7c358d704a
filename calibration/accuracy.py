"""The accuracy check of a derived (int8 / bf16) engine: J&F against the fp32 graph on SynthAVS clips.

    check = engine_accuracy(fp32_engine, int8_engine, "data/synthavs-test", clips=300)
    check["jf_drop"]      # J&F(fp32) - J&F(int8), the number `auto` compares with its 0.01 bound

Both engines are judged by `ddavs-rt eval`'s code (`train.evaluate.evaluate_model`: the AVSBench
TPAVI protocol, J and F averaged over metric batches), on the same clips in the same order, so
the difference is the engine's alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ddavs_rt.engine import Engine
from ddavs_rt.errors import ConfigError

log = logging.getLogger(__name__)


def engine_jf(engine: Engine, data: str | Path, clips: int | None = None, split: str | None = None,
              frame_size: int = 224, batch_size: int = 4) -> dict[str, float]:
    """J, F and J&F of an engine on the first `clips` clips of a SynthAVS folder (any split when None)."""
    from ddavs_rt.train.datasets import open_dataset
    from ddavs_rt.train.evaluate import ClipSelection, EngineAsModel, evaluate_model

    spec = engine.spec
    dataset = None
    for name in ([split] if split else ["test", "train", "val"]):
        try:
            dataset = open_dataset(data, "synthavs", name, size=frame_size, sample_rate=spec.sample_rate)
        except Exception:  # noqa: BLE001 - the next split name
            continue
        if len(dataset):
            break
    if dataset is None or not len(dataset):
        raise ConfigError(f"{data}: no SynthAVS clips to check accuracy on; make some with `ddavs-rt synth --out {data}`")
    count = min(clips or len(dataset), len(dataset))
    metrics = evaluate_model(EngineAsModel(engine), ClipSelection(dataset, list(range(count))), batch_size)
    return {"j": float(metrics.j), "f": float(metrics.f), "jf": float(metrics.jf), "clips": count}


def engine_accuracy(reference: Engine, candidate: Engine, data: str | Path, clips: int | None = None,
                    split: str | None = None) -> dict[str, Any]:
    """J&F of both engines on the same clips, and the drop (reference minus candidate)."""
    ref = engine_jf(reference, data, clips, split)
    got = engine_jf(candidate, data, clips, split)
    drop = ref["jf"] - got["jf"]
    log.info("accuracy on %d clips: %s/%s J&F %.4f, %s/%s J&F %.4f (drop %.4f)", ref["clips"],
             reference.spec.backend, reference.spec.precision, ref["jf"], candidate.spec.backend,
             candidate.spec.precision, got["jf"], drop)
    return {
        "data": str(data), "clips": ref["clips"], "protocol": "avsbench-tpavi",
        "reference": f"{reference.spec.backend}/{reference.spec.precision}",
        "candidate": f"{candidate.spec.backend}/{candidate.spec.precision}",
        "jf_fp32": round(ref["jf"], 5), "jf_int8": round(got["jf"], 5), "jf_drop": round(drop, 5),
        "j_fp32": round(ref["j"], 5), "j_int8": round(got["j"], 5),
    }
