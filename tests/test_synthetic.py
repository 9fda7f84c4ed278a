"""Synthetic sloppy data (docs/study.md B8): the input spectrum, the teacher, determinism."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from lowdim.data.synthetic import covariance_eigenvalues, make_synthetic

N_LARGE = 20_000  # relative standard deviation of a variance estimate: sqrt(2/n) = 1 %
RTOL = 5 * np.sqrt(2 / N_LARGE)
D_SMALL = 50  # the spectrum's properties do not depend on d; a small d keeps the test fast


@functools.cache
def large(c: float, basis: str):
    """A large train set and its (d, d) empirical covariance about the known mean 0."""
    data = make_synthetic(c, d=D_SMALL, n_train=N_LARGE, n_test=1, basis=basis, teacher="random")
    flat = data.train_inputs.reshape(N_LARGE, -1).astype(np.float64)
    # einsum's single-threaded loop: BLAS threads stall when the CI machine is busy
    return data, np.einsum("ni,nj->ij", flat, flat) / N_LARGE


def test_eigenvalues_follow_the_papers_formula():
    lam = covariance_eigenvalues(200, 0.5)
    assert lam[0] == pytest.approx(50 * 0.5 / 200)  # b / d with b = 50 c
    np.testing.assert_allclose(lam[1:] / lam[:-1], np.exp(-0.5))
    np.testing.assert_allclose(covariance_eigenvalues(200, 0.0), 1 / 200)  # b = 1 when c = 0


@pytest.mark.parametrize(("c", "basis", "resolved"), [
    (0.5, "axis", 0.0),      # the axis basis keeps every eigenvalue (here down to ~1e-11)
    (0.5, "random", 1e-9),   # a rotated float32 basis resolves those above ~1e-14 lambda_0
    (0.0, "random", 0.0),    # isotropic
])
def test_input_covariance_has_the_requested_spectrum(c, basis, resolved):
    data, cov = large(c, basis)
    lam = data.eigenvalues
    keep = lam >= resolved * lam[0]
    rotated = data.basis.T @ cov @ data.basis  # the covariance in the eigen-directions
    # the variance along direction k is lambda_k chi2_n / n: within 5 standard deviations
    np.testing.assert_allclose(np.diag(rotated)[keep], lam[keep], rtol=RTOL)
    # and distinct directions are uncorrelated: correlations of order 1/sqrt(n)
    off = ~np.eye(len(lam), dtype=bool) & np.outer(keep, keep)
    assert np.abs(rotated / np.sqrt(np.outer(lam, lam)))[off].max() < 5 / np.sqrt(N_LARGE)


def test_sloppy_spectrum_shows_in_the_empirical_eigenvalues():
    data, cov = large(0.5, "random")
    top = np.linalg.eigvalsh(cov)[::-1][:20]
    np.testing.assert_allclose(top, data.eigenvalues[:20], rtol=RTOL)


def test_labels_are_deterministic_given_the_seed():
    sizes = {"n_train": 1000, "n_test": 200}
    a, b = make_synthetic(0.001, seed=5, **sizes), make_synthetic(0.001, seed=5, **sizes)
    assert np.array_equal(a.train_labels, b.train_labels)
    assert np.array_equal(a.test_inputs, b.test_inputs)
    other = make_synthetic(0.001, seed=6, **sizes)
    assert not np.array_equal(a.train_labels, other.train_labels)
    # the train set does not depend on the size of the test set
    assert np.array_equal(make_synthetic(0.001, n_train=1000, n_test=10).train_inputs,
                          a.train_inputs)


@pytest.mark.parametrize("c", [0.0, 0.001, 0.5])
def test_teacher_uses_every_class_with_the_defaults(c):
    data = make_synthetic(c)
    assert data.train_inputs.shape == (5000, 1, 1, 200) and data.train_inputs.dtype == np.float32
    assert data.test_inputs.shape == (1000, 1, 1, 200)
    assert data.train_labels.dtype == np.int64
    for labels in (data.train_labels, data.test_labels):
        assert set(np.unique(labels)) == set(range(5))
    assert data.input_shape == (1, 1, 200) and data.num_classes == 5


def test_random_teacher_labels_ignore_the_inputs():
    a = make_synthetic(0.5, teacher="random")
    b = make_synthetic(0.0, teacher="random")  # other inputs, same label stream
    assert np.array_equal(a.train_labels, b.train_labels)
    counts = np.bincount(a.train_labels, minlength=5)
    assert np.all(np.abs(counts - 1000) < 5 * np.sqrt(5000 * 0.2 * 0.8))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="c must be a finite number >= 0"):
        make_synthetic(-0.1)
    with pytest.raises(ValueError, match="unknown teacher 'cnn'"):
        make_synthetic(0.5, teacher="cnn")
    with pytest.raises(ValueError, match="unknown basis 'pca'"):
        make_synthetic(0.5, basis="pca")
