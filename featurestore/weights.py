"""Where every weight file comes from, and its checksum.

Shared machinery (the cache folder, sha256 verification, an atomic download that fails
fast offline) followed by one section per model that needs more than a file inside an
installed package. Nothing here imports torch.

Environment:
    ``FSTORE_CACHE``    cache folder (default: the platform's user cache, e.g. ``~/.cache/fstore``)
    ``FSTORE_OFFLINE``  set to 1 to never touch the network (also honours ``HF_HUB_OFFLINE``)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import WeightsChecksumError, WeightsUnavailable

#: seconds to wait for a connection before declaring the network unreachable
CONNECT_TIMEOUT_S = 10.0

_sha_memo: dict[tuple[str, int, int], str] = {}


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, remembered per (path, size, mtime) within the process."""
    st = os.stat(path)
    key = (os.fspath(Path(path).resolve()), st.st_size, st.st_mtime_ns)
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


def download(url: str, dest: Path, sha256: str, *, model: str, how: str) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` before the file appears.

    Raises :class:`WeightsUnavailable` within ~``CONNECT_TIMEOUT_S`` seconds when offline.
    """
    if offline():
        raise WeightsUnavailable(model, f"{dest.name} is not in the cache and downloads are off (FSTORE_OFFLINE/HF_HUB_OFFLINE)", cache_dir=dest.parent, how=how)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if h.hexdigest() != sha256:
            raise WeightsChecksumError(f"{model}: download of {url} has sha256 {h.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsUnavailable(model, f"could not download {url} ({e})", cache_dir=dest.parent, how=how) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def gunzip_verified(src: Path, dest: Path, sha256: str, what: str) -> Path:
    """Decompress ``src`` to ``dest`` atomically; ``dest`` appears only if it hashes to ``sha256``."""
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        verify_sha256(tmp, sha256, what)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


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
