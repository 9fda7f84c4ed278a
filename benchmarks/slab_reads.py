"""How the products with a stored D read its row slabs: in place (a short-lived memory map of
each slab, `store.arrays.row_slab`, what `eigen.d_product` does) against a copy with `pread`
(`NpyFile.read_rows`, what it did before).

Writes an (M, M) float64 matrix of random values to `--workdir`, then times one product pass
(every 64 MiB slab times an (M, 60) block, as the randomized solver's) each way, alternating,
with the file's pages in the page cache ("warm") and after dropping them (`posix_fadvise`
DONTNEED, "cold"); prints the fastest and the median time of each, their ratio copy / in place,
and whether the two results are the same bytes. Cold reads on a virtual disk vary a lot from
one pass to the next: use several repeats.

    python benchmarks/slab_reads.py --workdir /tmp/slabs --m 12000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from lowdim.geometry.eigen import DEFAULT_BLOCK_BYTES, d_product, slabs
from lowdim.store.arrays import NpyFile

BLOCK = 60  # vectors per product (the randomized solver's order of magnitude)


def write_matrix(path: Path, m: int) -> NpyFile:
    """A new (m, m) float64 .npy of uniform values, written in row blocks and synced."""
    out = NpyFile.create(path, (m, m), np.float64)
    rng = np.random.default_rng(0)
    for start in range(0, m, 500):
        out.write_rows(start, rng.random((min(500, m - start), m)))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return out


def drop_cache(path: Path) -> None:
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def product(d: NpyFile, x: np.ndarray, in_place: bool) -> np.ndarray:
    """One pass: `eigen.d_product` itself (in place), or its slabs copied out with pread."""
    if in_place:
        return d_product(d, x, block_bytes=DEFAULT_BLOCK_BYTES)
    y = np.empty((d.shape[0], x.shape[1]))
    for rows in slabs(d.shape[0], DEFAULT_BLOCK_BYTES):
        y[rows] = d.read_rows(rows.start, rows.stop) @ x
    return y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--m", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"d{args.m}.npy"
    d = write_matrix(path, args.m)
    x = np.random.default_rng(1).standard_normal((args.m, BLOCK))
    print(f"M = {args.m}: D {d.nbytes / 2**30:.2f} GiB, {os.cpu_count()} CPUs, {path}")
    try:
        for cold in (False, True):
            times = {True: [], False: []}
            same = True
            for r in range(args.repeat):
                results = {}
                for in_place in ((True, False) if r % 2 else (False, True)):
                    if cold:
                        drop_cache(path)
                    start = time.perf_counter()
                    results[in_place] = product(d, x, in_place)
                    times[in_place].append(time.perf_counter() - start)
                same &= np.array_equal(results[True], results[False])
            for name, pick in (("fastest", min), ("median", np.median)):
                copy, place = pick(times[False]), pick(times[True])
                print(f"{'cold' if cold else 'warm'} ({name} of {args.repeat}): copy (pread) "
                      f"{copy:.2f} s, in place (map) {place:.2f} s, ratio copy / in place "
                      f"{copy / place:.2f}; same bytes: {same}")
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
