"""The one image reader, on odd files; dataset layouts; labels files."""

import io

import numpy as np
import pytest
from PIL import Image

from models.data import ImageLimits, Item, decode_image, open_dataset, read_items, read_labels
from models.errors import DataError, ImageError, ImageTooLargeError, UnsupportedImageError


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt) if mode else \
        Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_gray_8bit_png():
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    img = decode_image(encode(arr))
    assert img.shape == (8, 8, 1) and img.dtype == np.float32
    assert img[0, 1, 0] == pytest.approx(4 / 255)


def test_16bit_png_keeps_its_depth():
    arr = np.full((5, 7), 40000, dtype=np.uint16)
    img = decode_image(encode(arr))
    assert img.shape == (5, 7, 1)
    assert img[0, 0, 0] == pytest.approx(40000 / 65535, abs=1e-6)


def test_rgba_drops_alpha_and_keeps_colour():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255
    arr[..., 3] = 10
    img = decode_image(encode(arr))
    assert img.shape == (4, 4, 3)
    assert img[0, 0].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "TIFF"])
def test_other_formats(fmt):
    arr = np.full((9, 11, 3), 128, np.uint8)
    img = decode_image(encode(arr, fmt))
    assert img.shape == (9, 11, 3)
    assert abs(float(img.mean()) - 128 / 255) < 0.02


def test_one_pixel_image():
    assert decode_image(encode(np.array([[200]], np.uint8))).shape == (1, 1, 1)


def test_truncated_file_is_an_image_error():
    data = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8),
                  "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_non_image_bytes():
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(b"hello, this is text")


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_pixel_limit_refuses_before_decoding():
    data = encode(np.zeros((100, 100), np.uint8))
    with pytest.raises(ImageTooLargeError, match="10,000 pixels, over the limit of 9,999"):
        decode_image(data, ImageLimits(max_pixels=9999))


def test_folder_without_images_names_folder_and_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        open_dataset(tmp_path)
    assert str(tmp_path) in str(err.value) and "PNG, JPEG, BMP or TIFF" in str(err.value)


def test_plain_folder_is_all_training_data(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(encode(np.zeros((4, 4), np.uint8)))
    ds = open_dataset(tmp_path)
    assert ds.layout == "folder" and len(ds.train) == 3 and ds.test == []


def test_mvtec_layout_pairs_masks(tmp_path):
    img = encode(np.zeros((4, 4), np.uint8))
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "train/good/a.png").write_bytes(img)
    (tmp_path / "test/good/b.png").write_bytes(img)
    (tmp_path / "test/crack/c.jpg").write_bytes(img)
    (tmp_path / "ground_truth/crack/c_mask.png").write_bytes(img)
    ds = open_dataset(tmp_path)
    crack = next(it for it in ds.test if it.defect == "crack")
    assert crack.mask_path == tmp_path / "ground_truth/crack/c_mask.png"
    assert ds.summary()["test_by_type"] == {"crack": 1, "good": 1}


def test_undecodable_file_is_skipped_and_counted(tmp_path, caplog):
    good = tmp_path / "a.png"
    good.write_bytes(encode(np.zeros((4, 4), np.uint8)))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png")
    images, _kept, skipped = read_items([Item(good), Item(bad)])
    assert len(images) == 1 and skipped == [str(bad)]
    assert "skipping" in caplog.text and str(bad) in caplog.text


def test_labels_file(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("path,label\ntest/crack/c.jpg,crack\nx.png,good\n")
    assert read_labels(f) == {"test/crack/c.jpg": "crack", "x.png": "good"}
    f.write_text("only-one-column\n")
    with pytest.raises(DataError, match="line 1"):
        read_labels(f)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
@pytest.mark.parametrize("orientation, turn", [(6, "cw"), (8, "ccw"), (3, "half")])
def test_exif_orientation_is_applied(fmt, orientation, turn):
    # a camera that stores the pixels sideways and says so in the EXIF tag: Kensa must see the
    # part the way a viewer shows it, or boxes land on the wrong pixels (Pillow's TIFF reader
    # turns TIFFs itself on load; JPEG and PNG are turned by models.data.upright)
    stored = np.zeros((20, 40), np.uint8)
    stored[:5, :10] = 255  # a bright block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format=fmt, exif=exif.tobytes())
    img = decode_image(buf.getvalue())[..., 0]
    shown = {"cw": np.rot90(stored, -1), "ccw": np.rot90(stored, 1),
             "half": np.rot90(stored, 2)}[turn]
    assert img.shape == shown.shape
    assert np.abs(img * 255 - shown).max() < 40  # JPEG ringing at the block's edge


def test_orientation_1_leaves_pixels_as_stored():
    stored = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    exif = Image.Exif()
    exif[0x0112] = 1
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif.tobytes())
    assert np.array_equal(decode_image(buf.getvalue())[..., 0] * 255, stored.astype(np.float32))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_formats_outside_the_four_are_refused_by_name(fmt):
    """GIF and WebP decoded for /v1/inspect and /v1/labels while `kensa train` skips their
    files: the one reader reads the four formats training lists, for everyone."""
    with pytest.raises(UnsupportedImageError, match=f"the image is a {fmt} file: Kensa reads "
                                                    "PNG, JPEG, BMP or TIFF"):
        decode_image(encode(np.full((16, 16, 3), 99, np.uint8), fmt))


@pytest.mark.parametrize(("dtype", "kind"), [(np.float32, "floating-point"),
                                             (np.int32, "32-bit integer")])
def test_32_bit_tiffs_are_refused_with_the_reason(dtype, kind):
    """A float TIFF was divided by its own maximum (each image on its own scale), a 32-bit
    integer one by 65535 and clipped: no value range is agreed for them, so none is guessed."""
    data = encode(np.full((16, 16), 0.5 if dtype == np.float32 else 70_000, dtype), "TIFF")
    with pytest.raises(UnsupportedImageError) as err:
        decode_image(data)
    assert str(err.value) == (
        f"the image is a TIFF of {kind} samples, whose value range (0-1, raw counts, "
        "millimetres...) the file does not say: convert it to 8- or 16-bit, scaled as the "
        "training images are")


def test_16_bit_tiffs_keep_their_range():
    img = decode_image(encode(np.full((16, 16), 65535 // 5, np.uint16), "TIFF"))
    assert img.dtype == np.float32 and float(img.max()) == pytest.approx(0.2)
