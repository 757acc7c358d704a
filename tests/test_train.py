"""Training: resume after a stop gives the same weights as a straight run, DDP ranks agree,
stage 1 writes a loadable encoder, stage 3 keeps the bank valid; the log files are written."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from ddavs_rt.bank import module_sha256
from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import TrainConfig
from ddavs_rt.model.checkpoint import load_checkpoint
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


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for split, seed, clips in (("train", 11, 3), ("val", 12, 2)):
        assert cli_main(["synth", "-q", "--out", str(root), "--clips", str(clips), "--seed", str(seed),
                         "--split", split, "--size", "32", "--subsets", "single"]) == 0
    return root


def _config(tmp: Path, data: Path, **overrides) -> TrainConfig:
    tmp.mkdir(parents=True, exist_ok=True)
    model = tmp / "model.yaml"
    model.write_text(yaml.safe_dump(TINY_MODEL))
    values = {
        "model": str(model), "data": {"root": str(data), "num_workers": 0}, "epochs": 2, "batch_size": 1,
        "lr": 1e-3, "warmup_epochs": 0.5, "frame_size": 32, "eval_batch_size": 2, "out_dir": str(tmp / "run"),
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_stop_and_resume_matches_a_straight_run(tmp_path: Path, data: Path) -> None:
    # 3 clips, batch 1: 3 steps per epoch; the stop at step 2 is mid-epoch and the rest crosses
    # the epoch end (validation, best/) before step 5. COM is on, so the augmentation's
    # generator, dropout and drop-path draws must all resume where they stopped.
    straight = Trainer(_config(tmp_path / "a", data, max_steps=5), tmp_path / "a" / "run")
    straight.fit()
    first = Trainer(_config(tmp_path / "b", data, max_steps=2), tmp_path / "b" / "run")
    first.fit()
    state = torch.load(tmp_path / "b/run/last/trainer_state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["position"]) == (2, 0, 2)
    del first  # the "killed" process: only last/ survives
    resumed = Trainer(_config(tmp_path / "b", data, max_steps=5), tmp_path / "b" / "run", resume=True)
    resumed.fit()
    a, b = _weights(tmp_path / "a/run/last"), _weights(tmp_path / "b/run/last")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key
    rows = list(csv.DictReader(open(tmp_path / "b/run/train_log.csv")))
    assert [r["epoch"] for r in rows] == ["1"] and float(rows[0]["val_jf"]) >= 0
    assert (tmp_path / "b/run/train_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert straight.step == resumed.step == 5


def test_resume_without_a_run_is_a_one_line_error(tmp_path: Path, data: Path) -> None:
    from ddavs_rt.errors import CheckpointError

    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(_config(tmp_path, data), tmp_path / "run", resume=True)


def test_stage_audio_then_ddavs_with_a_frozen_encoder_and_its_bank(tmp_path: Path, data: Path) -> None:
    audio_run = tmp_path / "audio"
    trainer = Trainer(_config(tmp_path, data, stage="audio", epochs=1, max_steps=2), audio_run)
    before = module_sha256(trainer.model.audio_encoder)
    trainer.fit()
    encoder, _ = load_checkpoint(audio_run / "last")
    assert module_sha256(encoder.audio_encoder) != before  # stage 1 trained the encoder
    assert "head" in torch.load(audio_run / "last/trainer_state.pt", weights_only=True)

    bank = tmp_path / "bank.safetensors"
    assert cli_main(["build-bank", "-q", "--checkpoint", str(audio_run / "last"), "--data", str(data),
                     "--k", "1", "--m", "1", "--out", str(bank)]) == 2  # P = C*1*1 differs from 4 prototypes
    from ddavs_rt.train.bank_builder import build_bank
    from ddavs_rt.train.datasets import open_dataset
    from ddavs_rt.bank import save_bank

    model, cfg = load_checkpoint(audio_run / "last")
    built = build_bank(model, cfg, open_dataset(data, "synthavs", "train", size=32), k=1, m=1)
    TINY_MODEL_P = dict(TINY_MODEL, bank={"num_prototypes": built.size})
    save_bank(bank, built.prototypes, built.class_index, built.class_names, built.encoder_kind, built.encoder_sha256, 1, 1)
    cfg3 = _config(tmp_path, data, stage="ddavs", bank=str(bank), init_checkpoint=str(audio_run / "last"), epochs=1, max_steps=2)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(TINY_MODEL_P))
    stage3 = Trainer(cfg3, tmp_path / "ddavs")
    stage3.fit()
    final, _ = load_checkpoint(tmp_path / "ddavs/last")  # attach_bank re-checks the encoder checksum
    assert module_sha256(final.audio_encoder) == built.encoder_sha256
    assert torch.equal(final.bank_buffer, built.prototypes)


@pytest.mark.parametrize("con", [0.1, 0.0])  # 0.0: the COM projector gets no gradient (DDP must look for unused)
def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path, data: Path, con: float) -> None:
    cfg = _config(tmp_path, data, max_steps=2, epochs=1, loss={"con": con})
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import sys, torch
        torch.set_num_threads(1)
        from ddavs_rt.bank import module_sha256
        from ddavs_rt.train.trainer import Trainer, load_train_config
        trainer = Trainer(load_train_config(sys.argv[1]), sys.argv[2])
        trainer.fit()
        # parameters (BatchNorm running statistics are each rank's own until DDP's next broadcast)
        params = torch.nn.ParameterList(p for p in trainer.model.parameters())
        open(f"{sys.argv[3]}/rank{trainer.rank}.txt", "w").write(f"{trainer.world} {trainer.step} {module_sha256(params)}")
        trainer.close()
    """))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(config_file), str(tmp_path / "run"), str(tmp_path)],
        capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    assert rank0[:2] == ["2", "2"] and rank0 == rank1
    assert (tmp_path / "run/last/model.safetensors").is_file()


def test_sampled_frames_are_the_clips_own_frames_and_audio_and_repeat_per_epoch(data: Path) -> None:
    from ddavs_rt.train.datasets import SampledFrames, open_dataset

    clips = open_dataset(data, "synthavs", "train", size=32)
    view = SampledFrames(clips, k=2, seed=3)
    full = clips[1]
    chosen = view.frame_indices(1)
    assert len(chosen) == 2 and chosen == sorted(set(chosen))
    sample = view[1]
    assert sample.frames.shape[0] == 2
    assert np.array_equal(sample.frames, full.frames[chosen])
    assert np.array_equal(sample.masks, full.masks[chosen])
    assert np.array_equal(sample.audio, full.audio[chosen])  # each frame keeps its own audio window
    assert view.frame_indices(1) == chosen  # same (seed, epoch, clip): same frames, so resume repeats them
    draws = set()
    for epoch in range(8):
        view.set_epoch(epoch)
        draws.add(tuple(view.frame_indices(1)))
    assert len(draws) > 1  # the epochs see different frames
    assert SampledFrames(clips, k=99).frame_indices(0) == list(range(full.frames.shape[0]))


def test_budget_run_overrides_the_model_and_reads_sampled_frames(tmp_path: Path, data: Path) -> None:
    cfg = _config(tmp_path, data, epochs=1, max_steps=2, frame_size=None, model_overrides={"input_size": 96, "aqm": {"num_queries": 3}})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"frames_per_clip": 1})})
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.model_cfg.input_size == 96 and trainer.model_cfg.aqm.num_queries == 3
    assert trainer.model_cfg.aqm.layers == TINY_MODEL["aqm"]["layers"]  # a nested override keeps its siblings
    assert trainer.train_data[0].frames.shape == (1, 96, 96, 3)
    assert trainer.val_data[0].frames.shape[0] > 1  # validation reads whole clips
    trainer.fit()
    _, saved = load_checkpoint(tmp_path / "run/last")
    assert saved.input_size == 96 and saved.aqm.num_queries == 3


# ---------------------------------------------------------------- VPO through the train config


def _vpo_config_file(tmp: Path, **data_fields) -> Path:
    """A train YAML beside a miniature CAVP-layout VPO/ and its VGGSound root, paths relative to it."""
    from test_datasets import build_vpo

    build_vpo(tmp)  # tmp/VPO/VPO-{SS,MS,MSMI}, tmp/vggsound/audios
    from ddavs_rt.train.datasets.vpo import VPO_CLASSES

    vpo_model = dict(TINY_MODEL, decoder={"hidden_dim": 16, "num_classes": len(VPO_CLASSES)}, class_names=VPO_CLASSES)
    (tmp / "model.yaml").write_text(yaml.safe_dump(vpo_model))
    config = {
        "model": "model.yaml", "data": {"root": "VPO", "layout": "vpo", "num_workers": 0, **data_fields},
        "epochs": 1, "batch_size": 1, "lr": 1e-3, "warmup_epochs": 0.0, "frame_size": 32, "eval_batch_size": 1,
        "out_dir": str(tmp / "run"), "max_steps": 1, "amp": False,
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_config_passes_the_vpo_subset_and_audio_root_and_trains_past_label_255(tmp_path: Path) -> None:
    from test_datasets import cavp_crop

    from ddavs_rt.train.datasets.media import decode_audio
    from ddavs_rt.train.trainer import load_train_config

    path = _vpo_config_file(tmp_path, subset="ss", audio_root="vggsound")
    trainer = Trainer(load_train_config(path), tmp_path / "run", config_dir=tmp_path)
    assert trainer.train_data.uids == ["7_70"] and trainer.val_data.dataset.uids == ["8_80"]  # CSV val rows: test
    sample = trainer.train_data[0]
    assert sample.tags == ["ss", "dog"] and (sample.semantic[0][12, 4:12] == 255).all()
    window = trainer.model_cfg.window_samples
    wave = decode_audio(tmp_path / "vggsound" / "audios" / "vggA.wav", trainer.model_cfg.sample_rate)
    np.testing.assert_array_equal(sample.audio[0], cavp_crop(wave, window))  # CAVP's centred crop, the model's window
    row = trainer.fit()  # one step on a frame with 255 pixels and 22 classes, then validation
    assert trainer.step == 1 and all(np.isfinite(row[k]) and row[k] > 0 for k in ("ce", "dice", "iou", "total"))

    ms = Trainer(load_train_config(_vpo_config_file(tmp_path / "ms", subset="ms", audio_root="vggsound",
                                                    train_split="test", val_split="test")),
                 tmp_path / "ms" / "run", config_dir=tmp_path / "ms")
    assert ms.train_data.uids == ["9", "11"] and ms.train_data[0].tags == ["ms", "cat", "dog"]


def test_vpo_data_fields_are_validated_in_one_line(tmp_path: Path) -> None:
    from ddavs_rt.errors import ConfigError, DataError
    from ddavs_rt.train.trainer import load_train_config

    path = _vpo_config_file(tmp_path, subset="mono")
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    message = str(info.value)
    assert "\n" not in message and "data.subset" in message and "'ss', 'ms' or 'msmi'" in message
    config = yaml.safe_load(path.read_text())
    config["data"] = {"root": "VPO", "layout": "s4", "audio_root": "vggsound"}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="audio_root only apply to layout vpo .layout is s4.; remove them"):
        load_train_config(path)
    assert TrainConfig.model_validate({"model": "m.yaml", "data": {"root": "VPO", "layout": "vpo"}}).data.loader_options(1.0) == {
        "subset": "ss", "audio_root": None, "audio_seconds": 1.0,
    }
    with pytest.raises(DataError, match="VPO audio comes from a VGGSound root"):
        Trainer(load_train_config(_vpo_config_file(tmp_path / "noaudio", audio_root="nowhere")), tmp_path / "noaudio" / "run",
                config_dir=tmp_path / "noaudio")


def test_resume_restores_each_ranks_own_random_state(tmp_path: Path, data: Path) -> None:
    """Two gloo ranks stop at step 2; a resumed run gives each rank back its own torch and
    augmentation random state (before, every rank restored rank 0's: identical augmentation)."""
    cfg = _config(tmp_path, data, max_steps=2, epochs=1)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import hashlib, sys, torch
        torch.set_num_threads(1)
        from ddavs_rt.train.trainer import Trainer, load_train_config
        resume = sys.argv[4] == "resume"
        trainer = Trainer(load_train_config(sys.argv[1]), sys.argv[2], resume=resume)
        if not resume:
            trainer.fit()
        digest = lambda t: hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]
        state = f"{digest(torch.random.get_rng_state())} {digest(trainer.aug_generator.get_state())}"
        open(f"{sys.argv[3]}/{sys.argv[4]}{trainer.rank}.txt", "w").write(state)
        trainer.close()
    """))
    for mode in ("first", "resume"):
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             str(script), str(config_file), str(tmp_path / "run"), str(tmp_path), mode],
            capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
    first = [(tmp_path / f"first{r}.txt").read_text() for r in range(2)]
    resumed = [(tmp_path / f"resume{r}.txt").read_text() for r in range(2)]
    assert first[0] != first[1]  # the ranks draw differently
    assert resumed == first  # each rank continues its own draws
