"""What every model's weight lookup shares: the cache folder, sha256 verification, the user's
local file, files inside installed packages, and a download that fails fast offline.

Each model's own weights (names, checksums, where they come from) live beside it in
``extractors/_<model>_weights.py`` (madmom's in its module). Nothing here imports torch.

Environment:
    ``FSTORE_CACHE``    cache folder (default: the platform's user cache, e.g. ``~/.cache/fstore``)
    ``FSTORE_OFFLINE``  set to 1 to never touch the network (also honours ``HF_HUB_OFFLINE``)
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ._atomic import atomic_path
from .errors import WeightsChecksumError, WeightsUnavailable

#: seconds to wait for a connection before declaring the network unreachable
CONNECT_TIMEOUT_S = 10.0
#: seconds a started download may stall before it counts as failed
READ_TIMEOUT_S = 60.0
#: further attempts after a failed or corrupt download (pooch waits 1 s, 2 s, ... between them)
DOWNLOAD_RETRIES = 3

_sha_memo: dict[tuple[str, int, int, int, int], str] = {}


def cache_dir() -> Path:
    """The folder downloaded weights live in (``FSTORE_CACHE`` overrides the platform default)."""
    env = os.environ.get("FSTORE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fstore"))


def offline() -> bool:
    """True when the user asked for no network access."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes") for v in ("FSTORE_OFFLINE", "HF_HUB_OFFLINE"))


def local_path(chosen: str | None) -> Path | None:
    """The local file or folder the user chose (a config's path option, which its environment
    variable fills), with ``~`` expanded, or None when they chose none."""
    return Path(chosen).expanduser() if chosen else None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, remembered within the process per (path, size, mtime, ctime, inode):
    the ctime moves on every write and cannot be set back, so a file rewritten with its size and mtime
    restored is hashed again (``--hash-sources`` relies on it)."""
    st = os.stat(path)
    key = (os.fspath(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _sha_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _sha_memo[key] = h.hexdigest()
    return _sha_memo[key]


def verify_sha256(path: str | os.PathLike[str], expected: str, what: str) -> str:
    """Raise :class:`WeightsChecksumError` unless ``path`` hashes to ``expected``; return the digest."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsChecksumError(
            f"{what}: {path} has sha256 {actual}, expected {expected}; "
            "the file is corrupt or not the published one (delete it to download it again)"
        )
    return actual


def package_file(package: str, relative: str) -> Path | None:
    """Path of a data file shipped inside an installed (namespace) package, or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        return None
    if spec is None:
        return None
    for base in spec.submodule_search_locations or []:
        candidate = Path(base) / relative
        if candidate.is_file():
            return candidate
    return None


def check_reachable(url: str, *, model: str, what: str, cache_dir: object, how: str) -> None:
    """Raise :class:`WeightsUnavailable` within ``CONNECT_TIMEOUT_S`` when ``url``'s host cannot be reached.

    HTTP clients retry a failed connection with back-off (minutes in all); one direct attempt
    answers at once. Skipped behind a proxy, which only the HTTP client knows how to use.
    ``what`` says what was missing, e.g. "x.h5 is not in the cache".
    """
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if proxies.get(parts.scheme) or proxies.get("all"):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise WeightsUnavailable(model, f"{what} and {parts.hostname} cannot be reached ({e})",
                                 cache_dir=cache_dir, how=how) from e


def download_gz(url: str, dest: Path, *, gz_sha256: str, sha256: str, model: str, how: str) -> Path:
    """Download the gzip file ``url`` into ``dest``'s folder and decompress it to ``dest``.

    The download (pooch: progress bar on a terminal, :data:`DOWNLOAD_RETRIES` retries) must
    hash to ``gz_sha256`` and the decompressed file to ``sha256`` before ``dest`` appears
    (written atomically); the verified archive is removed afterwards. Raises
    :class:`WeightsUnavailable` without touching the network when offline, within about
    ``CONNECT_TIMEOUT_S`` when the host is unreachable, and :class:`WeightsChecksumError` for
    a file that is not the published one.
    """
    missing = f"{dest.name} is not in the cache"
    if offline():
        raise WeightsUnavailable(model, f"{missing} and downloads are off (FSTORE_OFFLINE/HF_HUB_OFFLINE)",
                                 cache_dir=dest.parent, how=how)
    check_reachable(url, model=model, what=missing, cache_dir=dest.parent, how=how)

    import pooch
    import requests

    def decompress_verified(archive: str, action: str, fetcher: pooch.Pooch) -> str:
        with atomic_path(dest) as tmp:
            # "download" makes Decompress write even though the temporary file exists (empty)
            pooch.Decompress(method="gzip", name=tmp.name)(archive, "download", fetcher)
            verify_sha256(tmp, sha256, f"{model}: {url} decompressed")
        return str(dest)

    archive = url.rsplit("/", 1)[-1]
    fetcher = pooch.create(path=dest.parent, base_url="", registry={archive: f"sha256:{gz_sha256}"},
                           urls={archive: url}, retry_if_failed=DOWNLOAD_RETRIES)
    downloader = pooch.HTTPDownloader(timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), progressbar=sys.stderr.isatty())
    try:
        fetcher.fetch(archive, processor=decompress_verified, downloader=downloader)
    except requests.RequestException as e:
        raise WeightsUnavailable(model, f"could not download {url} ({e})", cache_dir=dest.parent, how=how) from e
    except ValueError as e:  # pooch's hash mismatch after its retries
        raise WeightsChecksumError(f"{model}: the download of {url} is not the published file ({e})") from e
    (dest.parent / archive).unlink(missing_ok=True)
    return dest
