"""The Zarr v3 layout of an fstore store: one group per model, one array per song.

::

    features.zarr/
      zarr.json                 root attrs: fstore_version, schema_version, created
      <model>/                  group attrs: the extractor's description (time axis, dims, fingerprint, ...)
        <song_id>               float32 array, dimension_names = dims; attrs: time axis, duration_s,
                                source, fingerprint, ..., and ``complete: true`` written last
      _failures/<model>/<song_id>   a group whose attrs record why that (song, model) failed
      _leases/<song_id>             while a run works on a song: which process (host, pid, run id, time)

Writing rules (after zarr-python's concurrency doctrine: metadata must not be modified
concurrently): each (model, song) array has exactly one writer, which writes the data and
only then sets ``complete``; model groups are created by the coordinator before work is
handed out. An array without ``complete`` is not a result: readers skip it and
``--skip-existing`` redoes it. Failures live in their own node per (model, song), so
recording one never rewrites shared metadata.

This module knows nothing of models: it stores arrays and attributes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import time
import unicodedata
import uuid
from typing import Any, Iterator, Mapping

import numpy as np

from .errors import InvalidSongId, StoreError

SCHEMA_VERSION = 1
FAILURES = "_failures"
LEASES = "_leases"
#: a lease older than this is stale even if its owner looks alive (a wedged or remote run)
LEASE_TTL_S = 6 * 3600
#: target bytes per chunk along time (one chunk for a typical song, bounded for long ones)
CHUNK_BYTES = 8 << 20

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def validate_song_id(song_id: str) -> str:
    """Return ``song_id`` (NFC-normalised) if it is a safe relative Zarr path, else raise InvalidSongId.

    Rejected: empty ids, absolute paths, ``.``/``..``/empty components, backslashes, control
    characters, and components Zarr reserves (starting with ``__``) or that fstore uses (``_failures``).
    """
    if not isinstance(song_id, str) or not song_id:
        raise InvalidSongId(f"invalid song id {song_id!r}: empty")
    sid = unicodedata.normalize("NFC", song_id)
    if sid.startswith("/") or re.match(r"^[A-Za-z]:", sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: absolute paths are not allowed")
    if _FORBIDDEN_CHARS.search(sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: backslashes and control characters are not allowed")
    for part in sid.split("/"):
        if part in ("", ".", ".."):
            raise InvalidSongId(f"invalid song id {song_id!r}: empty, '.' or '..' path components are not allowed")
        if part.startswith("__") or part in (FAILURES, LEASES, "zarr.json"):
            raise InvalidSongId(f"invalid song id {song_id!r}: component {part!r} is reserved")
    return sid


def time_chunk(shape: tuple[int, ...], time_axis: int, itemsize: int = 4) -> tuple[int, ...]:
    """Chunk shape: whole along every dim but time, about :data:`CHUNK_BYTES` along time."""
    per_step = itemsize * int(np.prod([s for i, s in enumerate(shape) if i != time_axis], dtype=np.int64))
    steps = max(1, min(shape[time_axis], CHUNK_BYTES // max(per_step, 1)))
    return tuple(steps if i == time_axis else max(1, s) for i, s in enumerate(shape))


class FeatureStore:
    """Read and write an fstore Zarr store at a local path or fsspec URL.

    ``mode="r"`` opens an existing store read-only; ``mode="a"`` opens or creates it.
    """

    def __init__(self, url: str, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> None:
        import zarr

        self.url = str(url)
        self.mode = mode
        self.storage_options = dict(storage_options) if storage_options else None
        try:
            self.root = zarr.open_group(self.url, mode=mode, storage_options=dict(storage_options or {}) or None)
        except FileNotFoundError as e:
            raise StoreError(f"{self.url}: no store here") from e
        except OSError as e:
            raise StoreError(f"{self.url}: cannot open ({e})") from e
        except Exception as e:  # zarr raises a variety of errors for non-stores
            raise StoreError(f"{self.url}: cannot open as a Zarr store ({e})") from e
        self.run_id = uuid.uuid4().hex
        attrs = self.root.attrs.asdict()
        if "schema_version" not in attrs:
            if mode == "r":
                if list(self.root.keys()):
                    raise StoreError(f"{self.url}: a Zarr group, but not an fstore store (no schema_version)")
                raise StoreError(f"{self.url}: no fstore store here")
            from . import __version__

            try:
                self.root.attrs.update({"fstore_version": __version__, "schema_version": SCHEMA_VERSION, "created": now_iso()})
            except OSError as e:
                raise StoreError(f"{self.url}: cannot create the store ({e})") from e
        elif attrs["schema_version"] > SCHEMA_VERSION:
            raise StoreError(f"{self.url}: written by a newer fstore (schema {attrs['schema_version']}); upgrade fstore")

    # -- models ----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model groups present, in name order."""
        return sorted(k for k in self.root.group_keys() if k not in (FAILURES, LEASES))

    def model_attrs(self, model: str) -> dict[str, Any]:
        return self.root[model].attrs.asdict()

    def ensure_model(self, model: str, attrs: Mapping[str, Any]) -> None:
        """Create or update a model's group (coordinator only, before songs are written)."""
        group = self.root.require_group(model)
        if group.attrs.asdict() != dict(attrs):
            group.attrs.put(dict(attrs))

    # -- songs -----------------------------------------------------------------------------------
    def _iter_arrays(self, model: str) -> Iterator[tuple[str, Any]]:
        import zarr

        if model not in self.root:
            return
        group = self.root[model]
        try:
            members = list(group.members(max_depth=None))
        except Exception as e:
            raise StoreError(f"{self.url}/{model}: cannot list ({e})") from e
        for name, node in members:
            if isinstance(node, zarr.Array):
                yield name, node

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        """Song ids stored for ``model`` (only complete arrays unless ``complete_only=False``)."""
        return sorted(
            name for name, arr in self._iter_arrays(model) if not complete_only or arr.attrs.get("complete") is True
        )

    def array(self, model: str, song_id: str, complete_only: bool = True) -> Any | None:
        """The zarr array of (model, song), or None when absent, unreadable or (by default) incomplete."""
        import zarr

        path = f"{model}/{validate_song_id(song_id)}"
        try:
            node = self.root[path]
        except KeyError:
            return None
        except Exception:  # truncated metadata from an interrupted write
            return None
        if not isinstance(node, zarr.Array):
            return None
        if complete_only and node.attrs.get("complete") is not True:
            return None
        return node

    def song_attrs(self, model: str, song_id: str) -> dict[str, Any] | None:
        arr = self.array(model, song_id, complete_only=False)
        return None if arr is None else arr.attrs.asdict()

    def write(self, model: str, song_id: str, data: np.ndarray, dims: tuple[str, ...], attrs: Mapping[str, Any]) -> None:
        """Write one song's features: data first, then ``complete: true``.

        Raises StoreError when the store cannot be written (read-only, disk full): such an
        error stops a run, unlike a bad audio file.
        """
        sid = validate_song_id(song_id)
        data = np.ascontiguousarray(data, dtype=np.float32)
        if len(dims) != data.ndim:
            raise ValueError(f"dims {dims} do not match data of shape {data.shape}")
        self._check_no_collision(model, sid)
        try:
            arr = self.root.create_array(
                f"{model}/{sid}",
                shape=data.shape,
                dtype="float32",
                chunks=time_chunk(data.shape, dims.index("time")),
                dimension_names=dims,
                attributes={**attrs, "dims": list(dims), "written": now_iso()},
                overwrite=True,
            )
            arr[...] = data
            arr.attrs["complete"] = True
        except OSError as e:
            raise StoreError(f"cannot write {model}/{sid} to {self.url}: {e}") from e

    def _check_no_collision(self, model: str, sid: str) -> None:
        """A song id must not be a folder of other songs, nor lie inside another song ("a" vs "a/b")."""
        import zarr

        parts = sid.split("/")
        for i in range(1, len(parts)):
            parent = f"{model}/{'/'.join(parts[:i])}"
            if parent in self.root and isinstance(self.root[parent], zarr.Array):
                raise InvalidSongId(f"song id {sid!r} would lie inside song {'/'.join(parts[:i])!r}")
        path = f"{model}/{sid}"
        if path in self.root and isinstance(self.root[path], zarr.Group):
            raise InvalidSongId(f"song id {sid!r} is also a folder of songs; rename the file or the folder")

    def remove(self, model: str, song_id: str) -> None:
        path = f"{model}/{validate_song_id(song_id)}"
        if path in self.root:
            del self.root[path]

    # -- failures --------------------------------------------------------------------------------
    def record_failure(self, model: str, song_id: str, error: str, error_type: str, source: Mapping[str, Any] | None) -> None:
        """Remember why (song, model) failed; one node per pair, so no shared metadata is rewritten."""
        attrs = {"model": model, "song_id": song_id, "error": error, "error_type": error_type, "time": now_iso()}
        if source is not None:
            attrs["source"] = dict(source)
        try:
            sid = validate_song_id(song_id)
        except InvalidSongId:
            sid = f"_invalid/{abs(hash(song_id))}"
        try:
            self.root.require_group(f"{FAILURES}/{model}/{sid}").attrs.update(attrs)
        except OSError as e:
            raise StoreError(f"cannot record a failure in {self.url}: {e}") from e

    def clear_failure(self, model: str, song_id: str) -> None:
        path = f"{FAILURES}/{model}/{validate_song_id(song_id)}"
        try:
            if path in self.root:
                del self.root[path]
        except OSError as e:
            raise StoreError(f"cannot update {self.url}: {e}") from e

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every recorded failure, as dicts with model, song_id, error, error_type, time, source."""
        if FAILURES not in self.root:
            return []
        out = []
        for name, node in self.root[FAILURES].members(max_depth=None):
            attrs = node.attrs.asdict()
            if "error" in attrs and (model is None or attrs.get("model") == model):
                out.append(attrs)
        return sorted(out, key=lambda a: (a["model"], a["song_id"]))

    # -- leases: which run works on which song ---------------------------------------------------
    def _lease_key(self, song_id: str) -> str:
        return f"{LEASES}/{validate_song_id(song_id)}/zarr.json"

    def _read_lease(self, key: str) -> dict[str, Any] | None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        try:
            buf = sync(self.root.store.get(key, prototype=default_buffer_prototype()))
            return None if buf is None else json.loads(buf.to_bytes())["attributes"]
        except (ValueError, KeyError, OSError):
            return None

    def acquire(self, song_id: str) -> dict[str, Any] | None:
        """Claim a song for this run; return None on success, else the live owner's lease.

        The claim is an exclusive create (``set_if_not_exists``) of a small group node, so two
        runs cannot both hold a song. A lease whose process is gone (same host, dead pid) or
        older than :data:`LEASE_TTL_S` is stale: it is removed and the claim retried once.
        """
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        if LEASES not in self.root:
            self.root.require_group(LEASES)
        key = self._lease_key(song_id)
        mine = {"run": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        doc = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": mine}).encode()
        for _ in range(2):
            sync(self.root.store.set_if_not_exists(key, default_buffer_prototype().buffer.from_bytes(doc)))
            owner = self._read_lease(key)
            if owner is not None and owner.get("run") == self.run_id:
                return None
            if owner is None or not _lease_is_stale(owner):
                return owner or {"run": "unknown"}
            self._drop_lease(song_id)
        return self._read_lease(key) or {"run": "unknown"}

    def release(self, song_id: str) -> None:
        """Give up this run's claim on a song (no-op if it is not ours)."""
        owner = self._read_lease(self._lease_key(song_id))
        if owner is not None and owner.get("run") == self.run_id:
            self._drop_lease(song_id)

    def _drop_lease(self, song_id: str) -> None:
        from zarr.core.sync import sync

        sync(self.root.store.delete_dir(f"{LEASES}/{validate_song_id(song_id)}"))


def _lease_is_stale(lease: Mapping[str, Any]) -> bool:
    if time.time() - float(lease.get("time", 0)) > LEASE_TTL_S:
        return True
    if lease.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lease.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False
