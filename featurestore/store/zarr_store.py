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

import itertools
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigurationMismatch, CorruptArray, InvalidSongId, SongRewritten, StoreError
from ._listing import CHUNKS, DAMAGED, node_metadata, parse, prefix_size
from .attributes import configuration_differences, configuration_key
from .backend import COMPLETE, DAMAGED as DAMAGED_STATE, INCOMPLETE, Capabilities, StoredArray
from .failures import Failures
from .layout import CHECKSUM, COMPRESSORS, READABLE_SCHEMAS, RESERVED, SCHEMA_VERSION, STORAGE_DTYPES, now_iso, \
    time_chunk, validate_song_id
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
        # writable is how this store was opened; exclusive_create is what its storage can do, whatever the mode
        # (as zarr's Store declares supports_writes beside read_only)
        self.capabilities = Capabilities(writable=mode != "r",
                                         exclusive_create=has_exclusive_create(self.url, self.storage_options))

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

    def ensure_model(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Make a model's group with its configuration ``attrs``, or check the one it has (coordinator only,
        before songs are written).

        A group holds one configuration, fixed by the run that creates it: its ``zarr.json`` is created
        exclusively (as a lease is), so of several runs starting together on a new store one wins and the
        others, if their configuration differs, get :class:`ConfigurationMismatch`. A group of the same
        configuration whose attributes differ otherwise (one an older schema wrote) gets the new ones.
        """
        doc = {"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)}
        if self.leases.create(f"{group}/zarr.json", json.dumps(doc).encode()):
            return
        old = self.model_attrs(group)
        if old and configuration_key(old) != configuration_key(attrs):
            raise ConfigurationMismatch(self.url, group, configuration_differences(old, attrs))
        if old != dict(attrs):
            self._put_group_attrs(group, attrs)

    def replace_model(self, group: str, attrs: Mapping[str, Any], run_id: str) -> tuple[int, int]:
        """``--overwrite``: give ``group`` the configuration ``attrs`` and delete its arrays and failures; return
        how many (arrays, failures) went.

        Refused (:class:`StoreError`, nothing changed) while another live run works on the group (its song
        leases say which groups it writes). The group's attributes are replaced in one write (never absent or
        empty, so a run starting meanwhile sees the old configuration or the new one), then each array is
        deleted under its song's lease, so no array a run is writing is deleted under it (and a run writing
        with the old configuration stops at its next write: :meth:`check_configuration`). The caller holds
        the group's lease (``group_lease``) for its whole run, so a second ``--overwrite`` cannot interleave.
        """
        if group not in self.models():
            self.ensure_model(group, attrs)
            return 0, 0
        busy = self.leases.working_on(group, besides=run_id)
        if busy:
            lease = busy[0]
            raise StoreError(f"{self.url}: run {lease['run']} ({lease.get('host')}:{lease.get('pid')}) is working on "
                             f"{lease['song_id']} of the {group} group (and {len(busy) - 1} more songs); --overwrite "
                             "needs the group to itself: run it again once that run has ended")
        self._put_group_attrs(group, attrs)
        songs = self.songs(group, complete_only=False) + sorted(self.damaged(group))
        for song in songs:
            with self.leases.claim(song, run_id, (group,)) as claim:
                if not claim.held:  # a run that started meanwhile: it stops at its first write (the configuration)
                    continue
                self.remove(group, song)
        failures = len(self.failures(group))
        self._failures.clear_model(group)
        return len(songs), failures

    def check_configuration(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigurationMismatch` unless ``group`` still has the configuration of ``attrs``: a run
        checks this before each write, under the song's lease, so a group replaced meanwhile by a run of another
        configuration never gets an array of this one."""
        current = self.model_attrs(group) if group in self.models() else {}
        if configuration_key(current) != configuration_key(attrs):
            raise ConfigurationMismatch(self.url, group, configuration_differences(current, attrs))

    def _put_group_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Replace a group's attributes in one write of its ``zarr.json`` (never empty meanwhile)."""
        with store_errors(f"cannot write the {group} group to {self.url}"):
            self._root[group].attrs.put(dict(attrs))

    def size_on_disk(self, model: str) -> int:
        """Bytes the group's arrays take in the store (compressed chunks and metadata)."""
        return prefix_size(self._root, model)

    # -- songs -----------------------------------------------------------------------------------
    def _arrays(self, model: str) -> dict[str, dict[str, Any] | None]:
        """Every array node of ``model``: song id → its metadata document (None: an interrupted write), read in
        bulk (:mod:`._listing`) rather than node by node."""
        with store_errors(f"{self.url}/{model}: cannot list"):
            nodes = node_metadata(self._root, model)
        return {name: doc for name, doc in nodes.items() if doc is None or doc.get("node_type") == "array"}

    def states(self, model: str) -> dict[str, str]:
        """Every array of ``model``: song id → "complete", "incomplete" (an interrupted write) or "damaged"
        (metadata that cannot be read, or chunks without it)."""
        return {name: DAMAGED_STATE if doc is not None and DAMAGED in doc else
                COMPLETE if doc is not None and (doc.get("attributes") or {}).get("complete") is True else INCOMPLETE
                for name, doc in self._arrays(model).items()}

    def song_states(self, model: str) -> dict[str, bool]:
        """Every array of ``model``: song id → complete."""
        return {name: state == COMPLETE for name, state in self.states(model).items()}

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        """Song ids stored for ``model`` (only complete arrays unless ``complete_only=False``)."""
        return sorted(song for song, complete in self.song_states(model).items() if complete or not complete_only)

    def damaged(self, model: str) -> dict[str, str]:
        """Arrays of ``model`` whose metadata cannot be read (junk over ``zarr.json``, or chunks without it):
        song id → cause. An interrupted write is not damage: it is incomplete."""
        return {name: doc[DAMAGED] for name, doc in self._arrays(model).items() if doc is not None and DAMAGED in doc}

    def array(self, model: str, song_id: str, complete_only: bool = True) -> StoredArray | None:
        """The array of (model, song), or None when absent or (by default) incomplete.

        Raises :class:`CorruptArray` when its metadata cannot be read; with ``complete_only`` (what readers
        ask for) also when its chunks lie in the store without it. Its reads raise :class:`CorruptArray`
        for a missing chunk, a checksum mismatch or bytes that do not decode.
        """
        import zarr

        sid = validate_song_id(song_id)
        path = f"{model}/{sid}"
        # permissions, network: not "absent", or caching would recompute everything
        with store_errors(f"{self.url}/{path}: cannot read"):
            try:
                node = self._root[path]
            except KeyError:
                if complete_only and self._has_chunks(path):
                    raise CorruptArray(self.url, model, sid, "unreadable metadata",
                                       detail="zarr.json is missing") from None
                return None
            except (ValueError, TypeError) as e:  # metadata that zarr cannot parse: interrupted, or damaged
                doc = parse(self._raw(f"{path}/zarr.json"))
                if doc is not None and DAMAGED in doc:
                    raise CorruptArray(self.url, model, sid, "unreadable metadata", detail=str(e)) from e
                return None
        if not isinstance(node, zarr.Array):
            return None
        attrs = node.attrs.asdict()
        if complete_only and attrs.get("complete") is not True:
            return None
        if "shape" in attrs and list(attrs["shape"]) != list(node.shape):
            raise CorruptArray(self.url, model, sid, "shape mismatch",
                               detail=f"its metadata gives shape {list(node.shape)}, it was written as {attrs['shape']}")
        names = node.metadata.dimension_names
        return StoredArray(f"{self.url}/{path}", node.shape, node.dtype, node.chunks, attrs,
                           _DamageNamingReader(self, node, model, sid), tuple(names) if names is not None else None)

    def _raw(self, key: str) -> bytes | None:
        """The bytes stored at ``key`` (below the root), or None."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        full = f"{self._root.store_path.path}/{key}".lstrip("/")
        buf = sync(self._root.store.get(full, prototype=default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    def _has_chunks(self, path: str) -> bool:
        """Whether chunk keys lie under ``path`` (an array's data without its metadata)."""
        from zarr.core.sync import sync

        prefix = f"{self._root.store_path.path}/{path}/{CHUNKS}/".lstrip("/")

        async def first() -> bool:
            async for _ in self._root.store.list_prefix(prefix):
                return True
            return False

        return sync(first())

    def chunks_beyond_shape(self, model: str, song_id: str) -> list[str]:
        """Chunk keys stored under an array that lie outside the chunk grid its metadata gives (its shape was
        changed, or chunks of another array were put there): metadata that disagrees with the data."""
        import zarr

        path = f"{model}/{validate_song_id(song_id)}"
        node = self._root[path]
        if not isinstance(node, zarr.Array):
            return []
        grid = [-(-n // c) for n, c in zip(node.shape, node.chunks)]
        prefix = f"{self._root.store_path.path}/{path}/{CHUNKS}/".lstrip("/")
        from zarr.core.sync import sync

        async def listed() -> list[str]:
            return [k async for k in self._root.store.list_prefix(prefix)]

        beyond = []
        for key in sync(listed()):
            parts = key[len(prefix):].split("/")
            if len(parts) != len(grid) or not all(p.isdigit() for p in parts) or \
                    any(int(p) >= g for p, g in zip(parts, grid)):
                beyond.append(f"{path}/{CHUNKS}/{key[len(prefix):]}")
        return sorted(beyond)

    def chunks_present(self, keys: Sequence[str]) -> list[bool]:
        """Whether each chunk key (below the root) exists in the store."""
        from zarr.core.common import concurrent_map
        from zarr.core.sync import sync
        from zarr.storage import LocalStore

        base = self._root.store_path.path
        full = [f"{base}/{k}".lstrip("/") for k in keys]
        store = self._root.store
        if isinstance(store, LocalStore):
            return [os.path.exists(os.path.join(store.root, k)) for k in full]
        return list(sync(concurrent_map([(k,) for k in full], store.exists)))

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
                compressors=(*COMPRESSORS, CHECKSUM),
                fill_value=np.nan,  # a chunk that goes missing reads as NaN, never as plausible zeros
                config={"write_empty_chunks": True},  # every chunk is stored: a missing one is always damage
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
        """Delete a song's array, whatever state its metadata is in (an interrupted or a damaged one too)."""
        from zarr.core.sync import sync

        path = f"{self._root.store_path.path}/{model}/{validate_song_id(song_id)}".lstrip("/")
        try:
            sync(self._root.store.delete_dir(path))
        except OSError as e:
            raise StoreError(f"cannot remove {model}/{song_id} from {self.url}: {e}") from e

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


class _DamageNamingReader:
    """Reads of one Zarr array that never return damage as numbers: a chunk missing, a checksum that does
    not match, or bytes that do not decode raise :class:`CorruptArray` naming the chunk.

    A missing chunk reads as the fill value (NaN for arrays of schema 3, 0 before), so only a chunk whose
    values read back as nothing but the fill value is looked up in the store: a normal read costs no
    extra request. A decode failure is traced to its chunk by reading the touched chunks one by one.
    """

    def __init__(self, store: FeatureStore, node: Any, group: str, song_id: str) -> None:
        self.store, self.node, self.group, self.song_id = store, node, group, song_id

    def __call__(self, index: Any) -> np.ndarray:
        try:
            return self._read(index)
        except CorruptArray:
            if self._rewritten():  # another run replaced the array while it was read: not damage
                raise SongRewritten(self.store.url, self.group, self.song_id) from None
            raise

    def _read(self, index: Any) -> np.ndarray:
        touched = _touched_chunks(self.node.shape, self.node.chunks, index)
        try:
            values = np.asarray(self.node[index])
        except (ValueError, RuntimeError, TypeError) as e:
            raise self._locate(touched, e) from e
        suspects = [c for c in touched if _only_fill(self.node, index, values, c)]
        if suspects:
            keys = [self._key(c) for c in suspects]
            for key, present in zip(keys, self.store.chunks_present(keys)):
                if not present:
                    raise CorruptArray(self.store.url, self.group, self.song_id, "missing chunk", key)
        return values

    def _rewritten(self) -> bool:
        """Whether the array's metadata is no longer the one this read started from."""
        try:
            now = self.store.array(self.group, self.song_id, complete_only=False)
        except CorruptArray:
            return False
        return now is None or now.attrs != self.node.attrs.asdict()

    def _key(self, coords: tuple[int, ...]) -> str:
        return f"{self.node.path}/{self.node.metadata.chunk_key_encoding.encode_chunk_key(coords)}"

    def _locate(self, touched: list[tuple[int, ...]], error: Exception) -> CorruptArray:
        """The chunk whose read fails, and why (checksum mismatch or undecodable bytes)."""
        for coords in touched:
            try:
                self.node.get_block_selection(coords)
            except (ValueError, RuntimeError, TypeError) as e:
                cause = "checksum mismatch" if "checksum" in str(e).lower() else "undecodable bytes"
                return CorruptArray(self.store.url, self.group, self.song_id, cause, self._key(coords), str(e))
        return CorruptArray(self.store.url, self.group, self.song_id, "undecodable bytes", detail=str(error))


def _normalized(index: Any, ndim: int) -> tuple:
    """A selection as one entry per dim (Ellipsis and missing trailing dims as full slices)."""
    index = index if isinstance(index, tuple) else (index,)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1 :]
    return index + (slice(None),) * (ndim - len(index))


def _touched_chunks(shape: tuple[int, ...], chunks: tuple[int, ...], index: Any) -> list[tuple[int, ...]]:
    """The grid coordinates of the chunks a selection reads (every chunk along a dim selected by other
    means than an integer or a step-1 slice)."""
    ranges = []
    for n, c, sel in zip(shape, chunks, _normalized(index, len(shape))):
        if isinstance(sel, (int, np.integer)):
            i = int(sel) % n if n else 0
            ranges.append(range(i // c, i // c + 1))
        elif isinstance(sel, slice) and sel.step in (None, 1):
            start, stop, _ = sel.indices(n)
            ranges.append(range(start // c, (stop - 1) // c + 1) if stop > start else range(0))
        else:
            ranges.append(range(-(-n // c)))
    return list(itertools.product(*ranges))


def _only_fill(node: Any, index: Any, values: np.ndarray, coords: tuple[int, ...]) -> bool:
    """Whether the part of ``values`` read from chunk ``coords`` holds nothing but the fill value."""
    parts = []
    for n, c, sel, k in zip(node.shape, node.chunks, _normalized(index, node.ndim), coords):
        if isinstance(sel, (int, np.integer)):
            continue  # that dim is gone from values
        if not (isinstance(sel, slice) and sel.step in (None, 1)):
            return False  # other selections: no cheap mapping to the chunk; the read stands as it is
        start, stop, _ = sel.indices(n)
        parts.append(slice(max(start, k * c) - start, min(stop, (k + 1) * c) - start))
    part = values[tuple(parts)]
    fill = node.fill_value
    return part.size > 0 and bool(np.all(np.isnan(part)) if np.isnan(fill) else np.all(part == fill))
