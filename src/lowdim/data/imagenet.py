"""ImageNet (ILSVRC-2012) from torchvision's folder layout, resized to square uint8 images.

The layout is the one torchvision's `ImageNet` and `ImageFolder` read: `root/train/<wnid>/*.JPEG`
and `root/val/<wnid>/*.JPEG`, one folder per class. As there, the classes are the sorted folder
names of the training split and a class's label is its place in that order, the files of a class
are taken in sorted order, and only image files count (torchvision's extensions, any case). The
validation split is the "test" split here; its folders must name training classes, and each takes
the training split's label for that name. When torchvision's `meta.bin` (written from the devkit
by `torchvision.datasets.ImageNet`) is in the root, it gives the classes their readable names;
it never changes a label.

Each image is decoded to RGB, centre-cropped to a square of `CROP_RATIO` of its shorter side (the
evaluation crop of torchvision's and FFCV's ImageNet recipes, 224 of 256) and resized to
`image_size` with Pillow's antialiased bilinear filter, so both splits are stored as uint8
(N, 3, S, S) like the other datasets. The bytes depend on Pillow's JPEG decoder (draft mode
decodes large JPEGs at a reduced scale first, as Pillow does for thumbnails).

ImageNet cannot be downloaded (its licence needs an account at image-net.org): a missing folder
raises an error that says where to put it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lowdim.data.raw import RawDataset

SPLITS = {"train": "train", "test": "val"}  # our split -> torchvision's folder name
META_FILE = "meta.bin"
# torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively as there
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CROP_RATIO = 224 / 256
DEFAULT_IMAGE_SIZE = 64
LAYOUT = ("root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG, one folder per class "
          "(torchvision's ImageNet layout)")


def class_folders(split_dir: Path) -> list[str]:
    """The sorted names of the class folders in one split's directory."""
    return sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted by name (subfolders included, as
    torchvision's `make_dataset` walks them)."""
    return sorted((p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.relative_to(folder).as_posix())


def split_files(split_dir: Path, wnids: Sequence[str],
                where: str) -> tuple[list[Path], np.ndarray]:
    """Every image of one split and its label (the index of its folder's name in `wnids`)."""
    label_of = {wnid: i for i, wnid in enumerate(wnids)}
    unknown = [name for name in class_folders(split_dir) if name not in label_of]
    if unknown:
        raise ValueError(
            f"imagenet: {where} has class folders the training split lacks "
            f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): both splits must "
            "use the same wnid folder names; add them to train/ or remove them from val/"
        )
    files: list[Path] = []
    labels: list[int] = []
    for name in class_folders(split_dir):
        found = image_files(split_dir / name)
        files += found
        labels += [label_of[name]] * len(found)
    return files, np.array(labels, dtype=np.int64)


def check_layout(root: Path) -> None:
    """Raise FileNotFoundError unless `root` holds train/ and val/ with class folders."""
    for split, folder in SPLITS.items():
        path = root / folder
        if not path.is_dir():
            raise FileNotFoundError(
                f"imagenet: {path} does not exist: put ImageNet under data.root as {LAYOUT}; "
                "ImageNet cannot be downloaded here (it needs an account at image-net.org). "
                "torchvision.datasets.ImageNet(root, split=...) builds this layout from the "
                "official archives"
            )
        if not class_folders(path):
            loose = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())
            hint = (" its images lie loose: sort them into one folder per class (wnid), as "
                    "torchvision.datasets.ImageNet(root, split='val') does with the devkit"
                    if loose else "")
            raise FileNotFoundError(f"imagenet: {path} ({split} split) has no class folders;"
                                    f"{hint or ' expected ' + LAYOUT}")


def class_names(root: Path, wnids: Sequence[str]) -> tuple[str, ...]:
    """Readable names from torchvision's meta.bin where present ("tench, Tinca tinca"), else the
    wnids themselves; a wnid meta.bin does not name keeps its wnid."""
    meta = root / META_FILE
    if not meta.is_file():
        return tuple(wnids)
    import torch

    try:  # weights_only: plain containers of strings, no arbitrary code from the pickle
        wnid_to_classes, _val_wnids = torch.load(meta, weights_only=True)
        names = {str(k): ", ".join(map(str, v)) for k, v in dict(wnid_to_classes).items()}
    except Exception as err:  # a damaged or foreign file: every failure means the same
        raise ValueError(f"imagenet: {meta} is not torchvision's ImageNet meta file "
                         f"({type(err).__name__}: {err}); delete it (the wnids then name the "
                         "classes) or rebuild it with torchvision.datasets.ImageNet") from err
    return tuple(names.get(wnid, wnid) for wnid in wnids)


def centre_crop_box(width: int, height: int, ratio: float = CROP_RATIO) -> tuple[int, int, int,
                                                                                 int]:
    """(left, top, right, bottom) of the centred square of side ratio x the shorter side."""
    side = max(1, round(min(width, height) * ratio))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def load_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 (3, size, size): RGB, centre crop, antialiased bilinear resize."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # JPEG: decode at a reduced scale when it can, keeping the crop at least `size`
            wanted = math.ceil(size / CROP_RATIO)
            image.draft("RGB", (wanted, wanted))
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"imagenet: {path} cannot be read as an image ({err}): the file is "
                         "corrupted or not an image; replace or remove it") from err
    # crop, then resize: no pixel outside the crop reaches the filter (as FFCV's decoder crops)
    resized = rgb.crop(centre_crop_box(*rgb.size)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def load_images(files: Sequence[Path], size: int, desc: str = "images") -> np.ndarray:
    """uint8 (N, 3, size, size) of `files` in order, written into one preallocated array."""
    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(tqdm(files, desc=desc, unit="image", mininterval=5.0,
                                  disable=len(files) < 10_000)):
        images[i] = load_image(path, size)
    return images


def load_imagenet(root: str | Path | None, download: bool = False,
                  image_size: int | None = None) -> RawDataset:
    """ImageNet from torchvision's folder layout: uint8 (N, 3, S, S) train and val ("test")
    images, int64 labels in the sorted-wnid order, S = image_size (None: 64)."""
    if download:
        raise ValueError("imagenet: data.download = true, but ImageNet cannot be downloaded (it "
                         "needs an account at image-net.org): put it under data.root as "
                         f"{LAYOUT} and set data.download: false")
    if root is None:
        raise ValueError(f"imagenet: data.root is not set: point it at the folder holding "
                         f"{LAYOUT}")
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"imagenet: image_size = {image_size!r}: must be a positive integer")
    root = Path(root)
    check_layout(root)
    train_dir, val_dir = (root / SPLITS[s] for s in ("train", "test"))
    wnids = class_folders(train_dir)
    arrays = {}
    for split, folder in (("train", train_dir), ("test", val_dir)):
        files, labels = split_files(folder, wnids, str(folder))
        if not files:
            raise FileNotFoundError(f"imagenet: {folder} holds no image files "
                                    f"({', '.join(IMAGE_EXTENSIONS)}); expected {LAYOUT}")
        if split == "train":
            empty = sorted(set(wnids) - set(np.array(wnids)[np.unique(labels)]))
            if empty:
                raise FileNotFoundError(
                    f"imagenet: training class folder(s) {', '.join(empty[:5])} in {folder} hold "
                    "no image files: a class needs training images; add them or remove the "
                    "folder")
        arrays[split] = (load_images(files, size, f"imagenet {SPLITS[split]}"), labels)
    return RawDataset("imagenet", *arrays["train"], *arrays["test"],
                      classes=class_names(root, wnids))
