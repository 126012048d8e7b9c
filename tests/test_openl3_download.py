"""OpenL3's download through pooch, served from a local HTTP server: decompression, checksums,
atomic writes, retries, and failing fast when the host cannot be reached."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import featurestore.extractors._openl3_weights as ow
import featurestore.weights as weights
from featurestore.errors import WeightsChecksumError, WeightsUnavailable

ARCHIVE = "served.h5.gz"


class Server:
    """Serves ``ARCHIVE`` from memory; ``corrupt_next`` responses carry damaged bytes first."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.corrupt_next = 0
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                if self.path != f"/{ARCHIVE}":
                    self.send_error(404)
                    return
                body = server.payload
                if server.corrupt_next:
                    server.corrupt_next -= 1
                    body = body[: len(body) // 2] + bytes(len(body) - len(body) // 2)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/{ARCHIVE}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def h5(tmp_path: Path) -> Path:
    """A small generated HDF5 file standing in for the official weights."""
    import h5py

    path = tmp_path / "generated.h5"
    with h5py.File(path, "w") as f:
        f["conv/kernel"] = np.random.default_rng(0).standard_normal((3, 3, 1, 8)).astype(np.float32)
    return path


@pytest.fixture
def server(h5: Path, tmp_path: Path, monkeypatch) -> Iterator[Server]:
    """A server of ``h5`` gzipped, with the URL and both checksums of openl3 pointing at it."""
    payload = gzip.compress(h5.read_bytes())
    srv = Server(payload)
    monkeypatch.setattr(ow, "OPENL3_URL", srv.url)
    monkeypatch.setattr(ow, "OPENL3_GZ_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(ow, "OPENL3_SHA256", hashlib.sha256(h5.read_bytes()).hexdigest())
    monkeypatch.setattr(weights, "DOWNLOAD_RETRIES", 0)
    monkeypatch.setenv("FSTORE_CACHE", str(tmp_path / "cache"))
    for var in ("FSTORE_OFFLINE", "HF_HUB_OFFLINE", "FSTORE_OPENL3_WEIGHTS", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _cache_listing(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache" / "openl3"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_decompresses_verifies_and_is_done_once(server: Server, h5: Path, tmp_path: Path, monkeypatch) -> None:
    path, digest, source = ow.openl3_weights(None)
    assert path == tmp_path / "cache" / "openl3" / ow.OPENL3_FILE and source == server.url
    assert path.read_bytes() == h5.read_bytes() and digest == hashlib.sha256(h5.read_bytes()).hexdigest()
    assert _cache_listing(tmp_path) == [ow.OPENL3_FILE]  # the archive and temporary files are gone
    assert server.requests == 1
    monkeypatch.setenv("FSTORE_OFFLINE", "1")  # the cached copy is used without the network
    assert ow.openl3_weights(None) == (path, digest, source) and server.requests == 1


def test_archive_with_a_wrong_checksum_is_refused_and_a_later_try_succeeds(server: Server, tmp_path: Path) -> None:
    server.corrupt_next = 1
    with pytest.raises(WeightsChecksumError, match="not the published file"):
        ow.openl3_weights(None)
    assert _cache_listing(tmp_path) == []  # nothing under the final names, no half file
    path, _, _ = ow.openl3_weights(None)
    assert path.is_file() and _cache_listing(tmp_path) == [ow.OPENL3_FILE] and server.requests == 2


def test_decompressed_file_with_a_wrong_checksum_leaves_nothing(server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ow, "OPENL3_SHA256", "0" * 64)
    with pytest.raises(WeightsChecksumError, match="decompressed"):
        ow.openl3_weights(None)
    assert ow.OPENL3_FILE not in _cache_listing(tmp_path)
    assert not [n for n in _cache_listing(tmp_path) if n.endswith(".partial")]


def test_a_corrupt_download_is_retried(server: Server, monkeypatch) -> None:
    monkeypatch.setattr(weights, "DOWNLOAD_RETRIES", 1)
    server.corrupt_next = 1
    path, digest, _ = ow.openl3_weights(None)
    assert server.requests == 2 and digest == ow.OPENL3_SHA256 and path.is_file()


def test_an_http_error_is_weights_unavailable_with_the_hint(server: Server, monkeypatch) -> None:
    monkeypatch.setattr(ow, "OPENL3_URL", server.url.replace(ARCHIVE, "missing.h5.gz"))
    with pytest.raises(WeightsUnavailable, match="404.*--openl3-weights PATH"):
        ow.openl3_weights(None)


def test_unreachable_host_fails_fast_without_retries(server: Server, monkeypatch) -> None:
    """A host nobody listens on: one connection attempt, not pooch's retries with back-off."""
    import pooch

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("pooch must not be asked to download from an unreachable host")

    monkeypatch.setattr(weights, "DOWNLOAD_RETRIES", 3)
    monkeypatch.setattr(pooch, "create", never)
    server.httpd.shutdown()
    server.httpd.server_close()  # the port is now closed: connections are refused
    import socket

    attempts = []
    connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: attempts.append(args) or connect(*args, **kwargs))
    with pytest.raises(WeightsUnavailable, match="cannot be reached.*FSTORE_OPENL3_WEIGHTS"):
        ow.openl3_weights(None)
    assert len(attempts) == 1  # one refused connection answers at once: no retries with back-off


def test_offline_does_not_touch_the_network(server: Server, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="downloads are off"):
        ow.openl3_weights(None)
    assert server.requests == 0
