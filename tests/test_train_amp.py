"""Trainer precision and distributed choices (train/amp.py): bf16 only where a GPU has it
natively, resume of a run saved without a grad scaler, the process group's device, and the
training loss averaged over every rank (two real gloo processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddavs_rt.train import amp
from ddavs_rt.train.amp import amp_dtype, load_scaler_state, mean_across_ranks, process_group_options


def test_amp_dtype_is_bf16_only_on_native_hardware():
    assert amp_dtype(True, "cpu") is None and amp_dtype(False, "cuda", native_bf16=True) is None
    assert amp_dtype(True, "cuda", native_bf16=True) == torch.bfloat16  # A100, H100
    assert amp_dtype(True, "cuda", native_bf16=False) == torch.float16  # V100, T4: fp16 + scaler


def test_bf16_native_does_not_count_emulation(monkeypatch):
    """A V100 or T4 (emulated bf16 only), stood in for at the torch.cuda boundary: no GPU here."""
    calls = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return including_emulation  # emulation only, as on sm_70/sm_75

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert amp.bf16_native() is False and calls == [False]
    assert amp_dtype(True, "cuda") == torch.float16


def test_a_run_saved_without_a_scaler_resumes_with_a_fresh_one():
    saved = torch.amp.GradScaler("cpu", enabled=False).state_dict()  # a CPU or bf16 run
    assert saved == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True)  # resumed where fp16 needs one
    with pytest.raises(RuntimeError):
        torch.amp.GradScaler("cpu", enabled=True).load_state_dict(saved)  # what resume did before
    assert load_scaler_state(scaler, saved) is False
    assert scaler.get_scale() == 65536.0  # fresh
    old = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    assert load_scaler_state(scaler, old.state_dict()) is True and scaler.get_scale() == 1024.0
    assert load_scaler_state(torch.amp.GradScaler("cpu", enabled=False), old.state_dict()) is False


def test_process_group_binds_the_rank_gpu_on_cuda():
    assert process_group_options("cuda", 3) == {"backend": "nccl", "device_id": torch.device("cuda", 3)}
    assert process_group_options("cpu", 0) == {"backend": "gloo"}


def _rank(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        local = [({"total": 2.0, "ce": 1.0}, 2), ({"total": 9.0, "ce": 6.0}, 3)][rank]
        means = mean_across_ranks(*local)
        Path(out, f"{rank}.json").write_text(json.dumps(means))
    finally:
        dist.destroy_process_group()


def test_logged_loss_is_the_mean_over_every_ranks_batches(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    expected = {"ce": 7.0 / 5, "total": 11.0 / 5}  # (2 + 9) / (2 + 3) batches, not rank 0's 2 / 2
    for got in results:
        assert got == pytest.approx(expected)
    assert mean_across_ranks({"total": 2.0}, 2) == {"total": 1.0}  # no process group: this rank's own
