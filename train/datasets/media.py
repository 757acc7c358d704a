"""Reading the files of a dataset tree: images, masks, label maps and audio windows."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torchaudio.functional as AF
from PIL import Image

from ddavs_rt.errors import DataError

logger = logging.getLogger(__name__)

Size = tuple[int, int]  # (height, width)


def read_rgb(path: Path, size: Size | None) -> np.ndarray:
    """An image as uint8 [H, W, 3] RGB, resized bilinearly to `size` when given."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read image {path}: the file is missing or not an image; restore it")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _resize(image, size, cv2.INTER_LINEAR)


def read_gray(path: Path, size: Size | None) -> np.ndarray:
    """A single-channel PNG (binary mask or class ids) as uint8 [H, W], resized nearest."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"cannot read mask {path}: the file is missing or not an image; restore it")
    if image.ndim == 3:  # a grey image saved with colour channels: take the first
        image = image[..., 0]
    return _resize(image.astype(np.uint8), size, cv2.INTER_NEAREST)


def read_mask_pil_1(path: Path, size: Size | None) -> np.ndarray:
    """A mask binarised as PIL's `convert('1')` does (the official S4 loader): grey to 1-bit with
    Floyd-Steinberg error diffusion, so 0/255 masks keep their pixels and anti-aliased edges are
    decided at 128 with the error carried to the neighbours. uint8 {0, 1} [H, W], resized nearest."""
    try:
        with Image.open(path) as image:
            bits = np.asarray(image.convert("1"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}; restore it") from exc
    return _resize(bits, size, cv2.INTER_NEAREST)


def _open_rgb_pil(path: Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}; restore it") from exc


def pil_geometry(image: Image.Image, size: Size | None, crop: bool, nearest: bool) -> Image.Image:
    """The AVSBench-semantic geometry (avss/color_dataloader.py): `crop` scales the short side to
    the crop size (the long side truncated to int) and cuts the centre (offsets rounded); otherwise
    the image is squashed to the size. PIL BILINEAR for images, NEAREST for label images."""
    if size is None:
        return image
    height, width = size
    resample = Image.NEAREST if nearest else Image.BILINEAR
    if not crop:
        return image.resize((width, height), resample)
    if height != width:
        raise DataError(f"the short-side crop needs a square size, got {height}x{width}")
    w, h = image.size
    if w > h:
        oh, ow = height, int(1.0 * w * height / h)
    else:
        ow, oh = height, int(1.0 * h * height / w)
    image = image.resize((ow, oh), resample)
    x1, y1 = int(round((ow - height) / 2.0)), int(round((oh - height) / 2.0))
    return image.crop((x1, y1, x1 + height, y1 + height))


def read_rgb_pil(path: Path, size: Size | None, crop: bool) -> np.ndarray:
    """An image read as the AVSBench-semantic loader reads it: PIL RGB, then `pil_geometry`."""
    return np.asarray(pil_geometry(_open_rgb_pil(path, "image"), size, crop, nearest=False), dtype=np.uint8)


def read_palette_labels_pil(path: Path, size: Size | None, crop: bool, num_classes: int) -> np.ndarray:
    """A colour label PNG as the AVSBench-semantic loader reads it: RGB, `pil_geometry` (nearest),
    then each pixel's colour looked up in the first `num_classes` palette colours (others: 0)."""
    rgb = np.asarray(pil_geometry(_open_rgb_pil(path, "label image"), size, crop, nearest=True), dtype=np.uint8)
    labels = palette_to_ids(rgb)
    return np.where(labels < num_classes, labels, 0).astype(np.uint8)


def palette_to_ids(rgb: np.ndarray) -> np.ndarray:
    """Class ids uint8 [H, W] of a VOC-palette RGB image [H, W, 3]; an unknown colour is 0."""
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    keys, ids = _PALETTE_LOOKUP
    where = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    return np.where(keys[where] == packed, ids[where], 0).astype(np.uint8)


def read_palette_labels(path: Path, size: Size | None) -> np.ndarray:
    """A colour label image (VOC palette, label 0 black) as class ids uint8 [H, W]."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read label image {path}: the file is missing or not an image; restore it")
    labels = palette_to_ids(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))  # unknown colour -> 0
    return _resize(labels, size, cv2.INTER_NEAREST)


def voc_palette(num_classes: int = 256) -> np.ndarray:
    """The VOC colour map, uint8 [num_classes, 3]: class bits spread over R, G, B high bits."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for label in range(num_classes):
        value, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def _palette_lookup() -> tuple[np.ndarray, np.ndarray]:
    palette = voc_palette().astype(np.int64)
    packed = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(packed)
    return packed[order], order.astype(np.int64)


_PALETTE_LOOKUP = _palette_lookup()


def resize_to(array: np.ndarray, size: Size, nearest: bool) -> np.ndarray:
    return _resize(array, size, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _resize(array: np.ndarray, size: Size | None, interpolation: int) -> np.ndarray:
    if size is None or tuple(array.shape[:2]) == tuple(size):
        return array
    height, width = size
    return cv2.resize(array, (width, height), interpolation=interpolation)


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode any audio file PyAV reads to float32 mono [S] at `sample_rate`."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError(f"{path} has no audio stream; replace it with the clip's audio")
            stream = container.streams.audio[0]
            source_rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=source_rate)
            chunks = []
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray().reshape(-1))
            for converted in resampler.resample(None):  # flush
                chunks.append(converted.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise DataError(f"cannot decode audio {path}: {exc}; replace the file") from exc
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    if source_rate != sample_rate and wave.size:
        wave = AF.resample(torch.from_numpy(wave), int(source_rate), int(sample_rate)).numpy()
    return wave


def audio_windows(wave: np.ndarray, sample_rate: int, num_windows: int, window_seconds: float = 1.0) -> np.ndarray:
    """Cut float32 [T, S] windows: window t covers [t, t + window_seconds) s; zero-padded."""
    length = int(round(sample_rate * window_seconds))
    hop = int(round(sample_rate * 1.0))  # one window per one-second frame
    out = np.zeros((num_windows, length), dtype=np.float32)
    for t in range(num_windows):
        piece = wave[t * hop : t * hop + length]
        out[t, : piece.size] = piece
    return out
