"""Configuration: pydantic models for every config file, YAML in, validated objects out.

These models are the single source of truth for the model, training and runtime configs. Every
model forbids unknown fields, so a typo in a YAML file is an error that names the field, not a
silently ignored setting. `load_config(path, ModelConfig)` reads a YAML file and raises a
one-line `ConfigError` naming the file, the field and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddavs_rt.errors import ConfigError


class StrictModel(BaseModel):
    """Base for config models: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

# Public Mix Transformer (SegFormer) configurations: (embed dims, depths) per variant.
MIT_VARIANTS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}

Quad = tuple[int, int, int, int]


class VisualEncoderConfig(StrictModel):
    """Mix Transformer encoder. `variant` fills `embed_dims` and `depths` unless they are given."""

    kind: Literal["mit"] = "mit"
    variant: Literal["b0", "b1", "b2", "b3", "b4", "b5"] = "b5"
    embed_dims: Quad | None = None
    depths: Quad | None = None
    num_heads: Quad = (1, 2, 5, 8)
    sr_ratios: Quad = (8, 4, 2, 1)
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path: float = Field(0.1, ge=0, lt=1)
    layernorm_eps: Literal["mmseg", "legacy"] = Field(
        "mmseg", description="mmseg: 1e-5 in the patch-embedding norms and the attention's spatial-reduction norm, "
        "1e-6 in the block and stage norms (mix_transformer.py, the ImageNet mit_bX.pth weights); legacy: 1e-6 "
        "everywhere, what a saved config.json without this field was trained with",
    )

    @model_validator(mode="after")
    def _fill_from_variant(self) -> "VisualEncoderConfig":
        dims, depths = MIT_VARIANTS[self.variant]
        if self.embed_dims is None:
            object.__setattr__(self, "embed_dims", dims)
        if self.depths is None:
            object.__setattr__(self, "depths", depths)
        for dim, heads in zip(self.embed_dims, self.num_heads):  # type: ignore[arg-type]
            if dim % heads:
                raise ValueError(f"embed dim {dim} is not divisible by its {heads} heads")
        return self


class AudioFrontEndConfig(StrictModel):
    """Log-mel front-end of an audio encoder, computed inside the graph.

    The waveform arrives at the model's sample rate and is resampled to `sample_rate` (the
    encoder's own) inside the graph when the two differ. The STFT is a convolution with a fixed
    DFT basis. `log` chooses `ln(mel + log_offset)` (VGGish) or decibels `10 log10(max(mel,
    amin))` (HTSAT / torchlibrosa). `center` pads n_fft // 2 samples on both sides
    (`pad_mode`), as torch.stft and torchlibrosa do; VGGish frames without padding.
    """

    sample_rate: int = Field(16000, gt=0)
    n_fft: int = Field(512, gt=0)
    win_length: int = Field(400, gt=0)
    hop_length: int = Field(160, gt=0)
    n_mels: int = Field(64, gt=0)
    f_min: float = Field(125.0, ge=0)
    f_max: float = Field(7500.0, gt=0)
    power: float = Field(1.0, gt=0)
    mel_scale: Literal["htk", "slaney", "vggish"] = Field(
        "htk", description="htk / slaney: torchaudio's filterbank (triangles linear in Hz); vggish: the "
        "matrix of VGGish's mel_features.py (triangles linear in HTK mel, the DC bin zeroed)",
    )
    log: Literal["ln", "db"] = "ln"
    log_offset: float = Field(0.01, gt=0, description="offset for 'ln', amin for 'db'")
    mel_norm: Literal["none", "slaney"] = "none"
    center: bool = True
    pad_mode: Literal["reflect", "constant"] = "reflect"

    @model_validator(mode="after")
    def _check(self) -> "AudioFrontEndConfig":
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max {self.f_max} is above the Nyquist frequency {self.sample_rate / 2}")
        if self.f_min >= self.f_max:
            raise ValueError(f"f_min {self.f_min} must be below f_max {self.f_max}")
        return self


def _vggish_frontend() -> AudioFrontEndConfig:
    """VGGish's own log-mel (vggish_params.py, mel_features.py)."""
    return AudioFrontEndConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64,
        f_min=125.0, f_max=7500.0, power=1.0, mel_scale="vggish", log="ln", log_offset=0.01,
        mel_norm="none", center=False,
    )


def _small_frontend() -> AudioFrontEndConfig:
    """The small CPU encoder's log-mel: VGGish's framing with torchaudio's HTK filterbank (what the
    shipped checkpoints were trained with)."""
    return _vggish_frontend().model_copy(update={"mel_scale": "htk"})


def _htsat_frontend() -> AudioFrontEndConfig:
    return AudioFrontEndConfig(
        sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320, n_mels=64,
        f_min=50.0, f_max=14000.0, power=2.0, mel_scale="slaney", log="db", log_offset=1e-10,
        mel_norm="slaney", center=True, pad_mode="reflect",
    )


class HTSATConfig(StrictModel):
    """HTS-AT (Swin-style) audio encoder; 768-d tokens with the public configuration."""

    kind: Literal["htsat"] = "htsat"
    frontend: AudioFrontEndConfig = Field(default_factory=_htsat_frontend)
    spec_size: int = 256
    freq_ratio: int = 4
    patch_size: int = 4
    window_size: int = 8
    embed_dim: int = 96
    depths: Quad = (2, 2, 6, 2)
    num_heads: Quad = (4, 8, 16, 32)
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    num_audioset_classes: int = 527

    @property
    def out_dim(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


class VGGishConfig(StrictModel):
    """VGGish audio encoder (128-d embeddings of 0.96 s examples)."""

    kind: Literal["vggish"] = "vggish"
    frontend: AudioFrontEndConfig = Field(default_factory=_vggish_frontend)

    @property
    def out_dim(self) -> int:
        return 128


class SmallAudioConfig(StrictModel):
    """A small convolutional audio encoder for the CPU: log-mel -> conv stages -> tokens."""

    kind: Literal["small"] = "small"
    frontend: AudioFrontEndConfig = Field(default_factory=_small_frontend)
    channels: tuple[Annotated[int, Field(gt=0)], ...] = Field((32, 64, 128), min_length=1)
    dim: int = Field(128, gt=0)

    @property
    def out_dim(self) -> int:
        return self.dim


AudioEncoderConfig = Annotated[
    Union[HTSATConfig, VGGishConfig, SmallAudioConfig], Field(discriminator="kind")
]


class AQMConfig(StrictModel):
    """Audio Query Module: Q-Former query generator, then bank-based refinement (eq. 4)."""

    enabled: bool = True
    num_queries: int = Field(5, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(8, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    bank_refinement: bool = True
    gamma: float = 1.0


class BankConfig(StrictModel):
    """Shape of the fixed prototype bank M (P x d, d = the audio encoder's width)."""

    num_prototypes: int = Field(60, ge=1)


class COMConfig(StrictModel):
    """Contrastive Optimization Module (training only): projector + InfoNCE with temperature."""

    enabled: bool = True
    projector_dim: int = Field(128, ge=1)
    temperature: float = Field(0.07, gt=0)


class AVAMConfig(StrictModel):
    """Audio-Visual Alignment Module: cross alignment blocks before the chosen MiT stages.

    `positions` are 1-based stage numbers of the four-stage encoder; [3, 4] is the paper's
    delayed alignment. With `enabled: false` audio is fused once at the encoder-decoder
    interface instead (`BaselineInterfaceFusion`, this project's baseline fusion, not a paper
    component).
    """

    enabled: bool = True
    positions: list[int] = Field(default_factory=lambda: [3, 4])
    heads: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _check_positions(self) -> "AVAMConfig":
        bad = [p for p in self.positions if p not in (1, 2, 3, 4)]
        if bad:
            raise ValueError(f"positions must be among 1-4, got {bad}")
        if len(set(self.positions)) != len(self.positions):
            raise ValueError(f"positions repeat: {self.positions}")
        object.__setattr__(self, "positions", sorted(self.positions))
        return self


class DecoderConfig(StrictModel):
    """All-MLP SegFormer decoder. `num_classes` K: 1 for binary masks, C + 1 for semantic."""

    hidden_dim: int = Field(768, ge=1)
    num_classes: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class DDESegConfig(StrictModel):
    """DDESeg variant (variant: ddeseg): Dynamic Derivation / Elimination and per-stage fusion.

    The semantic memory is the project's bank file: `prototypes_per_class` = k * m rows per class,
    stored class by class, so bank.num_prototypes must be a multiple of it. `num_derived` is the
    paper's K (nearest class centres, derived audio representations and visual centres).
    """

    num_derived: int = Field(5, ge=1)
    prototypes_per_class: int = Field(5, ge=1)
    heads: int = Field(8, ge=1)
    gumbel_tau: float = Field(1.0, gt=0)
    fusion_mlp_ratio: float = Field(2.0, gt=0)


class SDAVSConfig(StrictModel):
    """SDAVS variant (variant: sdavs): SNRP + DAMF in four decoder stages of width decoder.hidden_dim.

    `attn_dim` is the STC output width the bidirectional attention runs at; `kv_pool` the spatial
    pooling of keys/values per MiT stage (1-4), as MiT's reduction ratios; `reduction` the channel
    reduction of the CFS gate MLP and of CAR.
    """

    attn_dim: int = Field(256, ge=1)
    heads: int = Field(8, ge=1)
    kv_pool: Quad = (8, 4, 2, 1)
    reduction: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "SDAVSConfig":
        if self.attn_dim % self.heads:
            raise ValueError(f"attn_dim {self.attn_dim} is not divisible by {self.heads} heads")
        if min(self.kv_pool) < 1:
            raise ValueError(f"kv_pool entries must be at least 1, got {self.kv_pool}")
        return self


class ModelConfig(StrictModel):
    """A DDAVS network and its engine contract (input size, sample rate, window)."""

    name: str
    variant: Literal["ddavs", "ddeseg", "sdavs"] = "ddavs"
    input_size: int = Field(224, ge=32)
    sample_rate: int = Field(16000, gt=0)
    window_seconds: float = Field(1.0, gt=0)
    visual: VisualEncoderConfig = Field(default_factory=VisualEncoderConfig)
    audio: AudioEncoderConfig = Field(default_factory=HTSATConfig)
    aqm: AQMConfig = Field(default_factory=AQMConfig)
    bank: BankConfig = Field(default_factory=BankConfig)
    com: COMConfig = Field(default_factory=COMConfig)
    avam: AVAMConfig = Field(default_factory=AVAMConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    class_names: list[str] = Field(default_factory=lambda: ["background", "sounding"])
    ddeseg: DDESegConfig = Field(default_factory=DDESegConfig)
    sdavs: SDAVSConfig = Field(default_factory=SDAVSConfig)

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_seconds))

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.input_size % 32:
            raise ValueError(f"input_size {self.input_size} must be a multiple of 32")
        k = self.decoder.num_classes
        expected = 2 if k == 1 else k
        if len(self.class_names) != expected:
            raise ValueError(
                f"class_names has {len(self.class_names)} names, decoder.num_classes={k} needs {expected}"
            )
        if self.com.enabled and not self.aqm.enabled:
            raise ValueError("com.enabled needs aqm.enabled: COM acts on the AQM's queries")
        if self.variant != "ddavs" and self.com.enabled:
            raise ValueError(f"variant {self.variant} has no COM; set com.enabled: false")
        if self.variant == "ddeseg":
            per_class = self.ddeseg.prototypes_per_class
            if self.bank.num_prototypes % per_class:
                raise ValueError(
                    f"bank.num_prototypes {self.bank.num_prototypes} is not a multiple of "
                    f"ddeseg.prototypes_per_class {per_class} (k * m of the bank)"
                )
            classes = self.bank.num_prototypes // per_class
            if self.ddeseg.num_derived > classes:
                raise ValueError(
                    f"ddeseg.num_derived {self.ddeseg.num_derived} exceeds the memory's {classes} classes"
                )
        return self


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class LossWeights(StrictModel):
    ce: float = Field(1.0, ge=0)
    dice: float = Field(1.0, ge=0)
    iou: float = Field(0.5, ge=0)
    focal: float = Field(0.0, ge=0)
    con: float = Field(0.1, ge=0)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)


class AugmentConfig(StrictModel):
    """Waveform augmentation for the COM branch (paper Table 7)."""

    reverb_room_scale: tuple[float, float] = (20.0, 40.0)
    pitch_cents: float = Field(150.0, ge=0)
    compression: bool = True
    snr_db: tuple[float, float] = (10.0, 20.0)


class DataConfig(StrictModel):
    root: Path
    layout: Literal["synthavs", "avss", "s4", "ms3", "vpo"] = "synthavs"
    train_split: str = "train"
    val_split: str = "val"
    num_workers: int = Field(2, ge=0)
    frames_per_clip: int | None = Field(
        None, ge=1, description="training reads this many random frames of each clip per epoch (None: all); validation always reads all",
    )
    subset: Literal["ss", "ms", "msmi"] | None = Field(
        None, description="layout vpo only: VPO-SS, VPO-MS or VPO-MSMI (None: ss), as `ddavs-rt eval --subset`",
    )
    audio_root: Path | None = Field(
        None, description="layout vpo only: the VGGSound root holding audios/<vgg_file>.wav (None: searched beside the "
        "VPO folder), as `ddavs-rt eval --audio-root`; a relative path is resolved like root",
    )

    @model_validator(mode="after")
    def _vpo_fields_need_vpo(self) -> DataConfig:
        given = [name for name in ("subset", "audio_root") if getattr(self, name) is not None]
        if given and self.layout != "vpo":
            raise ValueError(f"{', '.join(given)} only apply to layout vpo (layout is {self.layout}); remove them")
        return self

    def loader_options(self, window_seconds: float, audio_root: Path | None = None) -> dict[str, Any]:
        """Keyword options of the layout's loader: for vpo the subset, the VGGSound root (`audio_root`
        given already resolved, else this config's) and CAVP's centred crop cut to the model's window."""
        if self.layout != "vpo":
            return {}
        return {"subset": self.subset or "ss", "audio_root": audio_root or self.audio_root, "audio_seconds": window_seconds}


class TrainConfig(StrictModel):
    """One training run: `ddavs-rt train --config configs/train/NAME.yaml`."""

    model: Path = Field(description="model config YAML, relative to the repository root or absolute")
    bank: Path | None = None
    data: DataConfig
    out_dir: Path = Path("runs/default")
    stage: Literal["audio", "ddavs"] = "ddavs"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(2.0, ge=0)
    amp: bool = True
    seed: int = 0
    freeze_audio_encoder: bool = True
    init_checkpoint: Path | None = Field(None, description="stage 'ddavs': checkpoint folder whose audio encoder is loaded (stage 1's)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (the schedule still spans all epochs)")
    checkpoint_every_steps: int = Field(0, ge=0, description="also write last/ every N steps (0: at epoch ends only)")
    frame_size: int | None = Field(None, ge=32, description="training frame side; default the model's input_size")
    eval_batch_size: int = Field(4, ge=1, description="clips per validation batch; the metric batch is this times the frames per clip")
    loss: LossWeights = Field(default_factory=LossWeights)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="merged (nested keys deep) into the model config before it is validated, e.g. {input_size: 96} for a budget run; the checkpoint records the result",
    )


# --------------------------------------------------------------------------------------------
# Runtime
# --------------------------------------------------------------------------------------------


ReconnectTimeout = Union[Annotated[float, Field(ge=0)], Literal["forever"], None]


class CameraSourceConfig(StrictModel):
    """A local camera (OpenCV), optionally paired with a microphone on the same clock."""

    kind: Literal["camera"] = "camera"
    id: str = "camera"
    device: int | str = 0
    mic: int | str | None = None
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0)
    reconnect_timeout_s: ReconnectTimeout = Field(None, description="overrides the runtime's reconnect_timeout_s")

    @model_validator(mode="after")
    def _not_a_url(self) -> "CameraSourceConfig":
        if isinstance(self.device, str) and "://" in self.device:
            raise ValueError(
                f"camera device {self.device!r} is a URL; a camera is an index or a /dev path, pass a URL as --rtsp "
                "(or kind: media in a config)"
            )
        return self


class MediaSourceConfig(StrictModel):
    """An RTSP/HTTP URL or a file (PyAV): video plus its audio track when there is one."""

    kind: Literal["media"] = "media"
    id: str = "media"
    location: str
    loop: bool = False
    realtime: bool | None = None
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    reconnect_timeout_s: ReconnectTimeout = Field(None, description="overrides the runtime's reconnect_timeout_s")
    mic: int | str | None = Field(
        None, description="a microphone (name, index or 'default') that replaces the media's own audio; "
        "video is then stamped on arrival, on the microphone's clock"
    )


class SyntheticSourceConfig(StrictModel):
    """The SynthAVS live scene, played in real time with its ground truth."""

    kind: Literal["synthetic"] = "synthetic"
    id: str = "demo"
    seed: int = 2026
    fps: float = Field(25.0, gt=0)
    size: int = Field(224, ge=32)
    realtime: bool = True


SourceConfig = Annotated[
    Union[CameraSourceConfig, MediaSourceConfig, SyntheticSourceConfig], Field(discriminator="kind")
]


class RuntimeConfig(StrictModel):
    """The streaming runtime: sources, engine, batching, publishing.

    Times on a stream are its own clock; the audio window of a frame at time t is
    [t - window + audio_offset_s, t + audio_offset_s].
    """

    sources: list[SourceConfig] = Field(default_factory=list)
    engine: Path | None = None
    backend: str = Field("auto", pattern=r"^(auto|torch|onnxruntime|openvino|tensorrt)(:(auto|fp32|fp16|bf16|int8))?$",
                         description="BACKEND[:PRECISION], e.g. auto, onnxruntime, openvino:bf16 (ddavs_rt.engine.open)")
    engine_threads: int | None = Field(None, ge=1, description="CPU engine threads (default: physical cores)")
    engine_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="OpenVINO performance hint (THROUGHPUT: several calls at once, one inference loop each)")
    inference_workers: int | None = Field(
        None, ge=1, description="inference loops of the scheduler (default: as many calls as the engine runs at once)")
    publish: str = "tcp://127.0.0.1:5555"
    send_hwm: int = Field(50, ge=1)
    max_batch: int = Field(8, ge=1)
    batch_deadline_ms: float = Field(5.0, ge=0)
    audio_wait_ms: float = Field(60.0, ge=0, description="how long a frame may wait for late audio")
    audio_offset_s: float = 0.0
    audio_buffer_s: float = Field(10.0, gt=1)
    overlay: bool = True
    jpeg_quality: int = Field(80, ge=1, le=100)
    mask_threshold: float = Field(0.5, gt=0, lt=1)
    duration_s: float | None = Field(None, gt=0)
    stats_interval_s: float = Field(2.0, gt=0)
    reconnect_timeout_s: ReconnectTimeout = Field(
        None, description="how long a lost source is retried: seconds, 'forever', or None for the defaults "
        "(20 s before a source's first frame, 300 s per outage after it); see docs/architecture.md, Supervision"
    )
    # Operating it (ddavs_rt/runtime/metrics.py, recorder.py, publish/keys.py)
    metrics: str | None = Field(None, description="HOST:PORT of the Prometheus endpoint, e.g. 127.0.0.1:9100")
    curve_keys: Path | None = Field(None, description="folder made by `ddavs-rt keys`: CURVE on the publisher")
    record: Path | None = Field(None, description="folder for the recorded masks and headers")
    record_rotate_mb: float | None = Field(None, gt=0, description="close a recording segment at this size")
    record_rotate_s: float | None = Field(None, gt=0, description="close a recording segment after this long")

    @model_validator(mode="after")
    def _unique_ids(self) -> "RuntimeConfig":
        ids = [source.id for source in self.sources]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"source ids must be unique, repeated: {repeated}")
        return self


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def describe_validation_error(source: str, error: ValidationError) -> str:
    """One line: the source, the first failing field, what was expected and what was given."""
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    given = first.get("input")
    given_text = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
    more = error.error_count() - 1
    tail = f"; and {more} more error(s)" if more > 0 else ""
    return f"{source}: field '{loc}': {message}{given_text}{tail}"


def with_legacy_defaults(data: object) -> object:
    """A saved model config (a checkpoint's config.json, an engine sidecar's "config") written
    before a behaviour-changing field existed means the old behaviour: `visual.layernorm_eps`
    absent is "legacy" (MiT LayerNorm eps 1e-6 everywhere)."""
    if isinstance(data, dict):
        visual = data.get("visual")
        visual = dict(visual) if isinstance(visual, dict) else {}
        if "layernorm_eps" not in visual:
            visual["layernorm_eps"] = "legacy"
            data = {**data, "visual": visual}
    return data


def parse_config(data: Any, cls: type[ConfigT], source: str = "<config>") -> ConfigT:
    """Validate an already-parsed mapping, raising a one-line ConfigError."""
    if data is None:
        raise ConfigError(f"{source}: empty config; expected a mapping of {cls.__name__} fields")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(source, error)) from None


def deep_merge(base: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it; nested dicts merge key by key, anything else replaces."""
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in overrides.items():
        merged[key] = deep_merge(merged.get(key), value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def load_config(path: str | Path, cls: type[ConfigT], overrides: dict[str, Any] | None = None) -> ConfigT:
    """Read a YAML (or JSON) file into a validated config object, `overrides` deep-merged first."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if overrides:
        data = deep_merge(data, overrides)
    return parse_config(data, cls, str(path))


def dump_config(config: BaseModel) -> dict[str, Any]:
    """A JSON-safe dict of a config (paths as strings, tuples as lists)."""
    return json.loads(config.model_dump_json())


def save_config_yaml(config: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dump_config(config), sort_keys=False), encoding="utf-8")
