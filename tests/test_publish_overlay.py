"""Overlay rendering: exactly the masked pixels change (plus the contour), in the class colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ddavs_rt.publish.overlay import class_colour, decode_jpeg, encode_jpeg, render_overlay


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 5:25] = 1
    cv2.circle(mask, (55, 35), 12, 2, -1)
    return image, mask


def test_only_masked_pixels_change_with_a_thin_contour() -> None:
    image, mask = _scene()
    out = render_overlay(image, mask, alpha=0.5, contour_thickness=1)
    changed = np.any(out != image, axis=2)
    assert not np.any(changed & (mask == 0)), "pixels outside the mask changed"
    assert np.all(changed[mask > 0]), "a masked pixel kept its value"
    # Inside, away from the border, each pixel is the alpha blend of the frame and its class colour.
    inner = cv2.erode((mask == 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    expected = np.rint(image[inner] * 0.5 + np.array(class_colour(1)) * 0.5)
    np.testing.assert_array_equal(out[inner], expected.astype(np.uint8))
    # The border pixels (a 4-neighbour outside the region) carry the full class colour.
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    border = (mask == 2) & ~(cv2.erode((mask == 2).astype(np.uint8), cross) > 0)
    assert np.all(out[border] == np.array(class_colour(2), np.uint8))


def test_thick_contour_spreads_only_next_to_the_mask() -> None:
    image, mask = _scene()
    out = render_overlay(image, mask, alpha=0.3, contour_thickness=3)
    changed = np.any(out != image, axis=2)
    near = cv2.dilate((mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert not np.any(changed & ~near)
    assert np.any(changed & (mask == 0))  # thickness 3 does reach outside


def test_no_contour_and_zero_alpha_leave_the_frame_unchanged() -> None:
    image, mask = _scene()
    np.testing.assert_array_equal(render_overlay(image, mask, alpha=0.0, contour_thickness=0), image)


def test_mask_of_model_resolution_is_resized_to_the_frame() -> None:
    image, mask = _scene()
    small = mask[::2, ::2].copy()  # [30, 40]
    out = render_overlay(image, small, contour_thickness=0)
    changed = np.any(out != image, axis=2)
    resized = cv2.resize(small, (80, 60), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(changed, resized > 0)


def test_jpeg_round_trip_and_quality() -> None:
    image, mask = _scene()
    out = render_overlay(image, mask)
    high, low = encode_jpeg(out, quality=95), encode_jpeg(out, quality=20)
    assert high[:2] == b"\xff\xd8" and len(low) < len(high)
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[:, :, 0] = 220  # pure red stays red: RGB order survives
    back = decode_jpeg(encode_jpeg(smooth, quality=90))
    assert back[16, 16, 0] > 200 and back[16, 16, 2] < 30
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(out, quality=0)


def test_class_colours_are_fixed_and_distinct() -> None:
    colours = [class_colour(i) for i in range(1, 80)]
    assert class_colour(5) == class_colour(5)
    assert len(set(colours)) == len(colours)
