"""The SynthAVS class table: what each object class looks like and how it sounds.

Class ids are 1..C in the order of `CLASSES` (0 is background). Each class has an `Appearance`
(shape, RGB colour, texture, area range as a fraction of the frame) and a `SoundSpec`
(a synthesis recipe with parameter ranges; every instance draws its own values).

Deliberate confusions, the cases DDAVS is about:
- look-alike pairs share shape and colour and differ only by texture or size, so only the audio
  tells which one is sounding;
- sound-alike pairs share a sound family with overlapping parameters but look different, so a
  model must not take "a violin-like sound" to mean "any violin-like object".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "ellipse", "hexagon", "diamond")
TEXTURES = ("solid", "stripes", "dots", "checker", "gradient")
SOUND_KINDS = ("harmonic", "noise", "pulses", "fm", "chirps")


@dataclass(frozen=True)
class Appearance:
    shape: str
    colour: tuple[int, int, int]  # RGB
    texture: str
    area: tuple[float, float]  # min, max area of the whole shape as a fraction of the frame


@dataclass(frozen=True)
class SoundSpec:
    """A synthesis recipe; every (lo, hi) pair is a range an instance draws from uniformly.

    kind:
      harmonic  f0 in `freq`, `partials` harmonics shaped by a log-frequency Gaussian envelope
                centred at `centre` Hz (`width` octaves); vibrato depth `depth` (fraction of f0)
                at `rate` Hz; `bursts` > 0 gates it into bursts per second (barks, strikes).
      noise     band-limited noise between the two ends of `freq`, amplitude-modulated at
                `rate` Hz with depth `depth`.
      pulses    decaying resonant clicks at `rate` per second, resonance in `freq`, decay
                `decay` seconds; `partials` > 1 makes each click a burst of that many clicks.
      fm        a tone (plus `partials` - 1 harmonics) whose frequency swings around `freq` by
                `depth` (fraction) at `rate` Hz.
      chirps    exponential sweeps from freq[0]-ish to freq[1]-ish, `rate` sweeps per second,
                each covering `duty` of its period.
    """

    kind: str
    freq: tuple[float, float]
    rate: tuple[float, float] = (0.0, 0.0)
    depth: tuple[float, float] = (0.0, 0.0)
    partials: int = 1
    centre: float = 1000.0
    width: float = 1.0
    bursts: tuple[float, float] = (0.0, 0.0)
    decay: tuple[float, float] = (0.05, 0.05)
    duty: float = 0.5


@dataclass(frozen=True)
class ClassSpec:
    name: str
    appearance: Appearance
    sound: SoundSpec


CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("bell", Appearance("circle", (222, 180, 40), "solid", (0.032, 0.055)),
              SoundSpec("harmonic", (650, 950), partials=6, centre=2200, width=1.2,
                        bursts=(1.5, 2.5), depth=(0.0, 0.004), rate=(4, 6))),
    ClassSpec("drum", Appearance("circle", (222, 180, 40), "checker", (0.032, 0.055)),
              SoundSpec("pulses", (70, 160), rate=(2.5, 4.5), decay=(0.08, 0.14))),
    ClassSpec("siren", Appearance("triangle", (210, 40, 40), "solid", (0.032, 0.055)),
              SoundSpec("fm", (800, 1100), rate=(0.8, 1.6), depth=(0.25, 0.35), partials=3)),
    ClassSpec("whistle", Appearance("triangle", (210, 40, 40), "stripes", (0.032, 0.055)),
              SoundSpec("fm", (2300, 3200), rate=(5, 8), depth=(0.02, 0.04), partials=1)),
    ClassSpec("engine", Appearance("square", (70, 110, 170), "solid", (0.065, 0.09)),
              SoundSpec("harmonic", (45, 85), partials=12, centre=250, width=1.5,
                        rate=(8, 14), depth=(0.01, 0.02))),
    ClassSpec("fan", Appearance("square", (70, 110, 170), "solid", (0.022, 0.03)),
              SoundSpec("noise", (350, 1400), rate=(18, 30), depth=(0.4, 0.7))),
    ClassSpec("bird", Appearance("star", (50, 170, 70), "solid", (0.032, 0.055)),
              SoundSpec("chirps", (2800, 5200), rate=(3, 6), duty=0.45)),
    ClassSpec("cricket", Appearance("star", (50, 170, 70), "dots", (0.032, 0.055)),
              SoundSpec("pulses", (4800, 6400), rate=(14, 22), decay=(0.008, 0.014), partials=1)),
    ClassSpec("violin", Appearance("ellipse", (130, 60, 170), "stripes", (0.032, 0.055)),
              SoundSpec("harmonic", (330, 660), partials=10, centre=1500, width=1.3,
                        rate=(5, 6.5), depth=(0.006, 0.012))),
    ClassSpec("trumpet", Appearance("hexagon", (235, 130, 30), "solid", (0.032, 0.055)),
              SoundSpec("harmonic", (300, 620), partials=10, centre=1400, width=1.3,
                        rate=(4, 6), depth=(0.002, 0.006))),
    ClassSpec("rain", Appearance("ring", (40, 190, 200), "solid", (0.032, 0.055)),
              SoundSpec("noise", (2400, 7200), rate=(0.3, 0.8), depth=(0.1, 0.25))),
    ClassSpec("tap", Appearance("cross", (225, 225, 225), "gradient", (0.032, 0.055)),
              SoundSpec("noise", (2100, 6600), rate=(0.5, 1.2), depth=(0.1, 0.25))),
    ClassSpec("clock", Appearance("hexagon", (120, 75, 40), "checker", (0.032, 0.055)),
              SoundSpec("pulses", (1500, 2400), rate=(2.0, 3.0), decay=(0.010, 0.018))),
    ClassSpec("metronome", Appearance("square", (200, 60, 160), "dots", (0.032, 0.055)),
              SoundSpec("pulses", (1400, 2600), rate=(2.0, 3.2), decay=(0.012, 0.020))),
    ClassSpec("dog", Appearance("diamond", (185, 150, 105), "solid", (0.032, 0.055)),
              SoundSpec("harmonic", (380, 600), partials=8, centre=900, width=0.9,
                        bursts=(1.5, 3.0), rate=(0, 0), depth=(0, 0))),
    ClassSpec("bee", Appearance("ellipse", (235, 215, 50), "stripes", (0.022, 0.03)),
              SoundSpec("fm", (190, 260), rate=(20, 35), depth=(0.03, 0.06), partials=8)),
)

# Pairs by class name. Look-alike: same shape and colour, different texture or size only.
LOOK_ALIKE: tuple[tuple[str, str], ...] = (
    ("bell", "drum"),  # texture
    ("siren", "whistle"),  # texture
    ("engine", "fan"),  # size
    ("bird", "cricket"),  # texture
)
# Sound-alike: same sound family with overlapping parameters, different appearance.
SOUND_ALIKE: tuple[tuple[str, str], ...] = (
    ("violin", "trumpet"),
    ("rain", "tap"),
    ("clock", "metronome"),
)

CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(spec.name for spec in CLASSES)
NUM_CLASSES = len(CLASSES)  # without background


def class_id(name: str) -> int:
    """The semantic id (1..C) of a class name."""
    return CLASS_NAMES.index(name)


def spec_of(class_index: int) -> ClassSpec:
    """The spec of semantic id `class_index` (1..C)."""
    return CLASSES[class_index - 1]


def partner(name: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    for a, b in pairs:
        if name == a:
            return b
        if name == b:
            return a
    return None


def class_table() -> dict:
    """The JSON-ready class table written to classes.json."""
    return {
        "classes": list(CLASS_NAMES),
        "look_alike": [list(pair) for pair in LOOK_ALIKE],
        "sound_alike": [list(pair) for pair in SOUND_ALIKE],
        "table": [
            {"id": i + 1, "name": spec.name, "appearance": asdict(spec.appearance), "sound": asdict(spec.sound)}
            for i, spec in enumerate(CLASSES)
        ],
    }


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (RGB): label bits spread over the high bits of R, G and B."""
    palette = []
    for label in range(n):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
            if value == 0:
                break
        palette.append((r, g, b))
    return palette
