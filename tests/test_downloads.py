"""The real torchvision download paths of CIFAR-10 and Fashion-MNIST, against a local server.

An HTTP server on 127.0.0.1 (ephemeral port, one thread, stopped after each test) serves small
files in the official formats that the tests generate: CIFAR-10's python tarball and
Fashion-MNIST's gzipped IDX files. torchvision's class attributes (URL, mirrors, md5s) are
pointed at it, so the download, md5 check and extraction are torchvision's own code. Sockets to
any other host are refused, and proxies are bypassed, so nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import socket
import struct
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lowdim.data import load_source

HOST = "127.0.0.1"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class LocalServer:
    """Files served by path on 127.0.0.1, and the paths requested so far."""

    port: int
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


@pytest.fixture
def server(monkeypatch) -> Iterator[LocalServer]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real_connect = socket.create_connection

    def local_only(address, *args, **kwargs):
        assert address[0] == HOST, f"the test tried to connect to {address}"
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    state = LocalServer(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _corrupt(payload: bytes) -> bytes:
    """The same length with one byte in the middle flipped: only the md5 can tell."""
    middle = len(payload) // 2
    return payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1:]


# --------------------------------------------------------------------------- CIFAR-10


@dataclass
class CifarArchive:
    tarball: bytes
    members: dict[str, bytes]  # file name in cifar-10-batches-py/ -> bytes
    rows: list[np.ndarray]     # data_batch_1..5, test_batch: (n, 3072) uint8
    labels: list[list[int]]


def _cifar_archive() -> CifarArchive:
    """cifar-10-python.tar.gz as the official one lays it out: cifar-10-batches-py/ with five
    data batches, a test batch and batches.meta, each a protocol-2 pickled dict with bytes keys,
    b'data' (n, 3072) uint8 (R, G, B planes) and b'labels' a list of ints."""
    rng = np.random.default_rng(3)
    members, rows, labels = {}, [], []
    for i, name in enumerate([*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]):
        n = 4 + i  # batches of different sizes, so an off-by-one in the order shows
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, n)]
        members[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": batch_labels,
                                      b"data": data,
                                      b"filenames": [b"img_%d.png" % k for k in range(n)]},
                                     protocol=2)
        rows.append(data)
        labels.append(batch_labels)
    members["batches.meta"] = pickle.dumps(
        {b"num_cases_per_batch": 4, b"label_names": [c.encode() for c in CIFAR_CLASSES],
         b"num_vis": 3072}, protocol=2)
    members["readme.html"] = b"<html>tiny CIFAR-10 for the tests</html>"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
    return CifarArchive(buffer.getvalue(), members, rows, labels)


def _serve_cifar(server: LocalServer, monkeypatch, archive: CifarArchive,
                 served: bytes) -> None:
    """Serve `served` as the archive; torchvision's CIFAR10 points at it and expects the md5s of
    `archive` (its tarball and each batch file), as it expects the official ones."""
    from torchvision.datasets import CIFAR10

    server.files["/cifar/cifar-10-python.tar.gz"] = served
    sums = {name: md5(payload) for name, payload in archive.members.items()}
    monkeypatch.setattr(CIFAR10, "url", server.url("/cifar/cifar-10-python.tar.gz"))
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive.tarball))
    monkeypatch.setattr(CIFAR10, "train_list",
                        [[f"data_batch_{j}", sums[f"data_batch_{j}"]] for j in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": sums["batches.meta"]})


def test_cifar10_downloads_from_the_archive_url(tmp_path, server, monkeypatch):
    archive = _cifar_archive()
    _serve_cifar(server, monkeypatch, archive, archive.tarball)
    root = tmp_path / "data"
    raw = load_source("cifar10", root=root, download=True)
    assert set(server.requests) == {"/cifar/cifar-10-python.tar.gz"}
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.tarball
    assert (root / "cifar-10-batches-py" / "test_batch").read_bytes() == \
        archive.members["test_batch"]
    n_train = sum(len(r) for r in archive.rows[:5])
    assert raw.name == "cifar10" and raw.classes == CIFAR_CLASSES
    assert raw.train_images.shape == (n_train, 3, 32, 32) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (len(archive.rows[5]), 3, 32, 32)
    np.testing.assert_array_equal(raw.train_images.reshape(n_train, 3072),
                                  np.concatenate(archive.rows[:5]))
    np.testing.assert_array_equal(raw.test_images.reshape(-1, 3072), archive.rows[5])
    np.testing.assert_array_equal(raw.train_labels, np.concatenate(archive.labels[:5]))
    np.testing.assert_array_equal(raw.test_labels, archive.labels[5])
    assert raw.train_labels.dtype == np.int64
    first = archive.rows[0][0]  # R, G, B planes of 32x32, row-major
    assert raw.train_images[0, 1, 2, 3] == first[1024 + 2 * 32 + 3]
    # Downloaded once: the next load reads the extracted folder, even with download on.
    count = len(server.requests)
    again = load_source("cifar10", root=root, download=True)
    assert len(server.requests) == count
    np.testing.assert_array_equal(again.train_images, raw.train_images)


def test_cifar10_download_refuses_a_corrupted_archive(tmp_path, server, monkeypatch):
    archive = _cifar_archive()
    _serve_cifar(server, monkeypatch, archive, _corrupt(archive.tarball))
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="File not found or corrupted"):
        load_source("cifar10", root=root, download=True)
    assert server.requests and set(server.requests) == {"/cifar/cifar-10-python.tar.gz"}
    assert not (root / "cifar-10-batches-py").exists(), "nothing is extracted"
    # The corrupted file left behind is refused by the loader's own md5 check too.
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz is corrupted or incomplete"):
        load_source("cifar10", root=root, download=False)


# --------------------------------------------------------------------------- Fashion-MNIST


def _idx(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x00000803/0x00000801, big-endian sizes, then data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fashion_files() -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """The four arrays and their gzipped IDX files, named as the official release names them."""
    rng = np.random.default_rng(4)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (9, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 9).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5).astype(np.uint8),
    }
    gzipped = {f"{name}.gz": gzip.compress(_idx(a), mtime=0) for name, a in arrays.items()}
    return arrays, gzipped


def _serve_fashion(server: LocalServer, monkeypatch, gzipped: dict[str, bytes],
                   served: dict[str, bytes]) -> None:
    from torchvision.datasets import FashionMNIST

    server.files.update({f"/fashion/{name}": payload for name, payload in served.items()})
    monkeypatch.setattr(FashionMNIST, "mirrors", [server.url("/fashion/")])
    monkeypatch.setattr(FashionMNIST, "resources",
                        [(name, md5(payload)) for name, payload in gzipped.items()])


def test_fashion_mnist_downloads_from_the_mirror(tmp_path, server, monkeypatch):
    arrays, gzipped = _fashion_files()
    _serve_fashion(server, monkeypatch, gzipped, gzipped)
    root = tmp_path / "data"
    raw = load_source("fashion-mnist", root=root, download=True)
    assert set(server.requests) == {f"/fashion/{name}" for name in gzipped}
    assert raw.name == "fashion-mnist" and raw.classes[9] == "Ankle boot"
    assert raw.train_images.shape == (9, 1, 28, 28) and raw.test_images.shape == (5, 1, 28, 28)
    assert raw.train_images.dtype == np.uint8 and raw.train_labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train_images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.test_images[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(raw.test_labels, arrays["t10k-labels-idx1-ubyte"])
    # torchvision's layout (<root>/FashionMNIST/raw) is found again without downloading.
    count = len(server.requests)
    again = load_source("fashion-mnist", root=root, download=False)
    assert len(server.requests) == count
    np.testing.assert_array_equal(again.test_images, raw.test_images)


def test_fashion_mnist_download_refuses_a_corrupted_file(tmp_path, server, monkeypatch):
    arrays, gzipped = _fashion_files()
    name = "train-labels-idx1-ubyte.gz"
    served = {**gzipped, name: _corrupt(gzipped[name])}
    _serve_fashion(server, monkeypatch, gzipped, served)
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match=r"(?s)Error downloading train-labels-idx1-ubyte.gz"
                                           r".*File not found or corrupted"):
        load_source("fashion-mnist", root=root, download=True)
    assert "/fashion/train-labels-idx1-ubyte.gz" in server.requests
    raw_dir = root / "FashionMNIST" / "raw"
    assert not (raw_dir / "train-labels-idx1-ubyte").exists(), "nothing is extracted"
    with pytest.raises(FileNotFoundError, match="lacks the IDX files"):
        load_source("fashion-mnist", root=root, download=False)
