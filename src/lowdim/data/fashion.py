"""Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist layout), else torchvision."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lowdim.data.raw import RawDataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# split -> (images file, labels file), as named by the original release (and Debian, gzipped).
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08  # the only IDX element type the MNIST family uses


def parse_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """The uint8 array (d1, ..., dk) held by the bytes of an unsigned-byte IDX file."""
    if len(data) < 4:
        raise ValueError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero, zero2, kind, ndim = data[:4]
    if zero or zero2:
        raise ValueError(f"{source}: bad IDX magic number {data[:4].hex()} (must start 0000); "
                         "not an IDX file, or still gzip-compressed")
    if kind != _IDX_UBYTE:
        raise ValueError(f"{source}: IDX element type 0x{kind:02x} is not unsigned byte (0x08)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({ndim} dimensions, {len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise ValueError(
            f"{source}: IDX header says {dims} = {expected} bytes of data but the file holds "
            f"{len(data) - header}; the file is truncated or corrupted: replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array in an IDX file, gunzipped first when its name ends in .gz."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: not a valid gzip file ({err}); the file is truncated or "
                             "corrupted: replace it") from err
    return parse_idx(raw, str(path))


def find_idx_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Each IDX base name found in `directory` (plain or .gz) mapped to its file; missing names."""
    found, missing = {}, []
    for name in (n for pair in FILES.values() for n in pair):
        hit = next((c for c in (directory / name, directory / f"{name}.gz") if c.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[name] = hit
    return found, missing


def fashion_from_arrays(train_images: np.ndarray, train_labels: np.ndarray,
                        test_images: np.ndarray, test_labels: np.ndarray,
                        source: str) -> RawDataset:
    """RawDataset from IDX-shaped arrays: images (N, H, W) uint8, labels (N,) uint8."""
    arrays = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    out = {}
    for split, (images, labels) in arrays.items():
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(f"{source} {split}: images must be (N, H, W) and labels (N,), got "
                             f"{images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{source} {split}: {len(images)} images but {len(labels)} labels")
        if labels.size and int(labels.max()) >= len(CLASSES):
            raise ValueError(f"{source} {split}: label {int(labels.max())} out of range "
                             f"0..{len(CLASSES) - 1}")
        out[split] = (np.ascontiguousarray(images[:, None], dtype=np.uint8),
                      labels.astype(np.int64))
    return RawDataset("fashion-mnist", *out["train"], *out["test"], classes=CLASSES)


def _download(root: Path) -> RawDataset:
    """Fetch Fashion-MNIST with torchvision into `root` (needs internet)."""
    from torchvision.datasets import FashionMNIST

    sets = {split: FashionMNIST(str(root), train=split == "train", download=True)
            for split in ("train", "test")}
    return fashion_from_arrays(
        *(arr for split in ("train", "test")
          for arr in (sets[split].data.numpy(), sets[split].targets.numpy())),
        source=f"torchvision FashionMNIST in {root}",
    )


def load_fashion_mnist(root: str | Path | None, download: bool) -> RawDataset:
    """Fashion-MNIST: train (60000, 1, 28, 28) and test (10000, 1, 28, 28) uint8, int64 labels."""
    directory = DEBIAN_DIR if root is None else Path(root)
    # torchvision keeps its download under <root>/FashionMNIST/raw: reuse one made earlier.
    for candidate in (directory, directory / "FashionMNIST" / "raw"):
        files, missing = find_idx_files(candidate)
        if not missing:
            arrays = [read_idx(files[name]) for split in ("train", "test")
                      for name in FILES[split]]
            return fashion_from_arrays(*arrays, source=f"Fashion-MNIST in {candidate}")
    if download:
        if root is None:
            raise ValueError(
                f"fashion-mnist: {DEBIAN_DIR} has no IDX files and data.root is not set: set "
                "data.root to a writable directory to download Fashion-MNIST into"
            )
        return _download(directory)
    if directory.is_dir():
        _, missing = find_idx_files(directory)
        state = "lacks the IDX files " + ", ".join(f"{n}[.gz]" for n in missing)
    else:
        state = "does not exist"
    raise FileNotFoundError(
        f"fashion-mnist: directory {directory} {state}: install Debian's dataset-fashion-mnist "
        "package (apt-get install dataset-fashion-mnist), point data.root at a directory "
        "holding the IDX files, or set data.download: true"
    )
