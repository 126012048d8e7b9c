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

This module opens the store and holds the arrays; failures (:mod:`.failures`) and leases
(:mod:`.leases`) are units of their own that :class:`FeatureStore` delegates to, and the
naming rules all three share are in :mod:`.layout`. It knows nothing of models.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

import numpy as np

from .errors import ConfigurationMismatch, InvalidSongId, StoreError
from ._listing import node_metadata, prefix_size
from .failures import Failures
from .layout import FAILURES, now_iso, validate_song_id
from .leases import LEASES, Leases

#: 2 added: the group's ``dtype`` (float32 or float16 storage) and ``group`` name (``--as``); schema-1
#: stores are read as they are and upgraded in place (attributes only) the first time a run writes to them
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
#: how arrays may be stored; float16 halves the size (part of the group's configuration)
STORAGE_DTYPES = ("float32", "float16")
#: target bytes per chunk along time: one chunk for a typical song; for long ones, measured on a 20-min MERT
#: array: 4 MiB (18 s of MERT) reads whole songs and 10-s slices as fast as any size from 0.5 to 16 MiB
CHUNK_BYTES = 4 << 20
#: chunk compression: Blosc's zstd at level 5 behind a byte shuffle, the smallest of the settings measured on
#: the four models' outputs (zstd 0/1/3/9 alone, Blosc zstd 3/5 with byte or bit shuffle, lz4) at a write cost
#: far below any model's compute (README, "Storage size")
COMPRESSORS = ({"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}},)


def time_chunk(shape: tuple[int, ...], time_axis: int, itemsize: int = 4) -> tuple[int, ...]:
    """Chunk shape: whole along every dim but time, about :data:`CHUNK_BYTES` along time."""
    per_step = itemsize * int(np.prod([s for i, s in enumerate(shape) if i != time_axis], dtype=np.int64))
    steps = max(1, min(shape[time_axis], CHUNK_BYTES // max(per_step, 1)))
    return tuple(steps if i == time_axis else max(1, s) for i, s in enumerate(shape))


def configuration_key(group_attrs: Mapping[str, Any]) -> tuple[str, str]:
    """What a group's arrays were computed and stored with: (extractor fingerprint, storage dtype)."""
    return str(group_attrs.get("fingerprint")), str(group_attrs.get("dtype", "float32"))


def configuration_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(what, old value, new value) for each option, weights file or storage setting that differs."""
    diffs: list[tuple[str, Any, Any]] = []
    if old.get("model") != new.get("model"):
        diffs.append(("model", old.get("model"), new.get("model")))
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            diffs.append((key, old_cfg.get(key, "(unset)"), new_cfg.get(key, "(unset)")))
    old_w = [(w.get("source"), w.get("sha256")) for w in old.get("weights") or []]
    new_w = [(w.get("source"), w.get("sha256")) for w in new.get("weights") or []]
    if [sha for _, sha in old_w] != [sha for _, sha in new_w]:
        diffs.append(("weights", ", ".join(f"{src} ({sha[:12]})" for src, sha in old_w),
                      ", ".join(f"{src} ({sha[:12]})" for src, sha in new_w)))
    if old.get("dtype", "float32") != new.get("dtype", "float32"):
        diffs.append(("dtype", old.get("dtype", "float32"), new.get("dtype", "float32")))
    if not diffs and old.get("fingerprint") != new.get("fingerprint"):
        diffs.append(("implementation", f"fingerprint {str(old.get('fingerprint'))[:12]}",
                      f"fingerprint {str(new.get('fingerprint'))[:12]} (the installed code computes something else)"))
    return diffs


#: how a store is opened: ``r`` reads an existing store, ``r+`` also writes to it, ``a`` writes to it or
#: creates it where nothing is (only ``fstore extract`` creates stores)
MODES = ("r", "r+", "a")


def location(url: str, storage_options: Mapping[str, Any] | None) -> str:
    """What lies at ``url``: "absent" (nothing, or an empty folder), "zarr" (a Zarr v3 root ``zarr.json``),
    "file", or "other" (a folder or prefix holding something else)."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        path = path.rstrip("/")
        if fs.isfile(path):
            return "file"
        if fs.isfile(f"{path}/zarr.json"):
            return "zarr"
        return "other" if fs.exists(path) and fs.ls(path, detail=False) else "absent"
    except FileNotFoundError:
        return "absent"
    except OSError as e:
        raise StoreError(f"{url}: cannot open ({e})") from e


class FeatureStore:
    """Read and write an fstore Zarr store at a local path or fsspec URL.

    ``mode="r"`` opens an existing store read-only, ``mode="r+"`` for writing; ``mode="a"`` also creates
    one where nothing is (a path that does not exist, or an empty folder). Whatever the mode, a path
    that holds anything but an fstore store (another program's Zarr data, a folder of other files, a
    file) is refused with :class:`StoreError` and left untouched.
    """

    def __init__(self, url: str, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        self.url = str(url)
        self.mode = mode
        self.storage_options = dict(storage_options) if storage_options else None
        found = location(self.url, self.storage_options)
        if found == "file":
            raise StoreError(f"{self.url}: a file, not an fstore store")
        if found == "other":
            raise StoreError(f"{self.url}: holds other files, not an fstore store (no zarr.json); "
                             "fstore writes only into its own stores")
        if found == "absent" and mode != "a":
            raise StoreError(f"{self.url}: no fstore store here")
        try:
            self.root = self._open_root("a" if found == "absent" else "r" if mode == "r" else "r+")
        except FileNotFoundError as e:
            raise StoreError(f"{self.url}: no store here") from e
        except OSError as e:
            raise StoreError(f"{self.url}: cannot open ({e})") from e
        except Exception as e:  # zarr raises a variety of errors for non-stores
            raise StoreError(f"{self.url}: cannot open as a Zarr store ({e})") from e
        self.run_id = uuid.uuid4().hex
        self._leases: Leases | None = None
        self._failures = Failures(self.root, self.url)
        attrs = self.root.attrs.asdict()
        if "schema_version" not in attrs:
            if found != "absent" and (attrs or list(self.root.keys())):
                raise StoreError(f"{self.url}: a Zarr group, but not an fstore store (no schema_version)")
            if mode != "a":
                raise StoreError(f"{self.url}: no fstore store here")
            from . import __version__

            try:
                self.root.attrs.update({"fstore_version": __version__, "schema_version": SCHEMA_VERSION, "created": now_iso()})
            except OSError as e:
                raise StoreError(f"{self.url}: cannot create the store ({e})") from e
        elif attrs["schema_version"] not in READABLE_SCHEMAS:
            raise StoreError(f"{self.url}: written by a newer fstore (schema {attrs['schema_version']}); upgrade fstore")
        elif attrs["schema_version"] < SCHEMA_VERSION and mode != "r":
            self._write_root_attrs({"schema_version": SCHEMA_VERSION, "upgraded_from": attrs["schema_version"]})

    def _open_root(self, mode: str) -> Any:
        """The root group (``mode`` is zarr's); with ``a``, one that another run created at the same moment is opened."""
        import zarr
        from zarr.errors import ContainsGroupError

        options = dict(self.storage_options or {}) or None
        try:
            return zarr.open_group(self.url, mode=mode, storage_options=options)
        except ContainsGroupError:  # created by another run between zarr's look and its create
            if mode != "a":
                raise
            return zarr.open_group(self.url, mode="r+", storage_options=options)

    def _write_root_attrs(self, attrs: Mapping[str, Any]) -> None:
        try:
            self.root.attrs.update(dict(attrs))
        except OSError as e:
            raise StoreError(f"{self.url}: cannot write ({e})") from e

    # -- models ----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model groups present, in name order."""
        return sorted(k for k in self.root.group_keys() if k not in (FAILURES, LEASES))

    def model_attrs(self, model: str) -> dict[str, Any]:
        return self.root[model].attrs.asdict()

    def check_model(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigurationMismatch` if ``group`` exists with another configuration than ``attrs``."""
        if group not in self.root:
            return
        old = self.model_attrs(group)
        if old and configuration_key(old) != configuration_key(attrs):
            raise ConfigurationMismatch(self.url, group, configuration_differences(old, attrs))

    def ensure_model(self, group: str, attrs: Mapping[str, Any], replace: bool = False) -> tuple[int, int]:
        """Create a model's group (coordinator only, before songs are written).

        A group holds one configuration: if it exists with another one, ``replace=False`` raises
        :class:`ConfigurationMismatch` and ``replace=True`` deletes its arrays and failures first.
        Returns the (arrays, failures) removed.
        """
        removed = (0, 0)
        if replace and group in self.root:
            removed = self.remove_group(group)
        self.check_model(group, attrs)
        from zarr.errors import ContainsGroupError

        try:
            try:
                node = self.root.require_group(group)
            except ContainsGroupError:  # another run's coordinator created it between zarr's look and its create
                node = self.root[group]
            if node.attrs.asdict() != dict(attrs):
                node.attrs.put(dict(attrs))
        except OSError as e:
            raise StoreError(f"cannot write the {group} group to {self.url}: {e}") from e
        return removed

    def remove_group(self, group: str) -> tuple[int, int]:
        """Delete a model group and its recorded failures; return how many (arrays, failures) went."""
        arrays = len(self.songs(group, complete_only=False))
        failures = len(self.failures(group))
        try:
            del self.root[group]
        except OSError as e:
            raise StoreError(f"cannot remove the {group} group from {self.url}: {e}") from e
        self._failures.clear_model(group)
        return arrays, failures

    def size_on_disk(self, group: str) -> int:
        """Bytes the group's arrays take in the store (compressed chunks and metadata)."""
        return prefix_size(self.root, group)

    # -- songs -----------------------------------------------------------------------------------
    def song_states(self, model: str) -> dict[str, bool]:
        """Every array of ``model``: song id → complete (an unreadable array metadata counts as incomplete).

        Reads the arrays' metadata in bulk (:mod:`._listing`) rather than opening node by node."""
        try:
            nodes = node_metadata(self.root, model)
        except OSError as e:
            raise StoreError(f"{self.url}/{model}: cannot list ({e})") from e
        return {name: doc is not None and (doc.get("attributes") or {}).get("complete") is True
                for name, doc in nodes.items() if doc is None or doc.get("node_type") == "array"}

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        """Song ids stored for ``model`` (only complete arrays unless ``complete_only=False``)."""
        return sorted(song for song, complete in self.song_states(model).items() if complete or not complete_only)

    def array(self, model: str, song_id: str, complete_only: bool = True) -> Any | None:
        """The zarr array of (model, song), or None when absent, unreadable or (by default) incomplete."""
        import zarr

        path = f"{model}/{validate_song_id(song_id)}"
        try:
            node = self.root[path]
        except KeyError:
            return None
        except (ValueError, TypeError):  # truncated or invalid metadata from an interrupted write
            return None
        except OSError as e:  # permissions, network: not "absent", or caching would recompute everything
            raise StoreError(f"{self.url}/{path}: cannot read ({e})") from e
        if not isinstance(node, zarr.Array):
            return None
        if complete_only and node.attrs.get("complete") is not True:
            return None
        return node

    def song_attrs(self, model: str, song_id: str) -> dict[str, Any] | None:
        arr = self.array(model, song_id, complete_only=False)
        return None if arr is None else arr.attrs.asdict()

    def write(self, model: str, song_id: str, data: np.ndarray, dims: tuple[str, ...], attrs: Mapping[str, Any],
              dtype: str = "float32") -> None:
        """Write one song's features as ``dtype`` (float32 or float16): data first, then ``complete: true``.

        Raises StoreError when the store cannot be written (read-only, disk full): such an
        error stops a run, unlike a bad audio file.
        """
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype {dtype!r}: use one of {', '.join(STORAGE_DTYPES)}")
        sid = validate_song_id(song_id)
        data = np.ascontiguousarray(data, dtype=dtype)
        if len(dims) != data.ndim:
            raise ValueError(f"dims {dims} do not match data of shape {data.shape}")
        self._check_no_collision(model, sid)
        try:
            arr = self.root.create_array(
                f"{model}/{sid}",
                shape=data.shape,
                dtype=dtype,
                chunks=time_chunk(data.shape, dims.index("time"), data.itemsize),
                compressors=COMPRESSORS,
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

    # -- failures (a unit of their own: failures.py) ---------------------------------------------
    def record_failure(self, model: str, song_id: str, error: str, error_type: str, source: Mapping[str, Any] | None) -> None:
        """Remember why (song, model) failed; one node per pair, so no shared metadata is rewritten."""
        self._failures.record(model, song_id, error, error_type, source)

    def clear_failure(self, model: str, song_id: str) -> None:
        """Forget (song, model)'s failure once it has been computed."""
        self._failures.clear(model, song_id)

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every recorded failure, as dicts with model, song_id, error, error_type, time, source."""
        return self._failures.list(model)

    # -- leases: which run works on which song ---------------------------------------------------
    @property
    def leases(self) -> Leases:
        """This store's song leases (built on first use: a read-only store never needs them)."""
        if self._leases is None:
            self._leases = Leases(self.url, self.storage_options)
        return self._leases

    def acquire(self, song_id: str, run_id: str | None = None) -> dict[str, Any] | None:
        """Claim a song for run ``run_id`` (default: this store object's); None on success, else the live owner's lease."""
        return self.leases.acquire(validate_song_id(song_id), run_id or self.run_id)

    def release(self, song_id: str, run_id: str | None = None) -> None:
        """Give up run ``run_id``'s claim on a song (no-op if that run does not hold it)."""
        self.leases.release(validate_song_id(song_id), run_id or self.run_id)
