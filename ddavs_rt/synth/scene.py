"""One SynthAVS clip: plan a scene, render its 5 frames and 5 s of audio, label it, tag it.

A clip is a pure function of (seed, index, size, kinds): its numpy Generator is seeded with
SeedSequence([seed, index]), so any worker can make any clip and get the same bytes.

Frame i shows the scene at time i + 0.5 s; its audio window is [i, i + 1) s of the 5 s track.
Labelling rule (AVSBench): every visible instance of a class that is in the audio mix is
sounding; a visible object whose class is not in the mix is silent; a class in the mix that is
never visible is off-screen and produces no mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ddavs_rt.synth.audio import SAMPLE_RATE, make_background_noise, make_voice, rms_db
from ddavs_rt.synth.classes import CLASS_NAMES, LOOK_ALIKE, NUM_CLASSES, SOUND_ALIKE, partner, spec_of
from ddavs_rt.synth.render import Look, draw_look, finish_frame, make_background, paint, radius_for_area, sensor_noise

FRAMES = 5
CLIP_SECONDS = 5.0
KINDS = ("single", "multi", "multi-instance", "weak", "small", "offscreen")
# the default mixture of clip kinds (weights over KINDS)
DEFAULT_MIX = {"single": 0.28, "multi": 0.2, "multi-instance": 0.14, "weak": 0.14, "small": 0.12, "offscreen": 0.12}
SMALL_AREA = 0.02  # a "small" sounding object covers less than this share of the frame
DISTRACTOR_P = 0.93  # chance that a clip plans a silent distractor
MAX_OBJECTS = 5
_ATTEMPTS = 30


@dataclass
class Instance:
    """One object: its class, look and a motion that bounces inside the frame."""

    class_id: int
    look: Look
    radius: float  # pixels
    x0: float
    y0: float
    vx: float  # pixels per second
    vy: float
    angle0: float
    spin: float  # radians per second
    role: str  # "sounding" or "distractor" (planned; the labels come from the render)

    def pose(self, t: float, size: int) -> tuple[float, float, float]:
        margin = 0.4 * self.radius
        return _bounce(self.x0 + self.vx * t, margin, size - margin), _bounce(self.y0 + self.vy * t, margin, size - margin), self.angle0 + self.spin * t


def _bounce(p: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [5, S, S, 3] RGB
    semantic: np.ndarray  # uint8 [5, S, S] class ids
    masks: np.ndarray  # uint8 [5, S, S] {0, 1} sounding pixels
    audio: np.ndarray  # float32 [80000]
    meta: dict = field(default_factory=dict)


def clip_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def make_instance(class_id: int, role: str, size: int, rng: np.random.Generator, area: float | None = None) -> Instance:
    """An instance of `class_id` whose shape covers `area` of the frame (default: its class's range)."""
    spec = spec_of(class_id)
    lo, hi = spec.appearance.area
    share = float(rng.uniform(lo, hi)) if area is None else area
    radius = radius_for_area(spec.appearance.shape, share * size * size)
    speed = float(rng.uniform(4, 22)) * size / 224
    heading = float(rng.uniform(0, 2 * math.pi))
    return Instance(
        class_id=class_id,
        look=draw_look(spec.appearance, rng),
        radius=radius,
        x0=float(rng.uniform(radius, size - radius)),
        y0=float(rng.uniform(radius, size - radius)),
        vx=speed * math.cos(heading),
        vy=speed * math.sin(heading),
        angle0=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-0.6, 0.6)),
        role=role,
    )


def _name(class_id: int) -> str:
    return CLASS_NAMES[class_id]


def _pick_distractor(rng: np.random.Generator, mix: list[int], excluded: set[int]) -> int:
    """A silent class: often the look-alike of a sounding class (only the audio tells them apart)."""
    banned = set(mix) | excluded
    for c in mix:  # a silent sound-alike of a sounding class would make the label ambiguous
        other = partner(_name(c), SOUND_ALIKE)
        if other:
            banned.add(CLASS_NAMES.index(other))
    if rng.random() < 0.5:
        look_alikes = [CLASS_NAMES.index(p) for c in mix if (p := partner(_name(c), LOOK_ALIKE))]
        look_alikes = [c for c in look_alikes if c not in banned]
        if look_alikes:
            return int(rng.choice(look_alikes))
    pool = [c for c in range(1, NUM_CLASSES + 1) if c not in banned]
    return int(rng.choice(pool))


@dataclass
class Plan:
    instances: list[Instance]
    levels: dict[int, float]  # class id -> planned level (dB FS) for every class in the mix
    offscreen: list[int]
    snr_db: float


def plan_clip(kind: str, size: int, rng: np.random.Generator) -> Plan:
    """Choose classes, instances, levels and noise for one clip of `kind`."""
    classes = rng.permutation(np.arange(1, NUM_CLASSES + 1)).tolist()
    counts: list[int]  # instances per visible sounding class
    if kind == "single":
        counts = [1]
    elif kind == "multi":
        counts = [1] * int(rng.integers(2, 4))
    elif kind == "multi-instance":
        counts = [int(rng.integers(2, 4))] + [1] * int(rng.integers(0, 2))
    elif kind == "weak":
        counts = [1] * int(rng.integers(2, 4))
    elif kind == "small":
        counts = [1] * int(rng.integers(1, 3))
    elif kind == "offscreen":
        counts = [1] * (0 if rng.random() < 0.2 else int(rng.integers(1, 3)))
    else:
        raise ValueError(f"unknown clip kind {kind!r}")
    sounding = classes[: len(counts)]
    loud = float(rng.uniform(-24, -16))
    levels = {c: loud + (0.0 if i == 0 else float(rng.uniform(-5, 0))) for i, c in enumerate(sounding)}
    if kind == "weak":
        levels[sounding[1]] = loud - float(rng.uniform(10.5, 19.5))
    offscreen: list[int] = []
    if kind == "offscreen":
        visible_alikes = {CLASS_NAMES.index(p) for c in sounding if (p := partner(_name(c), SOUND_ALIKE))}
        pool = [c for c in classes[len(counts) :] if c not in visible_alikes]
        offscreen = [int(pool[0])]
        levels[offscreen[0]] = loud + float(rng.uniform(-6, 0))
    instances = []
    for i, (c, n) in enumerate(zip(sounding, counts)):
        # a small (distant) sounding object stays under SMALL_AREA of the frame
        area = float(rng.uniform(0.005, 0.015)) if kind == "small" and i == 0 else None
        instances += [make_instance(c, "sounding", size, rng, area) for _ in range(n)]
    n_distractors = 0
    if rng.random() < DISTRACTOR_P:
        n_distractors = int(rng.integers(1, 3))
    n_distractors = min(n_distractors, MAX_OBJECTS - len(instances))
    excluded = set(offscreen)
    for _ in range(n_distractors):
        c = _pick_distractor(rng, list(levels), excluded)
        excluded.add(c)
        instances.append(make_instance(c, "distractor", size, rng))
    order = rng.permutation(len(instances))  # depth order, back to front
    instances = [instances[i] for i in order]
    return Plan(instances, levels, offscreen, float(rng.uniform(10, 30)))


def render_frames(plan: Plan, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frames uint8 [5, S, S, 3], semantic uint8 [5, S, S], instance ids uint8 [5, S, S] (0 = none)."""
    background = make_background(rng, size)
    noise = sensor_noise(rng, size, float(rng.uniform(0, 4)))
    gains = rng.uniform(0.92, 1.08, FRAMES)
    shifts = rng.integers(0, size, (FRAMES, 2))
    frames = np.empty((FRAMES, size, size, 3), np.uint8)
    semantic = np.zeros((FRAMES, size, size), np.uint8)
    instance_ids = np.zeros((FRAMES, size, size), np.uint8)
    for i in range(FRAMES):
        t = i + 0.5
        image = background.view(t, size)
        for k, inst in enumerate(plan.instances):
            x, y, angle = inst.pose(t, size)
            paint(image, semantic[i], instance_ids[i], inst.look, inst.radius, angle, x, y, inst.class_id, k + 1)
        frames[i] = finish_frame(image, noise, (int(shifts[i, 0]), int(shifts[i, 1])), float(gains[i]))
    return frames, semantic, instance_ids


def mix_audio(plan: Plan, visible_count: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict[int, float], float]:
    """float32 [80000] mix, measured level (dB FS) per class in the mix, noise level (dB FS)."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    sources = {}
    for c in sorted(plan.levels):
        voices = max(visible_count.get(c, 0), 1)  # every visible instance makes its own variation
        signal = sum(make_voice(spec_of(c).sound, rng).render(0, n).astype(np.float64) for _ in range(voices))
        signal = signal / (np.sqrt(np.mean(signal**2)) + 1e-12)
        sources[c] = signal * 10 ** (plan.levels[c] / 20)
    total = sum(sources.values()) if sources else np.zeros(n)
    noise = make_background_noise(rng).render(0, n).astype(np.float64)
    signal_db = rms_db(total) if sources else -60.0
    noise = noise * 10 ** ((signal_db - plan.snr_db) / 20)
    mix = total + noise
    peak = float(np.max(np.abs(mix)))
    gain = min(1.0, 0.9 / peak) if peak > 0 else 1.0
    levels = {c: rms_db(s * gain) for c, s in sources.items()}
    return (mix * gain).astype(np.float32), levels, rms_db(noise * gain)


def compute_tags(sounding: list[int], offscreen: list[int], levels: dict[int, float], semantic: np.ndarray, instance_counts: dict[int, int]) -> list[str]:
    """The subset tags a rendered clip earns (a clip may carry several)."""
    tags = []
    if len(sounding) == 1:
        tags.append("single")
    if 2 <= len(sounding) <= 3:
        tags.append("multi")
    if any(instance_counts.get(c, 0) >= 2 for c in sounding):
        tags.append("multi-instance")
    if any(10.0 <= levels[a] - levels[b] <= 20.0 for a in sounding for b in sounding if a != b):
        tags.append("weak")
    area = semantic.shape[1] * semantic.shape[2]
    for c in sounding:
        shares = (semantic == c).reshape(FRAMES, -1).sum(axis=1) / area
        if shares.max() > 0 and shares.max() < SMALL_AREA:
            tags.append("small")
            break
    if offscreen:
        tags.append("offscreen")
    return tags


def generate_clip(seed: int, index: int, size: int = 224, kinds: dict[str, float] | None = None) -> Clip:
    """Make clip `index` of the dataset drawn with `seed`; `kinds` weights the clip kinds."""
    weights = kinds or DEFAULT_MIX
    names = sorted(weights)
    probs = np.array([weights[k] for k in names], np.float64)
    rng = clip_rng(seed, index)
    kind = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    for _attempt in range(_ATTEMPTS):
        plan = plan_clip(kind, size, rng)
        frames, semantic, instance_ids = render_frames(plan, size, rng)
        present = set(np.unique(instance_ids).tolist()) - {0}
        visible_instances = [plan.instances[k - 1] for k in sorted(present)]
        instance_counts: dict[int, int] = {}
        for inst in visible_instances:
            instance_counts[inst.class_id] = instance_counts.get(inst.class_id, 0) + 1
        visible = sorted(instance_counts)
        sounding = [c for c in sorted(plan.levels) if c in instance_counts]
        offscreen = [c for c in sorted(plan.levels) if c not in instance_counts]
        planned_distractor = any(inst.role == "distractor" for inst in plan.instances)
        silent = [c for c in visible if c not in plan.levels]
        # planned levels decide the weak tag here; measured levels differ by one common gain
        tags = compute_tags(sounding, offscreen, plan.levels, semantic, instance_counts)
        if kind in tags and (silent or not planned_distractor):
            break
    audio, levels, noise_db = mix_audio(plan, instance_counts, rng)
    masks = np.isin(semantic, np.array(sounding, np.uint8)).astype(np.uint8) if sounding else np.zeros_like(semantic)
    area = float(size * size)
    meta = {
        "uid": clip_uid(seed, index),
        "seed": int(seed),
        "index": int(index),
        "size": int(size),
        "kind": kind,
        "tags": tags,
        "frame_times": [i + 0.5 for i in range(FRAMES)],
        "sample_rate": SAMPLE_RATE,
        "visible_classes": [_name(c) for c in visible],
        "sounding_classes": [{"name": _name(c), "id": c, "level_db": round(levels[c], 3)} for c in sounding],
        "offscreen_classes": [{"name": _name(c), "id": c, "level_db": round(levels[c], 3)} for c in offscreen],
        "silent_classes": [_name(c) for c in silent],
        "noise_snr_db": round(plan.snr_db, 3),
        "noise_level_db": round(noise_db, 3),
        "instances": [
            {
                "class": _name(inst.class_id),
                "id": inst.class_id,
                "sounding": inst.class_id in plan.levels,
                "radius_px": round(inst.radius, 2),
                "depth": k,
                "visible_area": [round(float((instance_ids[i] == k + 1).sum()) / area, 5) for i in range(FRAMES)],
            }
            for k, inst in enumerate(plan.instances)
        ],
    }
    return Clip(frames, semantic, masks, audio, meta)


def clip_uid(seed: int, index: int) -> str:
    return f"s{seed}-{index:06d}"
