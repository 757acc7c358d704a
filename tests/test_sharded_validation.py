"""Validation sharded across ranks (train/sharded_eval.py): every rank scores its own block of
the validation clips, the metric's sums are all-reduced, and every rank gets the figures one
process gets scoring the whole set with the official accumulator (`BinaryMetricAccumulator`).
Two real gloo processes (torchrun), as in tests/test_train.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import TrainConfig
from ddavs_rt.metrics import BinaryMetricAccumulator, TpaviBatchSums
from ddavs_rt.train.evaluate import evaluate_model
from ddavs_rt.train.sharded_eval import accuracy_across_ranks, shard_range
from ddavs_rt.train.trainer import Trainer

torch.set_num_threads(1)

TINY_MODEL = {
    "name": "test-tiny", "input_size": 64,
    "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1], "drop_path": 0.1},
    "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
    "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "mlp_ratio": 2.0},
    "bank": {"num_prototypes": 4},
    "com": {"projector_dim": 16},
    "avam": {"positions": [3, 4], "heads": 4},
    "decoder": {"hidden_dim": 16, "num_classes": 1},
}
VAL_CLIPS = 5  # 2 ranks: clips 0-2 and 3-4; metric batches of 2 clips: clips 2 and 3 share one


def test_shards_tile_the_set_without_padding() -> None:
    for n in range(0, 12):
        for world in (1, 2, 3, 4):
            shards = [shard_range(n, rank, world) for rank in range(world)]
            assert [i for shard in shards for i in shard] == list(range(n))  # disjoint, in order, all
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [list(shard_range(5, r, 2)) for r in range(2)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError, match="outside"):
        shard_range(5, 2, 2)


def test_batch_sums_added_over_shards_give_the_official_figures() -> None:
    """Frames split between two 'ranks' at a point inside a metric batch, each adding its frames
    at their dataset positions: the summed sums give BinaryMetricAccumulator's J and F (batch F
    is a maximum over thresholds, so it is not a sum over frames), a last partial batch included,
    frames with empty ground truth (J counts them, F skips them) included."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 2.0, (11, 16, 16)).astype(np.float32)
    masks = (rng.random((11, 16, 16)) > 0.6).astype(np.float32)
    masks[[1, 4, 5]] = 0.0  # empty ground truth
    masks[5, :4, :4] = 0.0
    official = BinaryMetricAccumulator(batch_size=4)
    official.add(logits, masks)
    expected = official.result()
    ranks = [TpaviBatchSums(4, 11), TpaviBatchSums(4, 11)]
    ranks[0].add(0, logits[:6], masks[:6])  # batch 1 (frames 4-7) is split between the ranks
    ranks[1].add(6, logits[6:], masks[6:])
    got = TpaviBatchSums.metrics_from_sums(ranks[0].sums + ranks[1].sums, 4)
    assert (got.num_frames, got.num_batches, got.batch_size) == (11, 3, 4)
    assert got.j == pytest.approx(expected.j, abs=1e-6) and got.f == pytest.approx(expected.f, abs=1e-6)
    assert got.jf == pytest.approx(expected.jf, abs=1e-6)
    with pytest.raises(ValueError, match="no frames"):  # one rank's sums alone do not cover the set
        TpaviBatchSums.metrics_from_sums(ranks[1].sums, 4)


def _accuracy_rank(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        correct, total = [(1, 3), (4, 4)][rank]
        Path(out, f"{rank}.json").write_text(json.dumps(accuracy_across_ranks(correct, total, "cpu")))
    finally:
        dist.destroy_process_group()


def test_accuracy_is_correct_over_total_of_every_rank(tmp_path: Path) -> None:
    """Accuracy is additive as correct and total frames, not as per-rank means: (1 + 4) / (3 + 4),
    not the mean of 1/3 and 4/4, and not either rank's own."""
    mp.spawn(_accuracy_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    assert [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)] == [pytest.approx(5 / 7)] * 2
    assert accuracy_across_ranks(1, 3, "cpu") == pytest.approx(1 / 3)  # no process group: this rank's own


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for split, seed, clips in (("train", 21, 2), ("val", 22, VAL_CLIPS)):
        assert cli_main(["synth", "-q", "--out", str(root), "--clips", str(clips), "--seed", str(seed),
                         "--split", split, "--size", "32", "--subsets", "single"]) == 0
    return root


def _config(tmp: Path, data: Path, stage: str) -> TrainConfig:
    tmp.mkdir(parents=True, exist_ok=True)
    model = tmp / "model.yaml"
    model.write_text(yaml.safe_dump(TINY_MODEL))
    return TrainConfig.model_validate({
        "model": str(model), "data": {"root": str(data), "num_workers": 0}, "epochs": 1, "batch_size": 1,
        "lr": 1e-3, "warmup_epochs": 0.5, "frame_size": 32, "eval_batch_size": 2, "out_dir": str(tmp / stage),
        "stage": stage,
    })


WORKER = """
import json, sys, torch
torch.set_num_threads(1)
from ddavs_rt.train.trainer import Trainer, load_train_config

out = sys.argv[1]
for stage in ("ddavs", "audio"):
    trainer = Trainer(load_train_config(f"{out}/{stage}.yaml"), f"{out}/{stage}")
    inner, seen = trainer.val_data, []

    class Recorded(torch.utils.data.Dataset):  # records which validation clips this rank reads
        def __len__(self):
            return len(inner)

        def __getitem__(self, i):
            seen.append(i)
            return inner[i]

    trainer.val_data = Recorded()
    row = trainer.fit()  # one epoch: DDP training, then the sharded validation
    with open(f"{out}/{stage}_rank{trainer.rank}.json", "w") as f:
        json.dump({"world": trainer.world, "seen": seen, "row": row}, f)
trainer.close()
"""


def test_two_gloo_ranks_validate_their_shards_and_agree_with_one_process(tmp_path: Path, data: Path) -> None:
    for stage in ("ddavs", "audio"):
        (tmp_path / f"{stage}.yaml").write_text(yaml.safe_dump(_config(tmp_path, data, stage).model_dump(mode="json")))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = {stage: [json.loads((tmp_path / f"{stage}_rank{r}.json").read_text()) for r in range(2)] for stage in ("ddavs", "audio")}

    # each rank read only its own block of the validation clips
    assert [sorted(set(r["seen"])) for r in ranks["ddavs"]] == [[0, 1, 2], [3, 4]]
    n_audio = len(set(ranks["audio"][0]["seen"]) | set(ranks["audio"][1]["seen"]))
    assert n_audio == VAL_CLIPS  # every clip is single-source here
    assert [sorted(set(r["seen"])) for r in ranks["audio"]] == [list(shard_range(n_audio, r, 2)) for r in range(2)]
    assert all(r["world"] == 2 for rs in ranks.values() for r in rs)

    # one process, the whole set, the official accumulator, with the model rank 0 saved
    single = Trainer(_config(tmp_path / "single", data, "ddavs"), tmp_path / "single" / "ddavs")
    assert single.world == 1
    single.model.load_state_dict(load_file(str(tmp_path / "ddavs/last/model.safetensors")), strict=True)
    expected = single._validate()
    for rank in ranks["ddavs"]:
        for key in ("val_j", "val_f", "val_jf"):
            assert rank["row"][key] == pytest.approx(expected[key], abs=1e-5), key
    # the check can fail: a rank scoring only its own shard gets other figures
    shard_only = evaluate_model(single.model, torch.utils.data.Subset(single.val_data, [3, 4]), 2)
    assert abs(shard_only.jf - expected["val_jf"]) > 1e-3
    logged = list(csv.DictReader(open(tmp_path / "ddavs/train_log.csv")))  # rank 0 wrote the history
    assert len(logged) == 1 and float(logged[0]["val_jf"]) == pytest.approx(expected["val_jf"], abs=1e-5)

    single_audio = Trainer(_config(tmp_path / "single", data, "audio"), tmp_path / "single" / "audio")
    single_audio.model.load_state_dict(load_file(str(tmp_path / "audio/last/model.safetensors")), strict=True)
    state = torch.load(tmp_path / "audio/last/trainer_state.pt", weights_only=True)
    single_audio.net.head.load_state_dict(state["head"])
    expected_acc = single_audio._validate()["val_acc"]
    assert ranks["audio"][0]["row"]["val_acc"] == ranks["audio"][1]["row"]["val_acc"] == pytest.approx(expected_acc, abs=1e-9)
