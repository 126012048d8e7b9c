"""MERT's weights: a snapshot folder of the pinned hub revision (huggingface_hub's cache), or a local one."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WeightsChecksumError, WeightsUnavailable
from ..weights import CONNECT_TIMEOUT_S, check_reachable, local_path, offline, sha256_file

MERT_REPO = "m-a-p/MERT-v1-95M"
MERT_REVISION = "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5"
#: environment variable naming a local snapshot folder (same as ``--mert-model PATH``)
MERT_ENV = "FSTORE_MERT_MODEL"
#: the small JSON files a snapshot needs besides its weights (never its remote-code .py files)
MERT_CONFIG_FILES = ("config.json", "preprocessor_config.json")
#: weight files in order of preference (safetensors needs no unpickling)
MERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MERT_HOW = f"point at a local snapshot folder with --mert-model PATH or {MERT_ENV}=PATH"


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


def _mert_download() -> Path:
    """Fetch config, preprocessor config and one weights file of the pinned revision into the hub cache."""
    from huggingface_hub.errors import EntryNotFoundError

    if not offline():
        from huggingface_hub import constants

        check_reachable(constants.ENDPOINT, model="mert", what=f"{MERT_REPO} at revision {MERT_REVISION} is not in the "
                        "Hugging Face cache", cache_dir=mert_hub_cache(), how=_MERT_HOW)
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
    local = local_path(model_path)
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


