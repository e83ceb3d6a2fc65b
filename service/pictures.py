"""Encoded pictures of a verdict: mask and 16-bit heatmap PNGs, the overlay JPEG, the
model's cleaned image.

``cv2.imencode`` (fast, and 16-bit PNG capable). Only what a client asked for is encoded.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from .errors import PictureTooLarge

PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
# heatmaps are smooth: run-length coding after the UP filter is faster than deflate's default
# strategy for slightly larger files (benchmarks/HISTORY.md)
PNG_HEATMAP = PNG_FAST + [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
JPEG_QUALITY = [cv2.IMWRITE_JPEG_QUALITY, 90]
THUMB_SIDE = 192  # the operator page's Live cards are 180-240 CSS pixels wide


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    """``image`` encoded as ``ext``.

    Raises:
        PictureTooLarge: the encoder refused the image; with sides up to KENSA_MAX_SIDE (at
            most 65,500, the JPEG encoder's limit) it does not, but a 500 must never be the
            answer if it does.
    """
    try:
        ok, buf = cv2.imencode(ext, image, params or [])
    except cv2.error:
        ok = False
    if not ok:
        h, w = image.shape[:2]
        raise PictureTooLarge(
            f"the {w}x{h} picture could not be encoded as {ext.lstrip('.').upper()} (JPEG sides "
            "stop at 65,500 pixels): leave it out of include, or send a smaller image")
    return buf.tobytes()


def heat(anomaly_map: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """``s / (2 t)`` clipped to ``[0, 1]``: 0.5 sits at the pixel threshold.

    Args:
        anomaly_map: ``float32 (H, W)`` pixel anomaly scores.
        pixel_threshold: the threshold ``t`` that made the mask.

    Returns:
        ``float64 (H, W)``.
    """
    t = max(float(pixel_threshold), 1e-12)
    return np.clip(anomaly_map.astype(np.float64) / (2.0 * t), 0.0, 1.0)


def heatmap_u16(anomaly_map: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """``round(65535 * min(1, s / (2 t)))`` as ``uint16 (H, W)`` (32768 at the threshold)."""
    return np.rint(65535.0 * heat(anomaly_map, pixel_threshold)).astype(np.uint16)


def heatmap_png(anomaly_map: np.ndarray, pixel_threshold: float) -> bytes:
    """16-bit grayscale PNG of :func:`heatmap_u16`."""
    return encode(".png", heatmap_u16(anomaly_map, pixel_threshold), PNG_HEATMAP)


def mask_png(mask: np.ndarray) -> bytes:
    """8-bit PNG, 255 on defect pixels and 0 elsewhere, ``(H, W)`` of the upload."""
    return encode(".png", mask.astype(np.uint8) * 255, PNG_FAST)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Kensa image ``float32 (H, W, C)`` in ``[0, 1]`` to ``uint8 (H, W, 3)`` BGR for cv2:
    ``255 x``, rounded and clipped to ``[0, 255]``, in C (numpy's clip was most of a
    thumbnail's drawing: benchmarks/HISTORY.md)."""
    channels = image.shape[2]
    u8 = cv2.convertScaleAbs(np.maximum(image[..., :min(channels, 3)], np.float32(0)),
                             alpha=255.0)
    if channels == 1:
        return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)


def reconstruction_png(image: np.ndarray) -> bytes:
    """8-bit PNG (gray or RGB) of the model's cleaned image ``float32 (H, W, C)``."""
    u8 = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if u8.shape[2] == 1:
        return encode(".png", u8[..., 0], PNG_FAST)
    return encode(".png", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), PNG_FAST)


def overlay_image(image: np.ndarray, anomaly_map: np.ndarray, pixel_threshold: float,
                  mask: np.ndarray) -> np.ndarray:
    """The upload with the heatmap blended in colour and defect contours drawn in red.

    Returns:
        ``uint8 (H, W, 3)`` BGR; the colour weight grows with the anomaly score, so normal
        areas keep their look and defects glow.
    """
    base = to_bgr8(image)
    strength = heat(anomaly_map, pixel_threshold)
    colour = cv2.applyColorMap((strength * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (0.2 + 0.5 * strength).astype(np.float32)
    # base * (1 - alpha) + colour * alpha, rounded; in C (numpy's float64 blend was slower)
    out = cv2.blendLinear(base, colour, 1.0 - alpha, alpha)
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(max(mask.shape) / 300))
        cv2.drawContours(out, contours, -1, (0, 0, 255), thickness)
    return out


def overlay_jpeg(image: np.ndarray, anomaly_map: np.ndarray, pixel_threshold: float,
                 mask: np.ndarray) -> bytes:
    """JPEG of :func:`overlay_image`."""
    return encode(".jpg", overlay_image(image, anomaly_map, pixel_threshold, mask),
                  JPEG_QUALITY)


def overlay_thumb_jpeg(image: np.ndarray, anomaly_map: np.ndarray, pixel_threshold: float,
                       mask: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """JPEG of :func:`overlay_image` at most ``side`` pixels on its longer side (never
    enlarged). The image, map and mask are shrunk first and the overlay drawn at that size,
    so a large upload's thumbnail costs little; a mask pixel that covers any part of a
    thumbnail pixel marks it, so small defects keep their contour."""
    h, w = mask.shape[:2]
    scale = side / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image = small.reshape(size[1], size[0], image.shape[2])  # cv2 drops a channel of 1
        anomaly_map = cv2.resize(anomaly_map.astype(np.float32), size,
                                 interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    return overlay_jpeg(image, anomaly_map, pixel_threshold, mask)


def requested(include: frozenset[str], image: np.ndarray, result) -> dict[str, str]:
    """The pictures named in ``include``, base64-encoded, keyed by their answer field.

    Args:
        include: any of ``mask``, ``heatmap``, ``overlay``, ``reconstruction``.
        image: the decoded upload ``float32 (H, W, C)`` (for the overlay).
        result: the inspector's :class:`models.results.Result` on it.
    """
    pictures = {}
    if "mask" in include:
        pictures["mask"] = b64(mask_png(result.mask))
    if "heatmap" in include:
        pictures["heatmap"] = b64(heatmap_png(result.anomaly_map, result.pixel_threshold))
    if "overlay" in include:
        pictures["overlay"] = b64(overlay_jpeg(image, result.anomaly_map,
                                               result.pixel_threshold, result.mask))
    if "reconstruction" in include and result.reconstruction_image is not None:
        pictures["reconstruction_image"] = b64(reconstruction_png(result.reconstruction_image))
    return pictures
