"""A continuous SynthAVS scene for the live demo: frames, audio and ground truth, step by step.

Objects of the SynthAVS classes enter from the edges, cross the picture and leave; classes start
and stop sounding (events every couple of seconds), sometimes while off-screen. The timeline is
generated lazily, in time order, from its own random stream, and the audio is a pure function of
absolute sample index, so the scene does not depend on how it is stepped: two scenes with the
same seed and different frame rates play the same audio and show the same objects at equal times.

Ground truth at frame time t follows the dataset's labelling rule: every visible pixel of a class
that is sounding at t is in the mask; visible classes that are not sounding are silent.
Real-time pacing is the capture source's job; `step()` just advances one frame period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ddavs_rt.synth.audio import Voice, make_background_noise, make_voice
from ddavs_rt.synth.classes import CLASS_NAMES, LOOK_ALIKE, NUM_CLASSES, partner, spec_of
from ddavs_rt.synth.render import Look, draw_look, make_background, paint, radius_for_area

_RAMP = 0.02  # seconds of fade at each end of a sounding interval
_MAX_OBJECTS = 4
_MAX_SOUNDING = 3
_NOISE_FRAMES = 4


@dataclass
class LiveStep:
    """One frame period of the live scene (all arrays are fresh copies)."""

    index: int
    time: float  # frame time on the scene clock, seconds
    image: np.ndarray  # uint8 [S, S, 3] RGB
    mask: np.ndarray  # uint8 [S, S] {0, 1}: visible pixels of sounding classes
    semantic: np.ndarray  # uint8 [S, S] class ids of every visible object
    sounding: list[str]  # classes in the audio at `time` (visible or off-screen)
    audio: np.ndarray  # float32 samples covering (previous frame time, time]
    visible: list[str] = field(default_factory=list)  # classes with visible pixels


@dataclass
class _Object:
    class_id: int
    look: Look
    radius: float
    t_enter: float
    t_exit: float
    x0: float  # position at t_enter
    y0: float
    vx: float
    vy: float
    angle0: float
    spin: float

    def pose(self, t: float) -> tuple[float, float, float]:
        dt = t - self.t_enter
        return self.x0 + self.vx * dt, self.y0 + self.vy * dt, self.angle0 + self.spin * dt

    def alive(self, t: float) -> bool:
        return self.t_enter <= t < self.t_exit


class LiveScene:
    """`LiveScene(seed).step()` -> `LiveStep`, one frame period at a time."""

    def __init__(self, seed: int, fps: float = 25.0, size: int = 224, sample_rate: int = 16000) -> None:
        if fps <= 0 or size < 16 or sample_rate <= 0:
            raise ValueError(f"LiveScene needs fps > 0, size >= 16, sample_rate > 0 (got {fps}, {size}, {sample_rate})")
        self.seed = int(seed)
        self.fps = float(fps)
        self.size = int(size)
        self.sample_rate = int(sample_rate)
        self._events = np.random.default_rng(np.random.SeedSequence([self.seed, 1]))
        look_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        self._background = make_background(look_rng, self.size)
        self._noise_frames = (look_rng.standard_normal((_NOISE_FRAMES, self.size, self.size, 3), dtype=np.float32) * 2.0)
        self._room = make_background_noise(np.random.default_rng(np.random.SeedSequence([self.seed, 3])), self.sample_rate)
        self._room_gain = 10 ** (float(look_rng.uniform(-52, -42)) / 20)
        self._objects: list[_Object] = []
        self._intervals: dict[int, list[tuple[float, float]]] = {}  # class id -> [(on, off)]
        self._voices: dict[int, tuple[Voice, float]] = {}  # class id -> (voice, linear gain)
        self._spawned = 0
        self._horizon = 0.0  # the timeline is complete up to here
        self._index = 0
        self._start_scene()

    # ---------------------------------------------------------------- timeline
    def _object_rng(self) -> np.random.Generator:
        self._spawned += 1
        return np.random.default_rng(np.random.SeedSequence([self.seed, 4, self._spawned]))

    def _voice(self, class_id: int) -> tuple[Voice, float]:
        if class_id not in self._voices:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 5, class_id]))
            voice = make_voice(spec_of(class_id).sound, rng, self.sample_rate)
            self._voices[class_id] = (voice, 10 ** (float(rng.uniform(-26, -16)) / 20))
        return self._voices[class_id]

    def _new_object(self, class_id: int, t: float, inside: bool) -> _Object:
        rng = self._object_rng()
        spec = spec_of(class_id)
        s = self.size
        radius = radius_for_area(spec.appearance.shape, float(rng.uniform(*spec.appearance.area)) * s * s)
        speed = float(rng.uniform(12, 35)) * s / 224
        if inside:
            x0, y0 = float(rng.uniform(radius, s - radius)), float(rng.uniform(radius, s - radius))
            heading = float(rng.uniform(0, 2 * math.pi))
        else:  # enter from a random edge, heading roughly across the picture
            edge = int(rng.integers(0, 4))
            along = float(rng.uniform(0.2 * s, 0.8 * s))
            x0, y0 = [(-radius, along), (s + radius, along), (along, -radius), (along, s + radius)][edge]
            heading = math.atan2(s / 2 - y0, s / 2 - x0) + float(rng.uniform(-0.6, 0.6))
        vx, vy = speed * math.cos(heading), speed * math.sin(heading)
        exits = []
        for p, v in ((x0, vx), (y0, vy)):
            if abs(v) > 1e-9:
                bound = (s + radius + 2) if v > 0 else -(radius + 2)
                exits.append((bound - p) / v)
        t_exit = t + (min(exits) if exits else 60.0)
        return _Object(class_id, draw_look(spec.appearance, rng), radius, t, t_exit, x0, y0, vx, vy,
                       float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.5, 0.5)))

    def _alive(self, t: float) -> list[_Object]:
        return [o for o in self._objects if o.alive(t)]

    def _sounding_ids(self, t: float) -> list[int]:
        return sorted(c for c, spans in self._intervals.items() if any(on <= t < off for on, off in spans))

    def _start_sound(self, class_id: int, t: float, duration: float) -> None:
        self._voice(class_id)
        self._intervals.setdefault(class_id, []).append((t, t + duration))

    def _start_scene(self) -> None:
        rng = self._events
        first = [int(c) for c in rng.choice(np.arange(1, NUM_CLASSES + 1), size=int(rng.integers(2, 4)), replace=False)]
        for c in first:
            self._objects.append(self._new_object(c, 0.0, inside=True))
        self._start_sound(first[0], 0.0, float(rng.uniform(3, 7)))

    def _event(self, t: float) -> None:
        rng = self._events
        alive = self._alive(t)
        visible = sorted({o.class_id for o in alive})
        sounding = self._sounding_ids(t)
        roll = rng.random()
        if roll < 0.4 and len(alive) < _MAX_OBJECTS:
            candidates = [int(c) for c in range(1, NUM_CLASSES + 1) if c not in visible]
            look_alikes = [CLASS_NAMES.index(p) for c in sounding if (p := partner(CLASS_NAMES[c], LOOK_ALIKE))]
            look_alikes = [c for c in look_alikes if c not in visible]
            pool = look_alikes if look_alikes and rng.random() < 0.35 else candidates
            self._objects.append(self._new_object(int(rng.choice(pool)), t, inside=False))
        elif len(sounding) < _MAX_SOUNDING:
            quiet_visible = [c for c in visible if c not in sounding]
            if quiet_visible and rng.random() < 0.85:
                c = int(rng.choice(quiet_visible))
            else:  # an off-screen sound
                pool = [c for c in range(1, NUM_CLASSES + 1) if c not in visible and c not in sounding]
                c = int(rng.choice(pool))
            self._start_sound(c, t, float(rng.uniform(2, 7)))
        self._objects = [o for o in self._objects if o.t_exit > t - 1.0]

    def _extend(self, until: float) -> None:
        while self._horizon < until:
            self._horizon += float(self._events.uniform(0.8, 3.0))
            self._event(self._horizon)

    # ---------------------------------------------------------------- queries
    def sounding_at(self, t: float) -> list[str]:
        """Classes in the audio at time t (visible or not)."""
        self._extend(t + 1.0)
        return [CLASS_NAMES[c] for c in self._sounding_ids(t)]

    def audio(self, start: int, n: int) -> np.ndarray:
        """float32 [n]: samples [start, start + n) of the scene's soundtrack."""
        self._extend((start + n) / self.sample_rate + 1.0)
        t = (start + np.arange(n)) / self.sample_rate  # [n] seconds
        out = self._room.render(start, n).astype(np.float64) * self._room_gain
        for c, spans in self._intervals.items():
            gate = np.zeros(n)
            for on, off in spans:
                if off > t[0] and on <= t[-1]:
                    gate = np.maximum(gate, np.clip((t - on) / _RAMP, 0, 1) * np.clip((off - t) / _RAMP, 0, 1))
            if gate.any():
                voice, gain = self._voice(c)
                out += gate * gain * voice.render(start, n)
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """image uint8 [S, S, 3] and semantic uint8 [S, S] of the picture at time t."""
        self._extend(t + 1.0)
        image = self._background.view(t, self.size)
        semantic = np.zeros((self.size, self.size), np.uint8)
        ids = np.zeros_like(semantic)
        for k, obj in enumerate(o for o in self._objects if o.alive(t)):
            x, y, angle = obj.pose(t)
            paint(image, semantic, ids, obj.look, obj.radius, angle, x, y, obj.class_id, (k % 255) + 1)
        image += self._noise_frames[self._index % _NOISE_FRAMES]
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), semantic

    # ---------------------------------------------------------------- stepping
    def step(self) -> LiveStep:
        """Advance one frame period and return that frame, its audio and its ground truth."""
        k = self._index
        t = (k + 1) / self.fps
        start = int(round(k * self.sample_rate / self.fps))
        stop = int(round((k + 1) * self.sample_rate / self.fps))
        audio = self.audio(start, stop - start)
        image, semantic = self.render(t)
        sounding_ids = self._sounding_ids(t)
        mask = np.isin(semantic, np.array(sounding_ids, np.uint8)).astype(np.uint8) if sounding_ids else np.zeros_like(semantic)
        visible = [CLASS_NAMES[c] for c in np.unique(semantic).tolist() if c != 0]
        self._index += 1
        return LiveStep(k, t, image, mask, semantic, [CLASS_NAMES[c] for c in sounding_ids], audio, visible)
