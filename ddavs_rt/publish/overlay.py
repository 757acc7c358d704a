"""The overlay: a frame with its mask blended in, JPEG-encoded for the message's 4th part.

Each class id gets a fixed colour (`class_colour`); the masked pixels are blended with it at
`alpha`, and the outline of each class region is drawn in the full colour on the region's own
border pixels (a 1-pixel contour lies inside the mask, so only masked pixels change; a thicker
one spreads outward by thickness - 1). Pixels outside the mask and its contour are untouched.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

# Distinct, saturated colours for the first ids (RGB); later ids walk the hue circle.
_BASE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (255, 64, 64),
    (64, 200, 255),
    (255, 200, 0),
    (120, 255, 80),
    (200, 90, 255),
    (255, 128, 0),
    (0, 255, 200),
    (255, 90, 180),
)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A fixed RGB colour for a class id (0 is background: black, never drawn)."""
    if class_id < len(_BASE_PALETTE):
        return _BASE_PALETTE[class_id]
    hue = (class_id * 0.618033988749895) % 1.0  # golden-ratio steps keep neighbours apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def render_overlay(
    image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, contour_thickness: int = 1
) -> np.ndarray:
    """Blend mask (uint8 [h, w] class ids, 0 = none) into image (uint8 RGB [H, W, 3]).

    A mask of another size is resized to the image (nearest neighbour). Returns a new image.
    `contour_thickness` 0 draws no contour.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = image.shape[:2]
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    out = image.copy()
    present = np.flatnonzero(np.bincount(mask.ravel())[1:]) + 1  # the class ids drawn (not background)
    for class_id in present:
        region_u8 = (mask == class_id).view(np.uint8)  # [H, W] {0, 1}
        # blend inside the region's bounding box only: the same pixels, a third less CPU per frame
        x, y, w, h = cv2.boundingRect(region_u8)
        region = region_u8[y : y + h, x : x + w].view(bool)
        box = out[y : y + h, x : x + w]  # a view into `out`
        colour = np.array(class_colour(int(class_id)), dtype=np.float32)
        blended = box[region].astype(np.float32) * (1.0 - alpha) + colour * alpha  # [n, 3]
        box[region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        if contour_thickness > 0:
            contours, _ = cv2.findContours(region_u8, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), contour_thickness)
    return out


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an RGB uint8 [H, W, 3] image."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 [H, W, 3] of JPEG bytes."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
