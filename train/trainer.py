"""The training loop for both stages, single process or DistributedDataParallel (torchrun).

Stage "audio": the audio encoder alone learns to classify the sounding class of single-source
clips (a linear head on AudioEncoder.pool); the checkpoint carries the encoder for the bank
builder and for stage "ddavs". Stage "ddavs": the full model, its audio encoder loaded from
`init_checkpoint` and frozen (weights and BatchNorm statistics, so the bank's encoder checksum
stays valid), the bank attached, trained on every frame of every clip: B clips x T frames are
flattened into B*T frames, each with its own 1-s audio window.

Reproducibility and resume: torch, numpy and python are seeded; the data order comes from a
DistributedSampler (seed + epoch) whose first `position` clips are skipped on resume; the
DataLoader and the augmentation have their own generators. `last/` holds the model checkpoint
and `trainer_state.pt` (optimizer, scheduler, scaler, epoch, step, position, RNG states: tensors
and primitives only, read with weights_only=True), so a resumed run continues with the same data
order and optimizer state. Folders are written beside their final name and renamed into place.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from ddavs_rt.bank import PrototypeBank, attach_bank, load_bank
from ddavs_rt.config import ModelConfig, TrainConfig, load_config
from ddavs_rt.errors import CheckpointError, ConfigError, DataError
from ddavs_rt.model.checkpoint import WEIGHTS_FILE, save_checkpoint
from ddavs_rt.model.ddavs import DDAVS, build_model

from .amp import amp_dtype, load_scaler_state, mean_across_ranks, process_group_options
from .augment import WaveAugment
from .datasets import ClipDataset, SampledFrames, collate_clips, open_dataset
from .evaluate import evaluate_model
from .history import write_csv, write_curves
from .labels import single_source_indices
from .losses import SegmentationLoss, segmentation_target
from .optim import build_optimizer, build_scheduler
from .sharded_eval import accuracy_across_ranks, evaluate_model_sharded, shard_range

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: Path, base: Path | None = None) -> Path:
    """Absolute paths as they are; relative ones against `base`, then the repository root."""
    if path.is_absolute():
        return path
    for root in (base, Path.cwd(), REPO_ROOT):
        if root is not None and (root / path).exists():
            return root / path
    return Path.cwd() / path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # differs per worker, fixed by the loader's generator
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": [list(random.getstate()[1]), random.getstate()[0]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    keys, version = state["python"]
    random.setstate((version, tuple(keys), None))


class SkipSampler(Sampler[int]):
    """The indices of a DistributedSampler's epoch, less the first `skip` (resume mid-epoch)."""

    def __init__(self, sampler: DistributedSampler, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


class AudioClassifier(nn.Module):
    """Stage 1: audio encoder + linear head on its pooled embedding. audio [N, S] -> logits [N, C]."""

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)  # type: ignore[arg-type]

    def forward(self, audio: Tensor) -> Tensor:
        return self.head(self.encoder.pool(self.encoder(audio)))


class TrainForward(nn.Module):
    """Stage ddavs: DDP hooks need forward(); this one calls DDAVS.forward_train."""

    def __init__(self, model: DDAVS) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor, audio: Tensor, audio_aug: Tensor | None) -> tuple[Tensor, Tensor | None]:
        out = self.model.forward_train(frames, audio, audio_aug)
        return out["logits"], out["con_loss"]  # type: ignore[return-value]


class LabelledClips(Dataset):
    """Stage 1 data: single-source clips with their class (index among the sounding classes)."""

    def __init__(self, dataset: ClipDataset, pairs: list[tuple[int, int]]) -> None:
        self.dataset = dataset
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        index, class_id = self.pairs[i]
        sample = self.dataset[index]
        return sample, class_id - 1  # class ids count from 1 (0 is background)


def collate_labelled(items: list) -> dict:
    batch = collate_clips([sample for sample, _ in items])
    batch["label"] = torch.tensor([label for _, label in items], dtype=torch.int64)
    return batch


def _save_folder_atomically(final: Path, write) -> None:
    """Write a folder beside `final`, then swap it into place (the old one is removed after)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(tmp)
        old = final.parent / f".{final.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path | None = None, resume: bool = False, config_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir or cfg.out_dir)
        self.resume = resume
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(**process_group_options(self.device.type, self.local_rank))
        self.is_main = self.rank == 0
        seed_everything(cfg.seed)  # the same on every rank: identical initial weights

        self.model_cfg = load_config(resolve_path(cfg.model, config_dir), ModelConfig, cfg.model_overrides)
        self.model = build_model(self.model_cfg)
        self.bank: PrototypeBank | None = None
        self.size = cfg.frame_size or self.model_cfg.input_size
        root = resolve_path(cfg.data.root, config_dir)
        audio_root = resolve_path(cfg.data.audio_root, config_dir) if cfg.data.audio_root is not None else None
        options = cfg.data.loader_options(self.model_cfg.window_seconds, audio_root)  # VPO: subset, VGGSound root
        train_set = open_dataset(root, cfg.data.layout, cfg.data.train_split, size=self.size, sample_rate=self.model_cfg.sample_rate, **options)
        val_set = open_dataset(root, cfg.data.layout, cfg.data.val_split, size=self.size, sample_rate=self.model_cfg.sample_rate, **options)

        if cfg.stage == "audio":
            self.class_names = [name for name in train_set.class_names[1:]]
            if not self.class_names:
                raise DataError(f"{root}: stage 'audio' needs a class list (classes.json)")
            train_pairs, val_pairs = single_source_indices(train_set), single_source_indices(val_set)
            if not train_pairs or not val_pairs:
                raise DataError(f"{root}: stage 'audio' needs single-source clips (tag single, no offscreen) in both splits; generate them with `ddavs-rt synth --subsets single`")
            self.train_data: Dataset = LabelledClips(train_set, train_pairs)
            self.val_data: Dataset = LabelledClips(val_set, val_pairs)
            self.net: nn.Module = AudioClassifier(self.model.audio_encoder, len(self.class_names))
            self.collate = collate_labelled
        else:
            self._init_ddavs(config_dir)
            frames_per_clip = cfg.data.frames_per_clip
            self.train_data = SampledFrames(train_set, frames_per_clip, cfg.seed) if frames_per_clip else train_set
            self.val_data = Subset(val_set, list(range(len(val_set))))
            self.net = TrainForward(self.model)
            self.collate = collate_clips
        self.net.to(self.device)
        self.trainable = self.net
        self.use_com = cfg.stage == "ddavs" and self.model.com is not None and cfg.loss.con > 0
        if self.world > 1:
            # DDP's search for unused parameters costs a graph traversal every step: only when some
            # trainable parameter gets no gradient by design (the COM projector without its loss)
            unused = cfg.stage == "ddavs" and self.model.com is not None and not self.use_com
            self.trainable = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.local_rank] if self.device.type == "cuda" else None, find_unused_parameters=unused,
            )
        self.loss_fn = SegmentationLoss(cfg.loss)
        self.augment = WaveAugment(cfg.augment, self.model_cfg.sample_rate)
        self.aug_generator = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.loader_generator = torch.Generator()

        self.sampler = DistributedSampler(self.train_data, num_replicas=self.world, rank=self.rank, shuffle=True, seed=cfg.seed, drop_last=False)
        self.steps_per_epoch = max(1, -(-len(self.sampler) // cfg.batch_size))
        total = cfg.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.net, cfg.lr, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, total, int(round(cfg.warmup_epochs * self.steps_per_epoch)))
        self.amp_dtype = amp_dtype(cfg.amp, self.device.type)  # bf16 only where the GPU has it natively
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.epoch = 0
        self.position = 0  # clips of this epoch already trained on (this rank)
        self.step = 0
        self.best_score = -1.0
        self.history: list[dict] = []
        self._rank_states: list | None = None
        if resume:
            self._load_state()

    # -- setup ---------------------------------------------------------------------------------

    def _init_ddavs(self, config_dir: Path | None) -> None:
        cfg = self.cfg
        if cfg.init_checkpoint is not None:
            folder = resolve_path(cfg.init_checkpoint, config_dir)
            state = load_file(str(folder / WEIGHTS_FILE)) if (folder / WEIGHTS_FILE).is_file() else None
            if state is None:
                raise CheckpointError(f"{folder}: no {WEIGHTS_FILE}; init_checkpoint must be a stage-1 checkpoint folder")
            prefix = "audio_encoder."
            encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                self.model.audio_encoder.load_state_dict(encoder_state, strict=True)
            except RuntimeError as error:
                raise CheckpointError(f"{folder}: its audio encoder does not fit this model ({str(error).splitlines()[0]}); train stage 1 with the same model config") from None
            logger.info("loaded the audio encoder of %s", folder)
        if cfg.bank is not None and self.model.bank_buffer is None:
            logger.info("model '%s' has no bank refinement: the training config's bank is not used", self.model_cfg.name)
        elif cfg.bank is not None:
            self.bank = load_bank(resolve_path(cfg.bank, config_dir))
            attach_bank(self.model, self.bank)
        elif self.model.bank_buffer is not None:
            logger.warning("no bank in the training config: the AQM refines against an empty bank")
        if cfg.freeze_audio_encoder:
            for param in self.model.audio_encoder.parameters():
                param.requires_grad_(False)

    def _set_train_mode(self) -> None:
        self.net.train()
        if self.cfg.stage == "ddavs" and self.cfg.freeze_audio_encoder:
            self.model.audio_encoder.eval()  # BatchNorm statistics stay as the bank saw them

    # -- state ---------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "epoch": self.epoch, "position": self.position, "step": self.step, "best_score": self.best_score,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "aug_generator": self.aug_generator.get_state(),
            "rank_states": self._rank_states_now(),  # every rank's own, by rank
            "history": self.history, "world": self.world,
            "head": {k: v.detach().cpu() for k, v in self.net.head.state_dict().items()} if self.cfg.stage == "audio" else {},
        }

    def _local_random_state(self) -> dict:
        return {"rng": rng_state(), "aug_generator": self.aug_generator.get_state()}

    def _rank_states_now(self) -> list:
        """The gathered states, with this (writing) rank's own as it is now (validation ran since)."""
        states = list(self._rank_states) if self._rank_states and len(self._rank_states) == self.world else [None] * self.world
        states[self.rank] = self._local_random_state()
        return states if all(state is not None for state in states) else []  # no gather yet: rank 0's only, as before

    def _gather_random_states(self) -> None:
        """Every rank's random state, gathered on all ranks before rank 0 writes `last/` (called by
        every rank at the same step): a resume restores each rank's own draws, not rank 0's."""
        local = self._local_random_state()
        if self.world > 1:
            states: list = [None] * self.world
            dist.all_gather_object(states, local)
            self._rank_states = states
        else:
            self._rank_states = [local]

    def _write_checkpoint(self, name: str, with_state: bool) -> None:
        state = self._state() if with_state else None

        def write(folder: Path) -> None:
            save_checkpoint(folder, self.model, self.model_cfg, self.bank)
            if state is not None:
                torch.save(state, folder / STATE_FILE)

        _save_folder_atomically(self.out_dir / name, write)

    def _load_state(self) -> None:
        folder = self.out_dir / "last"
        if not (folder / STATE_FILE).is_file():
            raise CheckpointError(f"{folder}: nothing to resume (no {STATE_FILE}); drop --resume or point --out at the run")
        weights = load_file(str(folder / WEIGHTS_FILE), device=str(self.device))
        self.model.load_state_dict(weights, strict=True)
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        if state["world"] != self.world:
            raise CheckpointError(f"{folder} was written by {state['world']} process(es), this run has {self.world}; resume with the same number")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        load_scaler_state(self.scaler, state.get("scaler"))  # a run saved without one starts a fresh one
        ranks = state.get("rank_states") or []
        mine = ranks[self.rank] if len(ranks) == self.world else {"rng": state["rng"], "aug_generator": state["aug_generator"]}
        self.aug_generator.set_state(mine["aug_generator"])  # older runs saved rank 0's only
        set_rng_state(mine["rng"])
        if self.cfg.stage == "audio":
            self.net.head.load_state_dict(state["head"])
        self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
        self.best_score, self.history = state["best_score"], list(state["history"])
        logger.info("resumed %s at epoch %d, step %d, clip %d of the epoch", folder, self.epoch, self.step, self.position)

    # -- loop ----------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        if isinstance(self.train_data, SampledFrames):
            self.train_data.set_epoch(self.epoch)
        self.loader_generator.manual_seed(self.cfg.seed * 7919 + self.epoch)
        return DataLoader(
            self.train_data, batch_size=self.cfg.batch_size, sampler=SkipSampler(self.sampler, self.position),
            collate_fn=self.collate, num_workers=self.cfg.data.num_workers, generator=self.loader_generator,
            worker_init_fn=_worker_init, pin_memory=self.device.type == "cuda",
        )

    def _train_step(self, batch: dict) -> dict[str, float]:
        keep = batch["frame_valid"].flatten()  # [B*T]
        frames = batch["frames"].flatten(0, 1)[keep]  # [N, H, W, 3]
        audio = batch["audio"].flatten(0, 1)[keep]  # [N, S]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            if self.cfg.stage == "audio":
                labels = batch["label"].repeat_interleave(batch["frames"].shape[1])[keep].to(self.device)
                logits = self.trainable(audio.to(self.device))
                loss = nn.functional.cross_entropy(logits.float(), labels)
                terms = {"total": loss, "ce": loss}
            else:
                audio_aug = self.augment(audio, self.aug_generator).to(self.device) if self.use_com else None
                logits, con = self.trainable(frames.to(self.device), audio.to(self.device), audio_aug)
                target = segmentation_target(batch["masks"], batch["semantic"], self.model_cfg.decoder.num_classes)
                target = target.flatten(0, 1)[keep].to(self.device)
                terms = self.loss_fn(logits, target, batch["mask_valid"].flatten()[keep].to(self.device), con)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def _validate(self) -> dict[str, float]:
        """Every rank calls it: each scores its own shard of the validation set, the metric's sums
        are all-reduced, and every rank returns the figures of the whole set."""
        self._sync_buffers()
        if self.cfg.stage == "audio":
            return {"val_acc": self._audio_accuracy()}
        if self.world > 1:
            metrics = evaluate_model_sharded(self.model, self.val_data, self.cfg.eval_batch_size, self.device, self.rank, self.world)
        else:
            metrics = evaluate_model(self.model, self.val_data, self.cfg.eval_batch_size, self.device)
        return {"val_j": metrics.j, "val_f": metrics.f, "val_jf": metrics.jf}

    def _sync_buffers(self) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP's next forward
        would broadcast them: each rank's last training step left its own, and rank 0's model is
        the one saved, so it is the one every shard validates."""
        if self.world > 1:
            for buffer in self.net.buffers():
                dist.broadcast(buffer.data, src=0)

    @torch.no_grad()
    def _audio_accuracy(self) -> float:
        self.net.eval()
        correct = total = 0
        mine = shard_range(len(self.val_data), self.rank, self.world)  # type: ignore[arg-type]
        for start in range(mine.start, mine.stop, self.cfg.eval_batch_size):
            batch = collate_labelled([self.val_data[i] for i in range(start, min(start + self.cfg.eval_batch_size, mine.stop))])
            keep = batch["frame_valid"].flatten()
            labels = batch["label"].repeat_interleave(batch["frames"].shape[1])[keep]
            logits = self.net(batch["audio"].flatten(0, 1)[keep].to(self.device))
            correct += int((logits.argmax(dim=1).cpu() == labels).sum())
            total += int(labels.numel())
        return accuracy_across_ranks(correct, total, self.device)

    def fit(self) -> dict:
        """Train to the configured epochs or max_steps; returns the last history row (or {})."""
        from tqdm import tqdm

        cfg = self.cfg
        max_steps = cfg.max_steps
        start = time.monotonic()
        while self.epoch < cfg.epochs:
            if max_steps is not None and self.step >= max_steps:
                break
            self._set_train_mode()
            sums: dict[str, float] = {}
            count = 0
            bar = tqdm(self._loader(), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not self.is_main, leave=False)
            tick = time.monotonic()
            stopped = False
            for batch in bar:
                terms = self._train_step(batch)
                self.step += 1
                self.position += batch["frames"].shape[0]
                count += 1
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value
                frames_done = int(batch["frame_valid"].sum()) * self.world
                now = time.monotonic()
                bar.set_postfix(loss=f"{terms['total']:.4f}", fps=f"{frames_done / max(now - tick, 1e-9):.1f}")
                tick = now
                at_limit = max_steps is not None and self.step >= max_steps
                if at_limit or (cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0):
                    self._gather_random_states()  # every rank, same step
                    if self.is_main:
                        self._write_checkpoint("last", with_state=True)
                if at_limit:
                    stopped = True
                    break
            bar.close()
            if stopped and self.position < len(self.sampler):
                break  # mid-epoch stop: last/ holds the position to resume from
            self.epoch += 1
            self.position = 0
            row = {"epoch": self.epoch, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"], "time_s": round(time.monotonic() - start, 3)}
            row.update(mean_across_ranks(sums, count, self.device))  # every rank's batches, not rank 0's
            row.update(self._validate())  # every rank its shard; the same figures on every rank
            self._gather_random_states()  # after validation: what each rank continues from
            self.history.append(row)
            if self.is_main:
                self._end_of_epoch(row)
            if self.world > 1:
                dist.barrier()
        if self.world > 1:
            dist.barrier()
        return self.history[-1] if self.history else {}

    def _end_of_epoch(self, row: dict) -> None:
        score = row.get("val_jf", row.get("val_acc", 0.0))
        logger.info("epoch %d step %d: %s", row["epoch"], row["step"], ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(self.history, self.out_dir / "train_log.csv")
        write_curves(self.history, self.out_dir / "train_curves.png")
        if score > self.best_score:
            self.best_score = score
            self._write_checkpoint("best", with_state=False)
        self._write_checkpoint("last", with_state=True)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def load_train_config(path: str | Path) -> TrainConfig:
    return load_config(path, TrainConfig)


__all__ = ["Trainer", "AudioClassifier", "load_train_config", "seed_everything", "resolve_path", "ConfigError"]
