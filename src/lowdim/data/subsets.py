"""Seeded, class-stratified index sets: the digits test split, the training subset and the
evaluation subsets."""

from __future__ import annotations

import numpy as np


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as a non-empty 1-D integer array, or a ValueError saying what is wrong."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a non-empty 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    return labels


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (train, test) indices into labels (N,); test_fraction of each class in test."""
    labels = _check_labels(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction = {test_fraction}: must be strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):  # sorted classes: the same draws for the same seed
        members = np.flatnonzero(labels == cls)
        # Round per class, but keep each class of >= 2 samples present in both splits.
        n_test = int(round(test_fraction * len(members)))
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) >= 2 else 0
        test_parts.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    train = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test, assume_unique=True)
    return train, test


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Per-class sample counts (K,) summing to `size`, proportional to `counts` (K,)."""
    # Largest-remainder rounding: floors first, then the biggest fractional parts get one more;
    # ties go to the lower class (stable sort), so the result is deterministic.
    exact = counts * (size / counts.sum())
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: size - quotas.sum()]] += 1
    return quotas


# The training subset draws from its own stream, SeedSequence((TRAIN_STREAM, seed)), so that it
# never shares random numbers with the evaluation subsets (default_rng(eval_seed)), even when
# train_seed equals eval_seed.
TRAIN_STREAM = 1


def balanced_quotas(counts: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class sample counts (K,) summing to `size`, as equal as the class sizes `counts` allow.

    Every class gets size // K, or all it has when it has fewer (the rest is shared among the
    others, again equally); the remainder, fewer samples than classes still open, goes one each
    to classes drawn with `rng`, so no class is favoured by its label.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quotas = np.zeros_like(counts)
    remaining = int(size)
    while remaining > 0:
        open_classes = np.flatnonzero(quotas < counts)
        share = remaining // len(open_classes)
        if share == 0:
            quotas[rng.choice(open_classes, size=remaining, replace=False)] += 1
            break
        add = np.minimum(share, counts[open_classes] - quotas[open_classes])
        quotas[open_classes] += add
        remaining -= int(add.sum())
    return quotas


def training_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted int64 indices into labels (N,): a seeded, class-balanced subset of `size`.

    Class-balanced: every class gets size // K samples (K classes present), and the remainder
    size % K goes one each to classes drawn with the seed; a class with fewer samples than its
    share gives all it has and the others share the rest equally. `size` = N keeps every sample.
    """
    labels = _check_labels(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"data.train_size = {size!r}: must be a positive integer, or None for "
                         "the whole training split")
    if size < len(classes):
        raise ValueError(f"data.train_size = {size}: a class-balanced subset needs at least one "
                         f"example of each of the {len(classes)} classes, so at least "
                         f"{len(classes)}")
    if size > len(labels):
        raise ValueError(f"data.train_size = {size}: the training split has only {len(labels)} "
                         f"examples; choose at most {len(labels)}, or null for all of them")
    rng = np.random.default_rng(np.random.SeedSequence((TRAIN_STREAM, seed)))
    quotas = balanced_quotas(counts, int(size), rng)
    parts = [rng.choice(np.flatnonzero(labels == cls), size=q, replace=False)
             for cls, q in zip(classes, quotas, strict=True)]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def evaluation_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices into labels (N,): all of them, or a seeded class-stratified `size`."""
    labels = _check_labels(labels)
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer))
                             or size <= 0):
        raise ValueError(
            f"evaluation subset size = {size!r}: must be a positive integer, or None for the "
            "whole split"
        )
    if size is None or size >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = class_quotas(counts, int(size))
    rng = np.random.default_rng(seed)
    parts = [rng.choice(np.flatnonzero(labels == cls), size=q, replace=False)
             for cls, q in zip(classes, quotas, strict=True)]
    return np.sort(np.concatenate(parts)).astype(np.int64)
