"""Exceptions with messages a user can act on. Each names the file or model concerned."""

from __future__ import annotations


class FstoreError(Exception):
    """Base class of fstore's own errors."""


class AudioError(FstoreError):
    """A file that cannot be turned into usable audio (unreadable, empty, NaN/inf, ...)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class AudioTooShort(FstoreError):
    """Input shorter than a model accepts (message says how long it is and what is needed)."""


class WeightsUnavailable(FstoreError):
    """A model's weights cannot be found or fetched; the message says where to put them."""

    def __init__(self, model: str, what: str, *, cache_dir: object = None, how: str = "") -> None:
        parts = [f"{model}: weights not available: {what}"]
        if cache_dir is not None:
            parts.append(f"cache folder: {cache_dir}")
        if how:
            parts.append(how)
        super().__init__(". ".join(parts))
        self.model = model


class WeightsChecksumError(FstoreError):
    """A weight file whose sha256 differs from the published one."""


class InvalidSongId(FstoreError, ValueError):
    """A song id that could escape the store or is not a valid Zarr path."""


class UsageError(FstoreError, ValueError):
    """A request that cannot run as asked (unknown model, bad device, missing folder); ``option`` names
    the option or argument concerned (``fstore`` exits with code 2)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class StoreError(FstoreError):
    """The store cannot be read or written as required (read-only, disk full, not an fstore store)."""


class TransientStoreError(StoreError):
    """A store operation that failed, after the client's retries, on an error that may pass: the network
    or the server (HTTP 5xx, throttling) failed (:func:`featurestore.store.remote.is_transient`). Writing a
    song, it fails that song only; anywhere else it stops the run like any StoreError."""


class ConfigurationMismatch(FstoreError):
    """A run whose model configuration differs from the one its store group was computed with."""

    def __init__(self, url: str, group: str, differences: list[tuple[str, object, object]]) -> None:
        lines = [f"{url}: the {group!r} group was computed with another configuration:"]
        width = max([len(k) for k, _, _ in differences] + [6])
        lines.append(f"  {'option':<{width}}  {'in the store':<30}  this run")
        lines += [f"  {k:<{width}}  {str(old):<30}  {new}" for k, old, new in differences]
        lines.append(
            "A group holds one configuration. Write to another store (--store), keep both side by side "
            f"with --as NAME (e.g. --as {group}_2), or replace the group and recompute with --overwrite."
        )
        super().__init__("\n".join(lines))
        self.group = group
        self.differences = differences
