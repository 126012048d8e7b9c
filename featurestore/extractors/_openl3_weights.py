"""OpenL3's weights: the official mel256/music file, downloaded once into the cache, or a local file."""

from __future__ import annotations

from pathlib import Path

from ..weights import cache_dir, download_gz, local_path, sha256_file, verify_sha256
from ..errors import WeightsUnavailable

#: the official weights file as openl3 names it once decompressed, and as published (CC BY 4.0)
OPENL3_FILE = "openl3_audio_mel256_music.h5"
OPENL3_GZ = "openl3_audio_mel256_music-v0_4_0.h5.gz"
OPENL3_URL = "https://github.com/marl/openl3/raw/models/" + OPENL3_GZ
OPENL3_GZ_SHA256 = "e379f41e880b78e157c199ebddac80d3764e6a46282bcccdbe875bcf538f9afd"
OPENL3_SHA256 = "624ee7b1dd5ff87e18073f66fd8b2052bebb8ac70210e9c0937c0c940c63e9d6"
#: environment variable naming a local weights file (same as ``--openl3-weights PATH``)
OPENL3_ENV = "FSTORE_OPENL3_WEIGHTS"


def _how() -> str:
    return f"download {OPENL3_URL} and point at the gunzipped file with --openl3-weights PATH or {OPENL3_ENV}=PATH"


def openl3_cache() -> Path:
    """Where the downloaded, decompressed official file lives."""
    return cache_dir() / "openl3" / OPENL3_FILE


def openl3_weights(weights_path: str | None) -> tuple[Path, str, str]:
    """Locate the OpenL3 mel256/music weights; return (file, sha256, source).

    A local file is used as given, whatever its digest (converted or fine-tuned weights are
    legitimate; the digest recorded is its own). Otherwise the official file from the cache,
    verified, or downloaded once (gz verified, decompressed atomically, verified again).
    Raises :class:`WeightsUnavailable` without touching the network when offline.
    """
    local = local_path(weights_path)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailable("openl3", f"{local} does not exist", how=_how())
        return local, sha256_file(local), str(local)
    cached = openl3_cache()
    if not cached.is_file():
        download_gz(OPENL3_URL, cached, gz_sha256=OPENL3_GZ_SHA256, sha256=OPENL3_SHA256, model="openl3", how=_how())
    return cached, verify_sha256(cached, OPENL3_SHA256, "openl3"), OPENL3_URL
