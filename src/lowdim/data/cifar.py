"""CIFAR-10 from the official python archive: md5-checked, and unpickled without running code.

The batches are Python pickles. A pickle can name any importable callable, so they are read
with `RestrictedUnpickler`, which resolves only the few numpy reconstructors an array needs.
The archive is read member by member in memory, so nothing is extracted from an untrusted
tarball; only torchvision's download extracts, with tarfile's 'data' filter.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np

from lowdim.data.raw import RawDataset

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
IMAGE_SHAPE = (3, 32, 32)  # each row of b'data' is the R, G, B planes of 32x32, row-major
NUM_CLASSES = 10


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list: refused before anything runs."""


def official_checksums() -> dict[str, str]:
    """File name -> md5 of the official archive and of each file in it (torchvision's values)."""
    from torchvision.datasets import CIFAR10

    sums = {CIFAR10.filename: CIFAR10.tgz_md5, CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}
    sums.update({name: md5 for name, md5 in (*CIFAR10.train_list, *CIFAR10.test_list)})
    return sums


def _numpy_core(module: str) -> object:
    """numpy._core.<module> (numpy >= 2), else numpy.core.<module> (numpy 1.x)."""
    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{module}")


def _plain_dtype(*args: object) -> np.dtype:
    """numpy.dtype, refusing object dtypes: arrays of Python objects could smuggle anything."""
    dtype = np.dtype(*args)  # type: ignore[call-overload]
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing to unpickle an object dtype ({dtype})")
    return dtype


def _latin1_encode(text: str, encoding: str) -> bytes:
    """_codecs.encode as Python 3 protocol-2 pickles use it for bytes, limited to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


@cache
def _allowed_globals() -> dict[tuple[str, str], Callable[..., object]]:
    """The (module, name) pairs a pickled numpy array may reference, mapped to safe callables."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Callable[..., object]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # The official files were written by Python 2 numpy (numpy.core); numpy 2 writes numpy._core.
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only numpy array reconstructors and refuses every other global."""

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        """The allowed callable for `module.name`; UnsafePickleError for anything else."""
        found = _allowed_globals().get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: a CIFAR-10 batch holds only "
                "numpy arrays, lists, bytes and numbers; this file is not from the official "
                "archive and may be malicious"
            )
        return found


def restricted_loads(payload: bytes, source: str) -> object:
    """The object in a pickle (Python 2 str decoded as bytes), allowing numpy arrays only."""
    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as err:  # a damaged pickle can fail in many ways; all mean the same
        raise ValueError(f"cifar10: {source} cannot be unpickled ({type(err).__name__}: {err}); "
                         "it is corrupted or incomplete: delete it and download again") from err


def decode_batch(payload: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one pickled CIFAR-10 batch."""
    batch = restricted_loads(payload, source)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"cifar10: {source} must be a dict with keys b'data' and b'labels', "
                         f"got {keys}")
    data = batch[b"data"]
    width = int(np.prod(IMAGE_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == width):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"cifar10: {source} b'data' must be a uint8 array (N, {width}), got {got}")
    labels = _labels(batch[b"labels"], source)
    if len(labels) != len(data):
        raise ValueError(f"cifar10: {source} has {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _labels(raw: object, source: str) -> np.ndarray:
    """Labels (N,) int64 in 0..9 from a list of ints (the official form) or an integer array."""
    if isinstance(raw, list) and all(type(v) is int for v in raw):
        labels = np.array(raw, dtype=np.int64)
    elif isinstance(raw, np.ndarray) and raw.ndim == 1 and np.issubdtype(raw.dtype, np.integer):
        labels = raw.astype(np.int64)
    else:
        raise ValueError(f"cifar10: {source} b'labels' must be a list of integers")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"cifar10: {source} labels span {labels.min()}..{labels.max()}, "
                         f"outside 0..{NUM_CLASSES - 1}")
    return labels


def decode_meta(payload: bytes, source: str) -> tuple[str, ...]:
    """The 10 class names from the pickled batches.meta."""
    meta = restricted_loads(payload, source)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and len(names) == NUM_CLASSES
            and all(isinstance(n, bytes) for n in names)):
        raise ValueError(f"cifar10: {source} must be a dict whose b'label_names' lists "
                         f"{NUM_CLASSES} names")
    return tuple(n.decode("ascii") for n in names)


def cifar_from_files(files: Mapping[str, bytes]) -> RawDataset:
    """RawDataset (train (N, 3, 32, 32), test (M, 3, 32, 32)) from the batch files' bytes."""
    train = [decode_batch(files[name], name) for name in TRAIN_BATCHES]
    test_images, test_labels = decode_batch(files[TEST_BATCH], TEST_BATCH)
    return RawDataset(
        "cifar10",
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]),
        test_images, test_labels, classes=decode_meta(files[META], META),
    )


def md5_hex(payload: bytes) -> str:
    """Hex md5 of bytes (an integrity check, not a security boundary)."""
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_md5(name: str, actual: str, checksums: Mapping[str, str], where: Path) -> None:
    """Raise ValueError when `actual` is not the expected md5 of file `name`."""
    expected = checksums.get(name)
    if expected is None:
        raise ValueError(f"cifar10: no expected md5 for {name} in checksums, so {where} cannot "
                         "be verified: add it (the official values come from torchvision)")
    if actual.lower() != expected.lower():
        raise ValueError(f"cifar10: {where} is corrupted or incomplete (md5 {actual}, expected "
                         f"{expected}): delete it and download again")


def read_folder(folder: Path, checksums: Mapping[str, str]) -> dict[str, bytes]:
    """The bytes of each batch file in an extracted cifar-10-batches-py/, md5-checked."""
    files = {}
    for name in BATCH_FILES:
        payload = (folder / name).read_bytes()
        check_md5(name, md5_hex(payload), checksums, folder / name)
        files[name] = payload
    return files


def read_archive(archive: Path, checksums: Mapping[str, str]) -> dict[str, bytes]:
    """The bytes of each batch file inside the md5-checked archive, read without extracting."""
    check_md5(ARCHIVE, md5_file(archive), checksums, archive)
    wanted = {f"{FOLDER}/{name}": name for name in BATCH_FILES}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                handle = tar.extractfile(member) if name and member.isfile() else None
                if handle is not None:
                    files[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cifar10: {archive} is corrupted or incomplete ({err}): delete it and "
                         "download again") from err
    missing = [name for name in BATCH_FILES if name not in files]
    if missing:
        raise ValueError(f"cifar10: {archive} lacks {', '.join(f'{FOLDER}/{m}' for m in missing)}"
                         ": it is not the official archive; delete it and download again")
    for name, payload in files.items():  # members too, when their md5s are given
        if name in checksums:
            check_md5(name, md5_hex(payload), checksums, archive / name)
    return files


def download_archive(root: Path) -> None:
    """Download and extract the official archive into `root` with torchvision (md5-checked)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    root.mkdir(parents=True, exist_ok=True)
    download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename,
                                 md5=CIFAR10.tgz_md5)


def load_cifar10(root: str | Path | None, download: bool,
                 checksums: dict[str, str] | None = None) -> RawDataset:
    """CIFAR-10: train (50000, 3, 32, 32) and test (10000, 3, 32, 32) uint8, int64 labels."""
    if root is None:
        raise ValueError(f"cifar10: data.root is not set: point it at a directory holding "
                         f"{ARCHIVE} or {FOLDER}/ (or a writable one, with data.download: true)")
    root = Path(root)
    sums = official_checksums() if checksums is None else dict(checksums)
    folder, archive = root / FOLDER, root / ARCHIVE
    missing = [name for name in BATCH_FILES if not (folder / name).is_file()]
    if not missing:
        return cifar_from_files(read_folder(folder, sums))
    if archive.is_file():
        return cifar_from_files(read_archive(archive, sums))
    if download:
        download_archive(root)
        return cifar_from_files(read_folder(folder, sums))
    found = (f"{folder} lacks {', '.join(missing)}" if folder.is_dir()
             else f"neither {archive} nor {folder}/ exists")
    raise FileNotFoundError(
        f"cifar10: {found}: put the official {ARCHIVE} (or its extracted {FOLDER}/) in {root}, "
        "point data.root at a directory holding it, or set data.download: true (needs internet)"
    )
