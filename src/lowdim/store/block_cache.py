"""The distances stage's block cache: the distance blocks of each pair of runs on disk, so a
rerun computes only the blocks of new or changed runs (`lowdim.geometry.distance_blocks`).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from lowdim.store.atomic import atomic_file

log = logging.getLogger(__name__)


class BlockCache:
    """Distance blocks on disk, in segment files: <root>/<namespace>/<segment>.npz.

    A computation that adds blocks writes a segment (an uncompressed npz whose members are
    named by block key) of the blocks it has finished every `flush_seconds` while it runs, and
    one of the rest at its end, so the file count grows with the number of incremental runs and
    their length, not with the number of blocks, and an interrupted computation keeps the blocks
    it finished (its rerun reads them). A plain directory outside the DVC outputs (see
    `lowdim.geometry.distance_blocks`): deleting it is always safe. Segments are written
    atomically, block by block (memory does not hold them all), so a killed process leaves only
    complete segments (and perhaps a hidden temporary file, which is never read), and are read
    with allow_pickle=False.
    """

    def __init__(self, root: str | Path, flush_seconds: float = 60.0) -> None:
        if not flush_seconds >= 0:
            raise ValueError(f"flush_seconds must be >= 0, got {flush_seconds!r}")
        self.root = Path(root)
        self.flush_seconds = float(flush_seconds)

    def index(self, namespace: str) -> dict[str, Path]:
        """Block key -> segment holding it, over every readable segment of `namespace`.

        A key found in several segments maps to the newest: a block rewritten after a damaged
        copy was found wins over it.
        """
        found = {}
        segments = (self.root / namespace).glob("[!.]*.npz")  # not temporary files
        for path in sorted(segments, key=lambda f: (f.stat().st_mtime_ns, f.name)):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except (OSError, zipfile.BadZipFile) as err:
                log.warning("ignoring unreadable cache segment %s (%s); delete it", path, err)
                continue
            found.update({name.removesuffix(".npy"): path for name in names})
        return found

    def load(self, index: Mapping[str, Path], keys: Iterable[str]
             ) -> Iterator[tuple[str, np.ndarray]]:
        """(key, block) for each of `keys`, reading each segment once."""
        by_segment: dict[Path, list[str]] = {}
        for key in keys:
            by_segment.setdefault(index[key], []).append(key)
        for path, wanted in by_segment.items():
            with np.load(path, allow_pickle=False) as npz:
                for key in wanted:
                    yield key, npz[key]

    def shapes(self, index: Mapping[str, Path], keys: Iterable[str]
               ) -> dict[str, tuple[int, ...] | None]:
        """key -> shape of each of `keys`, from the block's header alone (None: unreadable)."""
        by_segment: dict[Path, list[str]] = {}
        for key in keys:
            by_segment.setdefault(index[key], []).append(key)
        found: dict[str, tuple[int, ...] | None] = {}
        for path, wanted in by_segment.items():
            found.update(dict.fromkeys(wanted))
            try:
                with zipfile.ZipFile(path) as zf:
                    for key in wanted:
                        with zf.open(f"{key}.npy") as member:
                            version = np.lib.format.read_magic(member)
                            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                    else np.lib.format.read_array_header_2_0)
                            found[key] = tuple(read(member)[0])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                log.warning("ignoring unreadable cache segment %s (%s); delete it", path, err)
        return found

    def save(self, namespace: str, blocks: Iterable[tuple[str, np.ndarray]], name: str) -> Path:
        """Write (key, block) pairs as the segment `name` of `namespace`, atomically."""
        final = self.root / namespace / f"{name}.npz"
        with atomic_file(final) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                         allowZip64=True) as zf:
            for key, block in blocks:
                # float64, or float32 blocks of a float32 matrix (their own namespace)
                dtype = np.float32 if np.asarray(block).dtype == np.float32 else np.float64
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(block, dtype),
                                              allow_pickle=False)
        return final
