"""Drawing SynthAVS frames: textured backgrounds and textured shapes, with exact label maps.

Objects are painted back to front into an RGB image, a class-id map and an instance-id map at
the same time with the same hard-edged shape mask, so occlusion is exact: the label maps show
only what is visible. Every texture is computed in the object's own rotated coordinates, inside
its bounding box only (cheap at 224 x 224).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ddavs_rt.synth.classes import Appearance

_SHIFT = 4  # cv2 fixed-point bits for sub-pixel shape placement
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Look:
    """An instance's own appearance, drawn once from its class `Appearance`."""

    shape: str
    texture: str
    colour: np.ndarray  # float32 [3] RGB 0..255 after per-instance jitter
    period: float  # texture period as a fraction of the radius
    aspect: float  # minor / major axis for ellipse-like shapes


def draw_look(appearance: Appearance, rng: np.random.Generator) -> Look:
    colour = np.clip(np.array(appearance.colour, np.float32) * rng.uniform(0.88, 1.12) + rng.uniform(-10, 10, 3), 0, 255)
    return Look(
        shape=appearance.shape,
        texture=appearance.texture,
        colour=colour.astype(np.float32),
        period=float(rng.uniform(0.45, 0.6)),
        aspect=float(rng.uniform(0.55, 0.65)),
    )


# area of each shape of circumradius 1 (ellipse and diamond at their nominal aspect 0.6)
SHAPE_AREA = {
    "circle": math.pi,
    "ring": math.pi * (1 - 0.55**2),
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "hexagon": 3 * math.sqrt(3) / 2,
    "star": 5 * 0.45 * math.sin(math.pi / 5),
    "cross": 8 * 0.34 - 4 * 0.34**2,
    "ellipse": math.pi * 0.6,
    "diamond": 2 * 0.6,
}


def radius_for_area(shape: str, area_px: float) -> float:
    """The circumradius (pixels) that gives `shape` an area of `area_px` pixels."""
    return math.sqrt(area_px / SHAPE_AREA[shape])


def _polygon(shape: str, r: float, angle: float, aspect: float) -> np.ndarray:
    """Vertices [V, 2] (x, y) around the origin."""
    if shape == "square":
        radii, angles = [r] * 4, [angle + math.pi / 4 + k * math.pi / 2 for k in range(4)]
    elif shape == "triangle":
        radii, angles = [r] * 3, [angle - math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
    elif shape == "hexagon":
        radii, angles = [r] * 6, [angle + k * math.pi / 3 for k in range(6)]
    elif shape == "star":
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
        angles = [angle - math.pi / 2 + k * math.pi / 5 for k in range(10)]
    elif shape == "diamond":
        radii = [r, aspect * r, r, aspect * r]
        angles = [angle + k * math.pi / 2 for k in range(4)]
    elif shape == "cross":
        w = 0.34 * r
        local = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
        c, s = math.cos(angle), math.sin(angle)
        return np.array([(x * c - y * s, x * s + y * c) for x, y in local])
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    return np.array([(rad * math.cos(a), rad * math.sin(a)) for rad, a in zip(radii, angles)])


def shape_mask(shape: str, r: float, angle: float, aspect: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """uint8 [height, width] {0, 1}: the shape of radius r centred at (cx, cy) in box coordinates."""
    mask = np.zeros((height, width), np.uint8)
    centre = (int(round(cx * _ONE)), int(round(cy * _ONE)))
    if shape in ("circle", "ring"):
        cv2.circle(mask, centre, int(round(r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        if shape == "ring":
            cv2.circle(mask, centre, int(round(0.55 * r * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    elif shape == "ellipse":
        axes = (int(round(r * _ONE)), int(round(aspect * r * _ONE)))
        cv2.ellipse(mask, centre, axes, math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
    else:
        points = _polygon(shape, r, angle, aspect) + (cx, cy)
        cv2.fillPoly(mask, [np.round(points * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask


def texture_patch(look: Look, r: float, angle: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """float32 [height, width, 3] RGB: the instance's texture and shading in box coordinates."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(angle), math.sin(angle)
    u = (dx * c + dy * s) / r  # [h, w] object-local coordinates in radii
    v = (-dx * s + dy * c) / r
    shade = 1.0 - 0.22 * np.clip(u * u + v * v, 0.0, 1.5)  # soft radial lighting
    p = look.period
    if look.texture == "stripes":
        factor = np.where(np.sin(2 * math.pi * u / p) > 0, 1.0, 0.42)
    elif look.texture == "dots":
        gu = (u / p) % 1.0 - 0.5
        gv = (v / p) % 1.0 - 0.5
        factor = np.where(gu * gu + gv * gv < 0.09, 0.3, 1.0)
    elif look.texture == "checker":
        factor = np.where((np.floor(u / p) + np.floor(v / p)) % 2 == 0, 1.0, 0.42)
    elif look.texture == "gradient":
        factor = 0.35 + 0.65 * np.clip((u + 1.0) / 2.0, 0.0, 1.0)
    else:  # solid
        factor = np.ones_like(u)
    return (factor * shade)[..., None] * look.colour  # [h, w, 3]


def paint(
    image: np.ndarray,
    semantic: np.ndarray,
    instances: np.ndarray,
    look: Look,
    r: float,
    angle: float,
    x: float,
    y: float,
    class_id: int,
    instance_id: int,
) -> None:
    """Paint one object over `image` (float32 [H, W, 3]) and the two uint8 [H, W] label maps."""
    height, width = semantic.shape
    extent = r + 2.0
    x0, y0 = max(int(math.floor(x - extent)), 0), max(int(math.floor(y - extent)), 0)
    x1, y1 = min(int(math.ceil(x + extent)) + 1, width), min(int(math.ceil(y + extent)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    bh, bw = y1 - y0, x1 - x0
    mask = shape_mask(look.shape, r, angle, look.aspect, x - x0, y - y0, bh, bw).astype(bool)
    if not mask.any():
        return
    patch = texture_patch(look, r, angle, x - x0, y - y0, bh, bw)
    image[y0:y1, x0:x1][mask] = patch[mask]
    semantic[y0:y1, x0:x1][mask] = class_id
    instances[y0:y1, x0:x1][mask] = instance_id


@dataclass
class Background:
    """A textured backdrop larger than the frame; the camera pans across it."""

    canvas: np.ndarray  # float32 [S + 2 pad, S + 2 pad, 3]
    pad: int
    pan: tuple[float, float]  # pixels per second (x, y)

    def view(self, t: float, size: int) -> np.ndarray:
        """float32 [size, size, 3]: the part of the backdrop seen at time t (bounces at the edges)."""
        offsets = []
        for velocity in self.pan:
            travel = self.pad + velocity * t
            span = 2 * self.pad
            phase = travel % (2 * span) if span > 0 else 0.0
            offsets.append(int(round(phase if phase <= span else 2 * span - phase)))
        ox, oy = offsets
        return self.canvas[oy : oy + size, ox : ox + size].copy()


def make_background(rng: np.random.Generator, size: int) -> Background:
    pad = max(size // 8, 1)
    full = size + 2 * pad
    # two muted colours blended by a smooth random field
    grey = rng.uniform(50, 200)
    c1 = np.clip(grey + rng.uniform(-35, 35, 3), 0, 255).astype(np.float32)
    c2 = np.clip(grey * rng.uniform(0.6, 1.3) + rng.uniform(-35, 35, 3), 0, 255).astype(np.float32)
    cells = int(rng.integers(3, 8))
    field = cv2.resize(rng.random((cells, cells)).astype(np.float32), (full, full), interpolation=cv2.INTER_CUBIC)
    field = np.clip(field, 0.0, 1.0)[..., None]
    canvas = c1 * (1 - field) + c2 * field  # [full, full, 3]
    ys, xs = np.mgrid[0:full, 0:full].astype(np.float32)
    pattern = int(rng.integers(0, 5))
    theta = rng.uniform(0, math.pi)
    u = xs * math.cos(theta) + ys * math.sin(theta)
    contrast = rng.uniform(0.05, 0.18)
    if pattern == 1:  # stripes / planks
        period = rng.uniform(8, 30) * size / 224
        canvas *= (1 + contrast * np.sin(2 * math.pi * u / period))[..., None]
    elif pattern == 2:  # grid lines (tiles)
        period = int(rng.uniform(16, 48) * size / 224) or 4
        lines = ((xs.astype(np.int32) % period) < 2) | ((ys.astype(np.int32) % period) < 2)
        canvas *= np.where(lines, 1 - 2 * contrast, 1.0)[..., None]
    elif pattern == 3:  # fine speckle (gravel, carpet)
        canvas *= (1 + contrast * rng.standard_normal((full, full), dtype=np.float32))[..., None]
    elif pattern == 4:  # wood-like warped rings
        warp = cv2.resize(rng.random((4, 4)).astype(np.float32), (full, full), interpolation=cv2.INTER_CUBIC)
        canvas *= (1 + contrast * np.sin(u / (6 * size / 224) + 8 * warp))[..., None]
    speed = rng.uniform(0, 6) * size / 224
    heading = rng.uniform(0, 2 * math.pi)
    return Background(np.clip(canvas, 0, 255).astype(np.float32), pad, (speed * math.cos(heading), speed * math.sin(heading)))


def sensor_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """float32 [size, size, 3] Gaussian noise of std `sigma`; frames reuse it at shifted offsets."""
    return rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)


def finish_frame(image: np.ndarray, noise: np.ndarray | None, shift: tuple[int, int], gain: float) -> np.ndarray:
    """uint8 [H, W, 3]: exposure gain and (rolled) sensor noise applied to a float image."""
    out = image * np.float32(gain)
    if noise is not None:
        out += np.roll(noise, shift, axis=(0, 1))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
