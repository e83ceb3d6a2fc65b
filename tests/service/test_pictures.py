"""service.pictures: the heatmap formula and the picture encodings."""

import cv2
import numpy as np
import pytest

from service import pictures


def test_heatmap_formula():
    t = 0.5
    s = np.array([[0.0, 0.25, 0.5, 0.999, 1.0, 7.0, -1.0]], np.float32)
    got = pictures.heatmap_u16(s, t)
    want = np.rint(65535 * np.clip(s.astype(np.float64) / (2 * t), 0, 1)).astype(np.uint16)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)
    assert got[0, 2] == 32768 and got[0, 4] == 65535 and got[0, 6] == 0


def test_heatmap_png_is_16_bit_at_the_map_size():
    amap = np.linspace(0, 1, 7 * 3, dtype=np.float32).reshape(3, 7)
    png = cv2.imdecode(np.frombuffer(pictures.heatmap_png(amap, 0.5), np.uint8),
                       cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (3, 7)
    np.testing.assert_array_equal(png, pictures.heatmap_u16(amap, 0.5))


def test_mask_png_is_0_or_255():
    mask = np.zeros((5, 9), bool)
    mask[1:3, 2:6] = True
    png = cv2.imdecode(np.frombuffer(pictures.mask_png(mask), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and png.shape == (5, 9)
    assert set(np.unique(png)) == {0, 255}
    np.testing.assert_array_equal(png == 255, mask)


@pytest.mark.parametrize("channels", [1, 3])
def test_overlay_and_reconstruction_keep_the_size(channels):
    rng = np.random.default_rng(0)
    image = rng.random((11, 40, channels), dtype=np.float32)
    amap = rng.random((11, 40), dtype=np.float32)
    jpeg = cv2.imdecode(np.frombuffer(pictures.overlay_jpeg(image, amap, 0.5, amap > 0.9),
                                      np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (11, 40, 3)
    rec = cv2.imdecode(np.frombuffer(pictures.reconstruction_png(image), np.uint8),
                       cv2.IMREAD_UNCHANGED)
    assert rec.shape[:2] == (11, 40)


def test_a_picture_the_encoder_refuses_is_a_typed_413_not_a_500():
    """OpenCV's JPEG stops at 65,500 pixels a side (it returned False, which was a
    RuntimeError and a 500); KENSA_MAX_SIDE keeps uploads below it, this keeps it a 413."""
    from service.errors import PictureTooLarge, status_of

    image = np.zeros((1, 70_000, 3), np.float32)
    amap, mask = np.zeros((1, 70_000), np.float32), np.zeros((1, 70_000), bool)
    with pytest.raises(PictureTooLarge) as err:
        pictures.overlay_jpeg(image, amap, 0.5, mask)
    assert status_of(err.value) == 413
    assert str(err.value) == ("the 70000x1 picture could not be encoded as JPG (JPEG sides stop "
                              "at 65,500 pixels): leave it out of include, or send a smaller "
                              "image")
    assert len(pictures.mask_png(mask)) > 0 and len(pictures.heatmap_png(amap, 0.5)) > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_an_overlay_thumbnail_is_shrunk_to_192_pixels_and_shows_a_thin_defect(channels):
    image = np.full((200, 300, channels), 0.5, np.float32)
    amap = np.zeros((200, 300), np.float32)
    mask = np.zeros((200, 300), bool)
    mask[101, 120:180] = True  # a scratch one pixel thin
    amap[mask] = 1.0
    thumb = cv2.imdecode(np.frombuffer(pictures.overlay_thumb_jpeg(image, amap, 0.5, mask),
                                       np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (128, 192, 3)
    redness = thumb[..., 2].astype(int) - thumb[..., :2].max(axis=2)
    assert redness[60:70, 75:120].max() > 120  # its red contour
    assert redness[:40].max() < 30  # nothing red far from it
