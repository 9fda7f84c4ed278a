"""Tests of lowdim.data: sources, splits, training and evaluation subsets, the prepared product,
transforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lowdim.data import (
    DATASETS,
    Prepared,
    RawDataset,
    augment_simple,
    channel_stats,
    default_padding,
    evaluation_subset,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_prepared,
    load_source,
    normalize,
    prepare,
    save_prepared,
    stratified_split,
    training_subset,
)
from lowdim.data import cifar as cifar_module
from lowdim.data import fashion as fashion_module
from lowdim.data import prepared as prepared_module

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- sources by name


def test_datasets_names():
    assert DATASETS == ("digits", "fashion-mnist", "cifar10", "imagenet")


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist': choose one of digits, "
                                         r"fashion-mnist, cifar10"):
        load_source("mnist")


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> RawDataset:
    return load_digits(test_fraction=0.25, split_seed=2)


def test_digits_shapes_dtypes_and_range(digits):
    assert digits.name == "digits"
    assert digits.classes == tuple("0123456789")
    assert digits.train_images.shape == (1347, 1, 8, 8)
    assert digits.test_images.shape == (450, 1, 8, 8)
    assert digits.train_images.dtype == np.uint8 and digits.test_images.dtype == np.uint8
    assert digits.train_labels.dtype == np.int64 and digits.test_labels.dtype == np.int64
    pixels = np.concatenate([digits.train_images.ravel(), digits.test_images.ravel()])
    assert pixels.min() == 0 and pixels.max() == 255
    # Every pixel is one of the 17 levels round(k * 255 / 16).
    levels = {round(k * 255 / 16) for k in range(17)}
    assert set(np.unique(pixels).tolist()) <= levels


def test_digits_pixels_match_sklearn(digits):
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.data * 255 / 16).reshape(-1, 1, 8, 8)
    _, test = stratified_split(bunch.target, 0.25, 2)
    np.testing.assert_array_equal(digits.test_images, images[test])
    np.testing.assert_array_equal(digits.test_labels, bunch.target[test])


def test_digits_split_is_stratified(digits):
    train_counts = np.bincount(digits.train_labels, minlength=10)
    test_counts = np.bincount(digits.test_labels, minlength=10)
    for n_train, n_test in zip(train_counts, test_counts, strict=True):
        assert n_test == round(0.25 * (n_train + n_test))


def test_digits_split_is_deterministic_in_the_seed(digits):
    again = load_source("digits", test_fraction=0.25, split_seed=2)
    np.testing.assert_array_equal(again.test_images, digits.test_images)
    np.testing.assert_array_equal(again.train_labels, digits.train_labels)
    other = load_digits(test_fraction=0.25, split_seed=3)
    assert not np.array_equal(other.test_images, digits.test_images)


# --------------------------------------------------------------------------- splits and subsets


def test_stratified_split_partitions_every_class():
    labels = np.repeat(np.arange(4), [40, 41, 10, 3])
    train, test = stratified_split(labels, 0.3, seed=5)
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(len(labels)))
    assert np.bincount(labels[test]).tolist() == [12, 12, 3, 1]
    again_train, again_test = stratified_split(labels, 0.3, seed=5)
    np.testing.assert_array_equal(again_test, test)
    assert not np.array_equal(stratified_split(labels, 0.3, seed=6)[1], test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"test_fraction = .*: must be strictly between 0 and 1"):
        stratified_split(np.arange(10) % 2, fraction, seed=0)


def test_stratified_split_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels must be a non-empty 1-D integer array"):
        stratified_split(np.zeros((3, 2), dtype=np.int64), 0.5, seed=0)


def test_evaluation_subset_all_indices():
    labels = np.arange(50) % 5
    np.testing.assert_array_equal(evaluation_subset(labels, None, 0), np.arange(50))
    np.testing.assert_array_equal(evaluation_subset(labels, 50, 0), np.arange(50))
    np.testing.assert_array_equal(evaluation_subset(labels, 80, 0), np.arange(50))
    assert evaluation_subset(labels, None, 0).dtype == np.int64


def test_evaluation_subset_is_exact_sorted_stratified_and_seeded():
    labels = np.repeat(np.arange(3), [100, 60, 40])
    subset = evaluation_subset(labels, 37, seed=1)
    assert subset.dtype == np.int64 and len(subset) == 37
    assert np.all(np.diff(subset) > 0)
    counts = np.bincount(labels[subset], minlength=3)
    assert np.all(np.abs(counts - 37 * np.array([100, 60, 40]) / 200) < 1)
    np.testing.assert_array_equal(evaluation_subset(labels, 37, seed=1), subset)
    assert not np.array_equal(evaluation_subset(labels, 37, seed=2), subset)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_evaluation_subset_rejects_bad_size(size):
    with pytest.raises(ValueError, match=r"subset size = .*: must be a positive integer"):
        evaluation_subset(np.arange(10) % 2, size, seed=0)


def _per_class(labels: np.ndarray, subset: np.ndarray) -> np.ndarray:
    return np.bincount(labels[subset], minlength=int(labels.max()) + 1)


@pytest.mark.parametrize("size", [10, 500, 503, 1347])
def test_training_subset_is_balanced_sorted_and_inside_the_split(digits, size):
    labels = digits.train_labels  # 1,347 examples, 130..137 per class
    subset = training_subset(labels, size, seed=0)
    assert subset.dtype == np.int64 and len(subset) == size
    assert np.all(np.diff(subset) > 0) and subset[0] >= 0 and subset[-1] < len(labels)
    counts = _per_class(labels, subset)
    if size < 10 * 130:  # no class runs out: equal counts, the remainder one each
        assert counts.max() - counts.min() <= 1 and counts.min() == size // 10
        assert np.sum(counts > size // 10) == size % 10
    else:  # the whole split: every example once
        np.testing.assert_array_equal(subset, np.arange(len(labels)))


def test_training_subset_is_deterministic_in_its_seed(digits):
    labels = digits.train_labels
    first = training_subset(labels, 503, seed=0)
    np.testing.assert_array_equal(training_subset(labels, 503, seed=0), first)
    assert not np.array_equal(training_subset(labels, 503, seed=1), first)
    # the 3 classes that get one more are drawn with the seed, not the lowest labels
    extra = {tuple(np.flatnonzero(_per_class(labels, training_subset(labels, 503, s)) == 51))
             for s in range(8)}
    assert len(extra) > 1 and all(len(e) == 3 for e in extra)
    # its own stream: not the evaluation subset's draws for the same seed and size
    assert not np.array_equal(first, evaluation_subset(labels, 503, seed=0))


def test_training_subset_shares_a_small_class_out():
    labels = np.repeat(np.arange(3), [2, 10, 10])
    counts = _per_class(labels, training_subset(labels, 14, seed=0))
    np.testing.assert_array_equal(counts, [2, 6, 6])  # class 0 gives all it has
    counts = _per_class(labels, training_subset(labels, 15, seed=0))
    assert counts[0] == 2 and sorted(counts[1:]) == [6, 7]


@pytest.mark.parametrize("size, message", [
    (0, r"data\.train_size = 0: must be a positive integer, or None for the whole training"),
    (-3, r"data\.train_size = -3: must be a positive integer"),
    (2.5, r"data\.train_size = 2\.5: must be a positive integer"),
    (True, r"data\.train_size = True: must be a positive integer"),
    (2, r"data\.train_size = 2: a class-balanced subset needs at least one example of each of "
        r"the 3 classes, so at least 3"),
    (31, r"data\.train_size = 31: the training split has only 30 examples; choose at most 30, "
         r"or null for all of them"),
])
def test_training_subset_rejects_bad_size(size, message):
    with pytest.raises(ValueError, match=message):
        training_subset(np.arange(30) % 3, size, seed=0)


# --------------------------------------------------------------------------- statistics


def test_channel_stats_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (30, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(images)
    assert mean.dtype == np.float32 and mean.shape == (3,) and std.shape == (3,)
    scaled = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-6)


def test_channel_stats_rejects_a_constant_channel():
    images = np.zeros((4, 2, 3, 3), dtype=np.uint8)
    images[:, 0] = np.arange(9, dtype=np.uint8).reshape(3, 3)
    with pytest.raises(ValueError, match=r"a channel is constant .* cannot be normalized"):
        channel_stats(images)


def test_normalize_gives_zero_mean_unit_std_on_train(digits):
    mean, std = channel_stats(digits.train_images)
    x = normalize(torch.from_numpy(digits.train_images), torch.from_numpy(mean),
                  torch.from_numpy(std))
    assert x.dtype == torch.float32 and x.shape == digits.train_images.shape
    assert abs(x.mean().item()) < 1e-5
    assert abs(x.std(unbiased=False).item() - 1) < 1e-5


def test_normalize_per_channel_and_formula():
    images = torch.from_numpy(
        np.random.default_rng(1).integers(0, 256, (20, 3, 6, 6), dtype=np.uint8))
    mean, std = (torch.from_numpy(a) for a in channel_stats(images.numpy()))
    x = normalize(images, mean, std)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3),
                               atol=1e-5, rtol=0)
    expected = (images[0, 2, 1, 4].item() / 255 - mean[2].item()) / std[2].item()
    assert x[0, 2, 1, 4].item() == pytest.approx(expected, rel=1e-5)


def test_normalize_rejects_bad_input():
    images = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor \(B, C, H, W\), got "
                                         r"torch.float32"):
        normalize(images.float(), torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"mean and std must have shape \(3,\)"):
        normalize(images, torch.zeros(1), torch.ones(1))


# --------------------------------------------------------------------------- augmentation


def _nonzero_images(n: int, seed: int, shape=(3, 6, 5)) -> torch.Tensor:
    """Images with every pixel in 1..255, so zeros can only come from the padding."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(1, 256, (n, *shape), dtype=np.uint8))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_padding():
    assert [default_padding(h) for h in (32, 28, 8, 1)] == [4, 4, 1, 1]
    with pytest.raises(ValueError, match=r"image height = 0: must be positive"):
        default_padding(0)


def test_augment_preserves_shape_dtype_and_is_deterministic():
    images = _nonzero_images(16, 0)
    out = augment_simple(images, 2, _gen(7))
    assert out.shape == images.shape and out.dtype == torch.uint8
    torch.testing.assert_close(augment_simple(images, 2, _gen(7)), out, rtol=0, atol=0)
    assert not torch.equal(augment_simple(images, 2, _gen(8)), out)
    assert torch.equal(images, _nonzero_images(16, 0)), "the input must not be modified"


@pytest.mark.parametrize("channels", [1, 3])
def test_augmented_batches_have_canonical_strides(channels):
    # one channel: a permuted view counts as contiguous with strides (H*W, 1, W, 1), which
    # crashed a wide-resnet backward on the CPU; the augmentation returns plain strides
    imgs = torch.randint(0, 256, (4, channels, 8, 8), dtype=torch.uint8)
    out = augment_simple(imgs, 2, torch.Generator().manual_seed(0))
    assert out.stride() == (channels * 64, 64, 8, 1)


def test_augment_without_padding_or_flip_is_identity():
    images = _nonzero_images(8, 1)
    assert torch.equal(augment_simple(images, 0, _gen(0), flip=False), images)


def test_augment_flip_only_flips_about_half():
    images = _nonzero_images(200, 2)
    out = augment_simple(images, 0, _gen(3))
    same = (out == images).flatten(1).all(dim=1)
    flipped = (out == images.flip(-1)).flatten(1).all(dim=1)
    assert torch.all(same ^ flipped), "each image is either untouched or mirrored"
    assert 60 < int(flipped.sum()) < 140, "both outcomes occur, about equally often"
    # Flipping the mirrored ones back restores the originals.
    restored = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    assert torch.equal(restored, images)


def test_augment_crop_is_a_shifted_copy_with_zero_border():
    padding, n = 2, 400
    images = _nonzero_images(n, 3)
    out = augment_simple(images, padding, _gen(4), flip=False)
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    height, width = images.shape[2:]
    offsets = set()
    for b in range(n):
        # The crop window (top, left) in the padded image that reproduces this output.
        hits = [(top, left) for top in range(2 * padding + 1) for left in range(2 * padding + 1)
                if np.array_equal(padded[b, :, top:top + height, left:left + width],
                                  out[b].numpy())]
        assert len(hits) == 1, f"image {b} is not a crop of its zero-padded original"
        offsets.add(hits[0])
    # Every one of the 25 windows is drawn (missing one has probability ~25 * 0.96**400).
    assert len(offsets) == (2 * padding + 1) ** 2
    assert (out == 0).any(), "shifted crops bring in the zero padding"


def test_augment_matches_torchvision_for_the_drawn_window():
    from torchvision.transforms import v2

    images = _nonzero_images(12, 5, shape=(3, 8, 8))
    out = augment_simple(images, 3, _gen(9))
    for b in range(len(images)):
        # torchvision's RandomCrop(8, padding=3, fill=0) picks one of these 7x7 windows.
        padded = v2.functional.pad(images[b], [3], fill=0)
        windows = [v2.functional.crop(padded, top, left, 8, 8)
                   for top in range(7) for left in range(7)]
        windows += [v2.functional.horizontal_flip(w) for w in windows]
        assert sum(torch.equal(out[b], w) for w in windows) == 1


def test_augment_rejects_bad_input():
    images = _nonzero_images(2, 0)
    with pytest.raises(ValueError, match=r"padding = -1: must be a non-negative integer"):
        augment_simple(images, -1, _gen(0))
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor \(B, C, H, W\)"):
        augment_simple(images[0], 1, _gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_on_cuda_matches_cpu():
    images = _nonzero_images(32, 6)
    cpu = augment_simple(images, 2, _gen(1))
    cuda = augment_simple(images.cuda(), 2, _gen(1))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)


# --------------------------------------------------------------------------- fashion-mnist


def _idx(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_tiny_fashion(directory: Path, gz: set[str] = frozenset()) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 5, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (7, 5, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(7)[::-1] % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if name in gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
        else:
            (directory / name).write_bytes(_idx(array))
    return arrays


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason=f"{DEBIAN_FASHION} is absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_directory():
    raw = load_source("fashion-mnist")
    assert raw.train_images.shape == (60000, 1, 28, 28)
    assert raw.test_images.shape == (10000, 1, 28, 28)
    assert raw.train_images.dtype == np.uint8 and raw.train_labels.dtype == np.int64
    assert np.bincount(raw.train_labels).tolist() == [6000] * 10
    assert np.bincount(raw.test_labels).tolist() == [1000] * 10
    assert raw.classes[0] == "T-shirt/top" and raw.classes[9] == "Ankle boot"


@pytest.mark.parametrize("gz", [set(), {"train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
                                set(fashion_module.FILES["train"] + fashion_module.FILES["test"])])
def test_fashion_mnist_from_tiny_idx_files(tmp_path, gz):
    arrays = _write_tiny_fashion(tmp_path, gz)
    raw = load_fashion_mnist(tmp_path, download=False)
    assert raw.name == "fashion-mnist" and len(raw.classes) == 10
    np.testing.assert_array_equal(raw.train_images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.test_images[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(raw.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert raw.train_images.shape == (12, 1, 5, 4) and raw.train_labels.dtype == np.int64


def test_fashion_mnist_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError,
                       match=rf"directory {missing} does not exist: install Debian's "
                             r"dataset-fashion-mnist package .* point data.root at a directory "
                             r"holding the IDX files, or set data.download: true"):
        load_source("fashion-mnist", root=missing)


def test_fashion_mnist_missing_files(tmp_path):
    _write_tiny_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"lacks the IDX files t10k-labels-idx1-ubyte\[\.gz\]: install"):
        load_fashion_mnist(tmp_path, download=False)


def test_fashion_mnist_default_is_the_debian_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", tmp_path / "debian")
    with pytest.raises(FileNotFoundError, match=rf"directory {tmp_path / 'debian'} does not"):
        load_fashion_mnist(None, download=False)
    with pytest.raises(ValueError, match=r"data.root is not set: set data.root to a writable"):
        load_fashion_mnist(None, download=True)


def test_fashion_mnist_download_uses_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            n = 6 if train else 4
            self.data = torch.arange(n * 9, dtype=torch.uint8).reshape(n, 3, 3)
            self.targets = torch.arange(n) % 10

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    raw = load_source("fashion-mnist", root=tmp_path / "dl", download=True)
    assert calls == [(str(tmp_path / "dl"), True, True), (str(tmp_path / "dl"), False, True)]
    assert raw.train_images.shape == (6, 1, 3, 3) and raw.test_labels.tolist() == [0, 1, 2, 3]


def test_fashion_mnist_reuses_torchvision_layout(tmp_path):
    arrays = _write_tiny_fashion(tmp_path / "FashionMNIST" / "raw")
    raw = load_fashion_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(raw.test_labels, arrays["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x08\x03" + b[2:], r"bad IDX magic number 0803"),
    (lambda b: b[:2] + b"\x0d" + b[3:], r"IDX element type 0x0d is not unsigned byte"),
    (lambda b: b[:-5], r"IDX header says \(12, 5, 4\) = 240 bytes of data but the file holds "
                       r"235; the file is truncated or corrupted"),
])
def test_fashion_mnist_rejects_corrupt_idx(tmp_path, damage, message):
    _write_tiny_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        load_fashion_mnist(tmp_path, download=False)


def test_fashion_mnist_rejects_truncated_gzip(tmp_path):
    _write_tiny_fashion(tmp_path, gz={"train-images-idx3-ubyte"})
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"not a valid gzip file .* truncated or corrupted"):
        load_fashion_mnist(tmp_path, download=False)


def test_fashion_mnist_rejects_labels_out_of_range(tmp_path):
    _write_tiny_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.full(12, 10, dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"train: label 10 out of range 0\.\.9"):
        load_fashion_mnist(tmp_path, download=False)


def test_fashion_mnist_rejects_count_mismatch(tmp_path):
    _write_tiny_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(6, dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"test: 7 images but 6 labels"):
        load_fashion_mnist(tmp_path, download=False)


# --------------------------------------------------------------------------- cifar10


def _py2_pickle(obj: object) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle wrote CIFAR-10 (str as BINSTRING, numpy.core)."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes) -> None:
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256
                   else b"T" + struct.pack("<I", len(b)) + b)

    def integer(v: int) -> None:
        out.extend(b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v))

    def value(v: object) -> None:
        if isinstance(v, bytes):
            string(v)
        elif isinstance(v, int):
            integer(v)
        elif isinstance(v, list):
            out.extend(b"](")
            for item in v:
                value(item)
            out.extend(b"e")
        elif isinstance(v, dict):
            out.extend(b"}(")
            for key, item in v.items():
                value(key)
                value(item)
            out.extend(b"u")
        elif isinstance(v, np.ndarray) and v.dtype == np.uint8:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.extend(b"\x85")  # TUPLE1: shape (0,)
            string(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, then the state tuple
            integer(1)
            out.extend(b"(")
            for dim in v.shape:
                integer(dim)
            out.extend(b"tcnumpy\ndtype\n")
            string(b"u1")
            out.extend(b"\x89\x88\x87R(")  # dtype('u1', False, True), then its state
            integer(3)
            string(b"|")
            out.extend(b"NNN")
            integer(-1)
            integer(-1)
            integer(0)
            out.extend(b"tb\x89")  # BUILD the dtype; fortran_order False
            string(v.tobytes())
            out.extend(b"tb")  # BUILD the array
        else:
            raise TypeError(type(v))

    value(obj)
    out.extend(b".")
    return bytes(out)


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


def _batch(rows: np.ndarray, labels: list[int], label: bytes) -> bytes:
    return _py2_pickle({
        b"batch_label": label,
        b"labels": labels,
        b"data": rows,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    })


@pytest.fixture(scope="module")
def cifar_source(tmp_path_factory):
    """A small archive in the official format: 5 data batches and a test batch of 20 images."""
    base = tmp_path_factory.mktemp("cifar_source")
    folder = base / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(6):
        data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, 20)]
        name = f"data_batch_{i + 1}" if i < 5 else "test_batch"
        title = (f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1").encode()
        (folder / name).write_bytes(_batch(data, batch_labels, title))
        rows.append(data)
        labels.append(batch_labels)
    meta = {b"num_cases_per_batch": 20, b"label_names": [c.encode() for c in CIFAR_CLASSES],
            b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    archive = base / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    shutil.rmtree(folder)
    checksums = {"cifar-10-python.tar.gz": md5(archive.read_bytes())}
    return {"archive": archive, "checksums": checksums, "rows": rows, "labels": labels}


def _folder_checksums(folder: Path) -> dict[str, str]:
    return {p.name: md5(p.read_bytes()) for p in folder.iterdir()}


def _root_with_archive(tmp_path: Path, source: dict) -> Path:
    root = tmp_path / "cifar"
    root.mkdir()
    shutil.copy(source["archive"], root / "cifar-10-python.tar.gz")
    return root


def _root_with_folder(tmp_path: Path, source: dict) -> Path:
    root = tmp_path / "cifar"
    root.mkdir()
    with tarfile.open(source["archive"]) as tar:
        tar.extractall(root, filter="data")
    return root


def _assert_matches_source(raw: RawDataset, source: dict) -> None:
    rows = source["rows"]
    assert raw.name == "cifar10" and raw.classes == CIFAR_CLASSES
    assert raw.train_images.shape == (100, 3, 32, 32) and raw.test_images.shape == (20, 3, 32, 32)
    assert raw.train_images.dtype == np.uint8 and raw.train_labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train_images.reshape(100, 3072), np.concatenate(rows[:5]))
    np.testing.assert_array_equal(raw.test_images.reshape(20, 3072), rows[5])
    np.testing.assert_array_equal(raw.train_labels, np.concatenate(source["labels"][:5]))
    np.testing.assert_array_equal(raw.test_labels, source["labels"][5])
    # Pixel layout: each row is the R, G and B planes of 32x32, row-major.
    first = rows[0][0]
    assert raw.train_images[0, 0, 0, 0] == first[0]
    assert raw.train_images[0, 1, 2, 3] == first[1024 + 2 * 32 + 3]
    assert raw.train_images[0, 2, 31, 30] == first[2048 + 31 * 32 + 30]
    assert raw.train_images[25, 0, 1, 0] == rows[1][5][32]


def test_cifar10_from_archive(tmp_path, cifar_source):
    root = _root_with_archive(tmp_path, cifar_source)
    raw = load_cifar10(root, download=False, checksums=cifar_source["checksums"])
    _assert_matches_source(raw, cifar_source)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"], \
        "reading the archive extracts nothing"


def test_cifar10_from_extracted_folder(tmp_path, cifar_source):
    root = _root_with_folder(tmp_path, cifar_source)
    checksums = _folder_checksums(root / "cifar-10-batches-py")
    _assert_matches_source(load_cifar10(root, False, checksums), cifar_source)


def test_cifar10_archive_member_checksums_are_checked(tmp_path, cifar_source):
    root = _root_with_archive(tmp_path, cifar_source)
    checksums = {**cifar_source["checksums"], "test_batch": "0" * 32}
    with pytest.raises(ValueError, match=r"test_batch is corrupted or incomplete \(md5 [0-9a-f]"
                                         r"{32}, expected 0{32}\)"):
        load_cifar10(root, False, checksums)


def test_cifar10_rejects_corrupted_archive(tmp_path, cifar_source):
    root = _root_with_archive(tmp_path, cifar_source)
    path = root / "cifar-10-python.tar.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    expected = cifar_source["checksums"]["cifar-10-python.tar.gz"]
    with pytest.raises(ValueError, match=rf"cifar10: {path} is corrupted or incomplete \(md5 "
                                         rf"{md5(bytes(data))}, expected {expected}\): delete it "
                                         r"and download again"):
        load_cifar10(root, False, cifar_source["checksums"])


def test_cifar10_rejects_truncated_archive(tmp_path, cifar_source):
    root = _root_with_archive(tmp_path, cifar_source)
    path = root / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz is corrupted or incomplete "
                                         r"\(md5 [0-9a-f]{32}, expected [0-9a-f]{32}\): delete"):
        load_cifar10(root, False, cifar_source["checksums"])
    # Even when told to expect the truncated file's md5, the damaged archive is refused.
    checksums = {"cifar-10-python.tar.gz": md5(path.read_bytes())}
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz is corrupted or incomplete "
                                         r"\(.*\): delete it and download again"):
        load_cifar10(root, False, checksums)


def test_cifar10_rejects_corrupted_batch_file(tmp_path, cifar_source):
    root = _root_with_folder(tmp_path, cifar_source)
    checksums = _folder_checksums(root / "cifar-10-batches-py")
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"data_batch_3 is corrupted or incomplete \(md5 "):
        load_cifar10(root, False, checksums)


def test_cifar10_default_checksums_are_the_official_ones(tmp_path, cifar_source):
    sums = cifar_module.official_checksums()
    assert sums["cifar-10-python.tar.gz"] == "c58f30108f718f92721af3b95e74349a"
    assert sums["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert sums["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert sums["batches.meta"] == "5ff9c542aee3614f3951f8cda6e48888"
    root = _root_with_archive(tmp_path, cifar_source)
    with pytest.raises(ValueError, match=r"expected c58f30108f718f92721af3b95e74349a"):
        load_source("cifar10", root=root)


def test_cifar10_needs_a_checksum_for_each_file(tmp_path, cifar_source):
    root = _root_with_folder(tmp_path, cifar_source)
    with pytest.raises(ValueError, match=r"no expected md5 for data_batch_1 in checksums"):
        load_cifar10(root, False, cifar_source["checksums"])


def test_cifar10_missing_files(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(FileNotFoundError,
                       match=rf"neither {root}/cifar-10-python.tar.gz nor "
                             rf"{root}/cifar-10-batches-py/ exists: put the official "
                             r"cifar-10-python.tar.gz .* or set data.download: true"):
        load_cifar10(root, download=False)
    (root / "cifar-10-batches-py").mkdir()
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py lacks data_batch_2, "):
        load_cifar10(root, download=False)
    with pytest.raises(ValueError, match=r"cifar10: data.root is not set"):
        load_cifar10(None, download=False)


def test_cifar10_download_uses_torchvision(tmp_path, cifar_source, monkeypatch):
    import torchvision.datasets.utils
    from torchvision.datasets import CIFAR10

    calls = []

    def fake_download(url, download_root, filename=None, md5=None):
        calls.append((url, filename, md5))
        with tarfile.open(cifar_source["archive"]) as tar:
            tar.extractall(download_root, filter="data")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    root = _root_with_folder(tmp_path, cifar_source)
    checksums = _folder_checksums(root / "cifar-10-batches-py")
    shutil.rmtree(root)
    raw = load_cifar10(root, download=True, checksums=checksums)
    assert calls == [(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)]
    _assert_matches_source(raw, cifar_source)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_refuses_malicious_pickle(tmp_path, cifar_source):
    root = _root_with_folder(tmp_path, cifar_source)
    marker = tmp_path / "pwned"
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    checksums = _folder_checksums(root / "cifar-10-batches-py")
    with pytest.raises(pickle.UnpicklingError,
                       match=r"refusing to unpickle global (posix|nt)\.system: a CIFAR-10 batch "
                             r"holds only numpy arrays"):
        load_cifar10(root, False, checksums)
    assert not marker.exists(), "nothing in the pickle may run"


@pytest.mark.parametrize("payload, message", [
    (pickle.dumps(eval), r"refusing to unpickle global builtins\.eval"),
    (pickle.dumps(np.array([object()], dtype=object)), r"refusing to unpickle an object dtype"),
    (pickle.dumps({b"x": io.BytesIO}), r"refusing to unpickle global _io\.BytesIO"),
])
def test_restricted_unpickler_refuses_globals(payload, message):
    with pytest.raises(pickle.UnpicklingError, match=message):
        cifar_module.restricted_loads(payload, "test")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_arrays(protocol):
    batch = {b"data": np.arange(24, dtype=np.uint8).reshape(4, 6), b"labels": [1, 2, 3, 4],
             b"name": b"x"}
    loaded = cifar_module.restricted_loads(pickle.dumps(batch, protocol=protocol), "test")
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == [1, 2, 3, 4] and loaded[b"name"] == b"x"


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
     r"b'data' must be a uint8 array \(N, 3072\), got uint8 \(2, 100\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
     r"labels span 0\.\.10, outside 0\.\.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"has 2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, r"must be a dict with keys b'data' and b'labels'"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"a"]},
     r"b'labels' must be a list of integers"),
])
def test_cifar10_batch_structure_is_validated(batch, message):
    with pytest.raises(ValueError, match=message):
        cifar_module.decode_batch(_py2_pickle(batch), "data_batch_1")


def test_cifar10_garbage_batch_is_reported():
    with pytest.raises(ValueError, match=r"data_batch_1 cannot be unpickled .* corrupted or "
                                         r"incomplete"):
        cifar_module.decode_batch(b"\x80\x02}q\x01(U\x04data", "data_batch_1")


# --------------------------------------------------------------------------- prepared product


@pytest.fixture(scope="module")
def prepared(digits) -> Prepared:
    return prepare(digits, eval_train_size=200, eval_test_size=None, eval_seed=0)


def test_prepare(digits, prepared):
    assert prepared.dataset == "digits" and prepared.classes == digits.classes
    assert prepared.input_shape == (1, 8, 8) and prepared.num_classes == 10
    assert len(prepared.eval_train_index) == 200
    np.testing.assert_array_equal(prepared.eval_test_index, np.arange(450))
    np.testing.assert_array_equal(prepared.eval_train_index,
                                  evaluation_subset(digits.train_labels, 200, 0))
    mean, std = channel_stats(digits.train_images)
    np.testing.assert_array_equal(prepared.mean, mean)
    np.testing.assert_array_equal(prepared.std, std)
    assert prepared.mean.dtype == np.float32 and prepared.mean.shape == (1,)


def _assert_same(a: Prepared, b: Prepared) -> None:
    assert a.dataset == b.dataset and a.classes == b.classes
    for name in prepared_module.ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


# prepare(digits quick profile: eval_train_size 600, eval_test_size null, eval_seed 0), saved:
# sha256 over the sorted files' names and bytes, computed with the code before data.train_size
# (and equal to the committed data/prepared product).
QUICK_PREPARED_SHA256 = "c6fc9b01dc7076e58f766758469489fc20ba56d9564749233966db49a8802012"


def _product_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_train_size_null_changes_no_byte(tmp_path, digits):
    for prepared in (prepare(digits, 600, None, 0),
                     prepare(digits, 600, None, 0, train_size=None, train_seed=7)):
        assert prepared.train_source_index is None
        save_prepared(prepared, tmp_path / "p")
        assert _product_sha256(tmp_path / "p") == QUICK_PREPARED_SHA256
        assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(
            [f"{name}.npy" for name in prepared_module.ARRAYS] + ["meta.json"])


def test_prepare_on_a_training_subset(digits):
    prepared = prepare(digits, 200, 90, 0, train_size=503, train_seed=4)
    index = training_subset(digits.train_labels, 503, 4)
    np.testing.assert_array_equal(prepared.train_source_index, index)
    np.testing.assert_array_equal(prepared.train_images, digits.train_images[index])
    np.testing.assert_array_equal(prepared.train_labels, digits.train_labels[index])
    # the test split is untouched; the statistics are those of the examples trained on
    np.testing.assert_array_equal(prepared.test_images, digits.test_images)
    np.testing.assert_array_equal(prepared.eval_test_index, evaluation_subset(
        digits.test_labels, 90, 0))
    mean, std = channel_stats(digits.train_images[index])
    np.testing.assert_array_equal(prepared.mean, mean)
    np.testing.assert_array_equal(prepared.std, std)
    # the "train" prediction space: a stratified subset of the trained-on examples only
    np.testing.assert_array_equal(prepared.eval_train_index, evaluation_subset(
        digits.train_labels[index], 200, 0))
    assert set(index[prepared.eval_train_index]) <= set(index)
    assert prepared.eval_train_index[-1] < 503
    # null evaluation subset: every trained-on example
    whole = prepare(digits, None, None, 0, train_size=503, train_seed=4)
    np.testing.assert_array_equal(whole.eval_train_index, np.arange(503))


def test_the_data_fingerprint_follows_the_training_subset(digits):
    from lowdim.training.ledger import data_fingerprint

    def fingerprint(**subset) -> str:
        return data_fingerprint(prepare(digits, 100, 90, 0, **subset))

    whole = fingerprint()
    assert fingerprint(train_size=None, train_seed=3) == whole
    prints = {fingerprint(train_size=500), fingerprint(train_size=600),
              fingerprint(train_size=500, train_seed=1)}
    assert len(prints) == 3 and whole not in prints
    assert fingerprint(train_size=500) == fingerprint(train_size=500, train_seed=0)


def test_a_training_subset_round_trips(tmp_path, digits):
    prepared = prepare(digits, 60, 40, 0, train_size=250, train_seed=2)
    save_prepared(prepared, tmp_path / "p")
    assert (tmp_path / "p" / "train_source_index.npy").is_file()
    loaded = load_prepared(tmp_path / "p")
    _assert_same(loaded, prepared)
    np.testing.assert_array_equal(loaded.train_source_index, prepared.train_source_index)
    save_prepared(prepare(digits, 60, 40, 0), tmp_path / "p")  # back to the whole split
    assert not (tmp_path / "p" / "train_source_index.npy").exists()
    assert load_prepared(tmp_path / "p").train_source_index is None


def test_save_load_round_trip_is_exact(tmp_path, prepared):
    target = tmp_path / "prepared"
    save_prepared(prepared, target)
    loaded = load_prepared(target)
    _assert_same(loaded, prepared)
    assert isinstance(loaded.classes, tuple)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"], "no temporary left behind"


def test_save_replaces_an_existing_product(tmp_path, digits, prepared):
    target = tmp_path / "prepared"
    save_prepared(prepared, target)
    (target / "stale.npy").write_bytes(b"old")
    other = prepare(digits, eval_train_size=50, eval_test_size=30, eval_seed=1)
    save_prepared(other, target)
    _assert_same(load_prepared(target), other)
    assert not (target / "stale.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_interrupted_save_leaves_nothing_half_done(tmp_path, digits, prepared, monkeypatch):
    real_save = np.save
    written = []

    def failing_save(path, array, **kwargs):
        if len(written) == 3:
            raise OSError("disk full")
        written.append(path)
        real_save(path, array, **kwargs)

    monkeypatch.setattr(prepared_module.np, "save", failing_save)
    target = tmp_path / "prepared"
    with pytest.raises(OSError, match="disk full"):
        save_prepared(prepared, target)
    assert not target.exists(), "the final directory must not exist when the save failed"
    assert list(tmp_path.iterdir()) == [], "the temporary directory is cleaned up"
    # A failed overwrite keeps the previous complete product.
    monkeypatch.setattr(prepared_module.np, "save", real_save)
    save_prepared(prepared, target)
    monkeypatch.setattr(prepared_module.np, "save", failing_save)
    written.clear()
    with pytest.raises(OSError, match="disk full"):
        save_prepared(prepare(digits, 10, 10, 3), target)
    _assert_same(load_prepared(target), prepared)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_load_prepared_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"meta.json does not exist: .* is not a prepared "
                                                r"dataset; run the data stage"):
        load_prepared(tmp_path / "nothing")


def test_load_prepared_refuses_pickled_arrays(tmp_path, prepared):
    save_prepared(prepared, tmp_path / "p")
    np.save(tmp_path / "p" / "mean.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"allow_pickle=False"):
        load_prepared(tmp_path / "p")


def test_load_prepared_checks_format(tmp_path, prepared):
    save_prepared(prepared, tmp_path / "p")
    (tmp_path / "p" / "meta.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match=r"format 99 is not 1; re-run the data stage"):
        load_prepared(tmp_path / "p")


def _raw(**change) -> RawDataset:
    fields = dict(name="toy", train_images=np.zeros((4, 1, 2, 2), np.uint8),
                  train_labels=np.array([0, 1, 0, 1]), test_images=np.zeros((2, 1, 2, 2), np.uint8),
                  test_labels=np.array([1, 0]), classes=("a", "b"))
    return RawDataset(**{**fields, **change})


@pytest.mark.parametrize("change, message", [
    (dict(train_images=np.zeros((4, 2, 2), np.uint8)),
     r"toy train images must be a uint8 array of shape \(N, C, H, W\), got uint8 \(4, 2, 2\)"),
    (dict(test_images=np.zeros((2, 1, 2, 2), np.float32)),
     r"toy test images must be a uint8 array of shape \(N, C, H, W\), got float32"),
    (dict(test_images=np.zeros((2, 1, 3, 2), np.uint8)),
     r"train images are \(1, 2, 2\) but test images are \(1, 3, 2\)"),
    (dict(train_labels=np.array([0, 1, 0])), r"toy train: 4 images but 3 labels"),
    (dict(train_labels=np.array([0, 1, 0, 1], np.int32)),
     r"toy train labels must be an int64 array of shape \(N,\), got int32"),
    (dict(test_labels=np.array([2, 0])), r"toy test labels span 0\.\.2 but there are 2 classes"),
])
def test_raw_dataset_rejects_wrong_shapes(change, message):
    with pytest.raises(ValueError, match=message):
        _raw(**change)


def test_prepared_rejects_bad_index_and_stats():
    raw = _raw(train_images=np.arange(16, dtype=np.uint8).reshape(4, 1, 2, 2))
    good = prepare(raw, None, None, 0)
    fields = {name: getattr(good, name) for name in prepared_module.ARRAYS}
    with pytest.raises(ValueError, match=r"toy eval_train_index must be non-empty, strictly "
                                         r"increasing and within 0\.\.3"):
        Prepared("toy", raw.classes, **{**fields, "eval_train_index": np.array([2, 1])})
    with pytest.raises(ValueError, match=r"toy eval_test_index must be non-empty"):
        Prepared("toy", raw.classes, **{**fields, "eval_test_index": np.array([0, 2])})
    with pytest.raises(ValueError, match=r"toy std must be float32 \(1,\)"):
        Prepared("toy", raw.classes, **{**fields, "std": np.ones(3, np.float32)})
    for bad in (np.array([0, 1, 2]), np.array([0, 2, 1, 5]), np.arange(4, dtype=np.int32)):
        with pytest.raises(ValueError, match=r"toy train_source_index must be an int64 array, "
                                             r"strictly increasing .* \(4\)"):
            Prepared("toy", raw.classes, **fields, train_source_index=bad)
