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


class ExportTarget(FstoreError):
    """An export target that cannot take the export, found before any work. ``kind`` says why, each with
    its own exit code (``fstore export-*``): ``"file"`` a file is in the way (``--output-base`` is a file,
    or the HDF5 file exists and ``--overwrite`` was not given), ``"folder"`` a folder is where the HDF5
    file goes, ``"read-only"`` it cannot be written, ``"store"`` it is the store being read or lies inside it."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class TransientStoreError(StoreError):
    """A store operation that failed, after the client's retries, on an error that may pass: the network
    or the server (HTTP 5xx, throttling) failed (:func:`featurestore.store.remote.is_transient`). Writing a
    song, it fails that song only; anywhere else it stops the run like any StoreError."""


class ConfigurationMismatch(StoreError):
    """A run whose model configuration differs from the one its store group was computed with (or was replaced
    with by another run while this one ran: the run stops, as when the store cannot be written)."""

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


class CorruptArray(StoreError):
    """A stored array that cannot be read as written: a chunk missing, a checksum mismatch, bytes that do not
    decode, or metadata that cannot be read. Never read as zeros: the message names the store, the group,
    the song, the chunk and the cause, and ``fstore validate --fix`` then ``fstore extract`` recompute it."""

    #: the causes, as they are named in messages and reports
    CAUSES = ("missing chunk", "checksum mismatch", "undecodable bytes", "unreadable metadata", "shape mismatch")

    def __init__(self, store: str, group: str, song_id: str, cause: str, chunk: str | None = None,
                 detail: str = "") -> None:
        where = f"{store}: {group}/{song_id}" + (f", chunk {chunk}" if chunk else "")
        super().__init__(f"{where}: damaged ({cause}{': ' + detail if detail else ''})")
        self.store, self.group, self.song_id, self.cause, self.chunk, self.detail = store, group, song_id, cause, chunk, detail

    @property
    def what(self) -> str:
        """The cause, the chunk and the detail, without the store and song (a report lists those apart)."""
        return self.cause + (f" in chunk {self.chunk}" if self.chunk else "") + (f": {self.detail}" if self.detail else "")


class SongRewritten(StoreError):
    """A song's array changed while it was read (another run rewrote it): not damage; read it again once the
    other run has written it."""

    def __init__(self, store: str, group: str, song_id: str) -> None:
        super().__init__(f"{store}: {group}/{song_id} was rewritten (by another run) while it was read; "
                         "read it again once it is complete")
        self.store, self.group, self.song_id = store, group, song_id


class SkippedSongsWarning(UserWarning):
    """A collection (``pooled``, ``stack``) left out songs another run rewrote while they were read; the
    warning names each."""


class DamagedSongsWarning(SkippedSongsWarning):
    """A collection (``pooled``, ``stack``) left out damaged songs; the warning names each and why."""
