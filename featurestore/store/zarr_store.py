"""The Zarr v3 backend: the store runs write into, at a local path, in memory or at any fsspec URL.

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
handed out. An array without ``complete`` is not a result: readers skip it and the next run
redoes it. Failures live in their own node per (model, song), so recording one never rewrites
shared metadata.

This module opens the store and holds the arrays; failures (:mod:`.failures`) and leases
(:mod:`.leases`) are units of their own that :class:`FeatureStore` delegates to. It knows nothing
of models: attributes come built (:mod:`.attributes`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ConfigurationMismatch, InvalidSongId, StoreError
from ._listing import node_metadata, prefix_size
from .attributes import configuration_differences, configuration_key
from .backend import Capabilities, StoredArray
from .failures import Failures
from .layout import COMPRESSORS, READABLE_SCHEMAS, RESERVED, SCHEMA_VERSION, STORAGE_DTYPES, now_iso, time_chunk, \
    validate_song_id
from .leases import Leases, has_exclusive_create
from .remote import storage_options as with_settings, store_errors

#: how a store is opened: ``r`` reads an existing store, ``r+`` also writes to it, ``a`` writes to it or
#: creates it where nothing is (only ``fstore extract`` creates stores)
MODES = ("r", "r+", "a")


def location(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """What lies at ``url``: "absent" (nothing, or an empty folder), "zarr" (a Zarr v3 root ``zarr.json``),
    "file", or "other" (a folder or prefix holding something else)."""
    import fsspec

    with store_errors(f"{url}: cannot open"):
        try:
            fs, path = fsspec.core.url_to_fs(url, **with_settings(url, storage_options))
            path = path.rstrip("/")
            if fs.isfile(path):
                return "file"
            if fs.isfile(f"{path}/zarr.json"):
                return "zarr"
            return "other" if fs.exists(path) and fs.ls(path, detail=False) else "absent"
        except FileNotFoundError:
            return "absent"


class FeatureStore:
    """An fstore Zarr store at a local path or fsspec URL: the read backend, and the writes of a run.

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
            with store_errors(f"{self.url}: cannot open"):
                try:
                    self._root = self._open_root("a" if found == "absent" else "r" if mode == "r" else "r+")
                except FileNotFoundError as e:
                    raise StoreError(f"{self.url}: no store here") from e
        except StoreError:
            raise
        except Exception as e:  # zarr raises a variety of errors for non-stores
            raise StoreError(f"{self.url}: cannot open as a Zarr store ({e})") from e
        self._leases: Leases | None = None
        self._failures = Failures(self._root, self.url)
        attrs = self._root.attrs.asdict()
        if "schema_version" not in attrs:
            if found != "absent" and (attrs or list(self._root.keys())):
                raise StoreError(f"{self.url}: a Zarr group, but not an fstore store (no schema_version)")
            if mode != "a":
                raise StoreError(f"{self.url}: no fstore store here")
            from .. import __version__

            self._write_root_attrs({"fstore_version": __version__, "schema_version": SCHEMA_VERSION,
                                    "created": now_iso()}, "cannot create the store")
        elif attrs["schema_version"] not in READABLE_SCHEMAS:
            raise StoreError(f"{self.url}: written by a newer fstore (schema {attrs['schema_version']}); upgrade fstore")
        elif attrs["schema_version"] < SCHEMA_VERSION and mode != "r":
            self._write_root_attrs({"schema_version": SCHEMA_VERSION, "upgraded_from": attrs["schema_version"]})
        self.capabilities = Capabilities(writable=mode != "r",
                                         exclusive_create=mode != "r" and has_exclusive_create(self.url, self.storage_options))

    def _open_root(self, mode: str) -> Any:
        """The root group (``mode`` is zarr's); with ``a``, one that another run created at the same moment is opened."""
        import zarr
        from zarr.errors import ContainsGroupError

        options = with_settings(self.url, self.storage_options) or None
        try:
            return zarr.open_group(self.url, mode=mode, storage_options=options)
        except ContainsGroupError:  # created by another run between zarr's look and its create
            if mode != "a":
                raise
            return zarr.open_group(self.url, mode="r+", storage_options=options)

    def _write_root_attrs(self, attrs: Mapping[str, Any], what: str = "cannot write") -> None:
        with store_errors(f"{self.url}: {what}"):
            self._root.attrs.update(dict(attrs))

    def root_attrs(self) -> dict[str, Any]:
        return self._root.attrs.asdict()

    def close(self) -> None:
        """Nothing to let go: zarr opens files per read."""

    # -- models ----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model groups present, in name order."""
        return sorted(k for k in self._root.group_keys() if k not in RESERVED)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return self._root[model].attrs.asdict()

    def unexpected_nodes(self) -> list[str]:
        """Arrays at the store's top level, where only model groups belong."""
        return sorted(self._root.array_keys())

    def check_model(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigurationMismatch` if ``group`` exists with another configuration than ``attrs``."""
        if group not in self._root:
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
        if replace and group in self._root:
            removed = self.remove_group(group)
        self.check_model(group, attrs)
        from zarr.errors import ContainsGroupError

        with store_errors(f"cannot write the {group} group to {self.url}"):
            try:
                node = self._root.require_group(group)
            except ContainsGroupError:  # another run's coordinator created it between zarr's look and its create
                node = self._root[group]
            if node.attrs.asdict() != dict(attrs):
                node.attrs.put(dict(attrs))
        return removed

    def remove_group(self, group: str) -> tuple[int, int]:
        """Delete a model group and its recorded failures; return how many (arrays, failures) went."""
        arrays = len(self.songs(group, complete_only=False))
        failures = len(self.failures(group))
        with store_errors(f"cannot remove the {group} group from {self.url}"):
            del self._root[group]
        self._failures.clear_model(group)
        return arrays, failures

    def size_on_disk(self, model: str) -> int:
        """Bytes the group's arrays take in the store (compressed chunks and metadata)."""
        return prefix_size(self._root, model)

    # -- songs -----------------------------------------------------------------------------------
    def song_states(self, model: str) -> dict[str, bool]:
        """Every array of ``model``: song id → complete (an unreadable array metadata counts as incomplete).

        Reads the arrays' metadata in bulk (:mod:`._listing`) rather than opening node by node."""
        with store_errors(f"{self.url}/{model}: cannot list"):
            nodes = node_metadata(self._root, model)
        return {name: doc is not None and (doc.get("attributes") or {}).get("complete") is True
                for name, doc in nodes.items() if doc is None or doc.get("node_type") == "array"}

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        """Song ids stored for ``model`` (only complete arrays unless ``complete_only=False``)."""
        return sorted(song for song, complete in self.song_states(model).items() if complete or not complete_only)

    def array(self, model: str, song_id: str, complete_only: bool = True) -> StoredArray | None:
        """The array of (model, song), or None when absent, unreadable or (by default) incomplete."""
        import zarr

        path = f"{model}/{validate_song_id(song_id)}"
        # permissions, network: not "absent", or caching would recompute everything
        with store_errors(f"{self.url}/{path}: cannot read"):
            try:
                node = self._root[path]
            except KeyError:
                return None
            except (ValueError, TypeError):  # truncated or invalid metadata from an interrupted write
                return None
        if not isinstance(node, zarr.Array):
            return None
        attrs = node.attrs.asdict()
        if complete_only and attrs.get("complete") is not True:
            return None
        names = node.metadata.dimension_names
        return StoredArray(f"{self.url}/{path}", node.shape, node.dtype, node.chunks, attrs, node.__getitem__,
                           tuple(names) if names is not None else None)

    def song_attrs(self, model: str, song_id: str) -> dict[str, Any] | None:
        """A song's array attributes, complete or not (None when there is no array)."""
        arr = self.array(model, song_id, complete_only=False)
        return None if arr is None else arr.attrs

    def write(self, model: str, song_id: str, data: np.ndarray, attrs: Mapping[str, Any]) -> None:
        """Write one song's features: data first, then ``complete: true``.

        ``attrs`` are the array's attributes (:func:`~.attributes.array_attributes`): their ``dims`` name
        the data's axes and their ``dtype`` (float32 or float16, default float32) is how it is stored.
        Raises StoreError when the store cannot be written (read-only, disk full): such an error stops
        a run, unlike a bad audio file; TransientStoreError when the network or the server failed, which
        fails this song only (:mod:`.remote`).
        """
        dims, dtype = tuple(attrs["dims"]), str(attrs.get("dtype", "float32"))
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype {dtype!r}: use one of {', '.join(STORAGE_DTYPES)}")
        sid = validate_song_id(song_id)
        data = np.ascontiguousarray(data, dtype=dtype)
        if len(dims) != data.ndim:
            raise ValueError(f"dims {dims} do not match data of shape {data.shape}")
        with store_errors(f"cannot write {model}/{sid} to {self.url}"):
            self._check_no_collision(model, sid)
            arr = self._root.create_array(
                f"{model}/{sid}",
                shape=data.shape,
                dtype=dtype,
                chunks=time_chunk(data.shape, dims.index("time"), data.itemsize),
                compressors=COMPRESSORS,
                dimension_names=dims,
                attributes=dict(attrs),
                overwrite=True,
            )
            arr[...] = data
            arr.attrs["complete"] = True

    def _check_no_collision(self, model: str, sid: str) -> None:
        """A song id must not be a folder of other songs, nor lie inside another song ("a" vs "a/b")."""
        import zarr

        parts = sid.split("/")
        for i in range(1, len(parts)):
            parent = f"{model}/{'/'.join(parts[:i])}"
            if parent in self._root and isinstance(self._root[parent], zarr.Array):
                raise InvalidSongId(f"song id {sid!r} would lie inside song {'/'.join(parts[:i])!r}")
        path = f"{model}/{sid}"
        if path in self._root and isinstance(self._root[path], zarr.Group):
            raise InvalidSongId(f"song id {sid!r} is also a folder of songs; rename the file or the folder")

    def remove(self, model: str, song_id: str) -> None:
        path = f"{model}/{validate_song_id(song_id)}"
        if path in self._root:
            del self._root[path]

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
        """This store's song leases (built on first use: a read-only store only lists them)."""
        if self._leases is None:
            self._leases = Leases(self.url, self.storage_options, self.capabilities)
        return self._leases
