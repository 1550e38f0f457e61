"""Data loading: deep images are scaled (not clipped to white), bad label files and folders fail with one line."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from saliency_core.data import load_folder, load_image


def _png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): grey (H, W) or RGB (H, W, 3) uint16."""
    h, w = arr.shape[:2]
    colour = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
                     chunk(b"IEND", b""))


def test_16bit_grey_png_is_scaled_not_white(tmp_path):
    a = np.zeros((8, 8), np.uint16)
    a[:, 4:] = 32768
    a[0, 0] = 65535
    _png16(tmp_path / "g.png", a)
    rgb = np.asarray(load_image(tmp_path / "g.png"))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb[1, 1].tolist() == [0, 0, 0] and rgb[1, 5].tolist() == [128, 128, 128] and rgb[0, 0].tolist() == [255] * 3


def test_16bit_rgb_png_keeps_its_colours(tmp_path):
    a = np.zeros((4, 4, 3), np.uint16)
    a[..., 0], a[..., 1] = 65535, 32768
    _png16(tmp_path / "c.png", a)
    assert np.asarray(load_image(tmp_path / "c.png"))[0, 0].tolist() == [255, 128, 0]


def test_float_tiff_in_unit_range_is_scaled_and_other_floats_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert np.asarray(load_image(tmp_path / "f.tif"))[0, 0].tolist() == [128, 128, 128]
    Image.fromarray(np.full((4, 4), 300.0, np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(ValueError, match=r"big.tif' has float pixels in \[300, 300\]; accepted values"):
        load_image(tmp_path / "big.tif")
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(ValueError, match="32-bit integer pixels"):
        load_image(tmp_path / "i.tif")


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").size == (20, 40)


def test_truncated_and_fake_images_name_the_file(tmp_path):
    Image.new("RGB", (64, 64), (0, 128, 0)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.jpg", "text.png"):
        with pytest.raises(ValueError, match=rf"image file '.*{name}' is not a readable image .*; accepted values"):
            load_image(tmp_path / name)


def _flat(tmp_path, csv_text: str, n: int = 2):
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / f"im{i}.png")
    (tmp_path / "labels.csv").write_text(csv_text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("text, match", [
    ("file,class_index\nim0.png,3\nim1.png\n", r"labels.csv line 3 has 1 field\(s\) for 2 columns"),
    ("file,class_index\nim0.png,3,7\n", r"line 2 has 3 field\(s\) for 2 columns .*quote file names"),
    ("file,class_index\nim0.png,1000\n", r"line 2: label '1000' is not valid; accepted values: an ImageNet index"),
    ("file,class_index\nim0.png,-1\n", "label '-1' is not valid"),
    ("file,class_index\nim0.png,３\n", "label '３' is not valid"),  # a full-width digit is not an index
    ("file,class_index\nim0.png,3.0\n", r"label '3.0' is not valid"),
    ("file,class_index\n,3\n", "line 2 has an empty file name"),
    ("name,class\nim0.png,3\n", r"has columns \['class', 'name'\]; accepted values: 'file'"),
    ("file,class_index\n", "has no rows"),
    ("file,class_index\nmissing.png,3\n", "labels list names 'missing.png'"),
])
def test_bad_labels_csv(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_folder(_flat(tmp_path, text))


def test_labels_csv_with_byte_order_mark_blank_lines_and_spaces(tmp_path):
    d = _flat(tmp_path, "\ufefffile , class_index\nim0.png, 3\n\nim1.png ,n01440764\n")
    recs = load_folder(d)
    assert [r.label for r in recs] == [3, 0]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    (tmp_path / "7").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "7" / "a.png")
    (tmp_path / "7" / "._a.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    recs = load_folder(tmp_path)
    assert [(r.label, r.id.split("/")[1].split("-")[0]) for r in recs] == [(7, "a")]


@pytest.mark.parametrize("kwargs, match", [
    ({"n_images": True}, "n_images=True is not valid; accepted values: an int >= 1"),
    ({"n_images": 2.5}, "n_images=2.5 is not valid"),
    ({"n_images": -3}, "n_images=-3 is not valid"),
    ({"n_images": 0}, "n_images=0 is not valid"),
    ({"seed": 0.5}, "seed=0.5 is not valid"),
    ({"seed": "a"}, "seed='a' is not valid"),
])
def test_bad_folder_arguments(tmp_path, kwargs, match):
    d = _flat(tmp_path, "file,class_index\nim0.png,3\nim1.png,4\n")
    with pytest.raises(ValueError, match=match):
        load_folder(d, **kwargs)


def test_numpy_int_n_images_and_missing_folder(tmp_path):
    d = _flat(tmp_path, "file,class_index\nim0.png,3\nim1.png,4\n")
    assert len(load_folder(d, n_images=np.int64(1))) == 1
    with pytest.raises(ValueError, match="data_dir=None is not valid"):
        load_folder(None)
    with pytest.raises(ValueError, match="is not a folder"):
        load_folder(tmp_path / "nope")
