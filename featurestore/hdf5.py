"""The store as one HDF5 file: ``fstore export-hdf5`` writes it, :class:`H5Store` reads it.

Same layout as the Zarr store, so the read API works on either::

    out.h5
      /                      root attributes of the store (schema version, fstore version, ...)
      <model>/               group attributes (time axis, dims, fingerprint, ...)
        <song_id>            one chunked, compressed float dataset per song, with its attributes
      _failures/<model>/<song_id>   an empty group whose attributes say why it failed

HDF5 attributes hold strings and numbers; other values (dicts, lists, booleans, None) are JSON
text, and the names of those attributes are listed in each node's ``_json`` attribute so that
they come back exactly. Zarr stays the store that runs write into (crash-safe, concurrent
writers, object stores); HDF5 is the one file to hand to someone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._atomic import atomic_path
from .errors import StoreError
from .failures import FAILURES, failure_node
from .store import FeatureStore, validate_song_id

#: gzip is the compression every HDF5 reader has; level 4 and byte shuffle as for the Zarr store
_DATASET_OPTIONS = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_JSON = "_json"


def _put_attrs(node: Any, attrs: Mapping[str, Any]) -> None:
    encoded = []
    for key, value in attrs.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            node.attrs[key] = value
        else:
            node.attrs[key] = json.dumps(value)
            encoded.append(key)
    if encoded:
        node.attrs[_JSON] = json.dumps(encoded)


def _get_attrs(node: Any) -> dict[str, Any]:
    encoded = set(json.loads(node.attrs.get(_JSON, "[]")))
    out: dict[str, Any] = {}
    for key, value in node.attrs.items():
        if key == _JSON:
            continue
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = json.loads(value) if key in encoded else value
    return out


def export_hdf5(store: FeatureStore, out: str | os.PathLike[str], models: Sequence[str] | None = None,
                overwrite: bool = False) -> dict[str, int]:
    """Write the complete arrays of ``models`` (default: all), their group attributes and the
    recorded failures into one HDF5 file, atomically (a temporary file renamed at the end).

    Returns the number of songs written per model. Refuses to replace ``out`` unless ``overwrite``.
    """
    import h5py

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; use --overwrite to replace it")
    available = store.models()
    unknown = [m for m in models or [] if m not in available]
    if unknown:
        raise KeyError(f"model(s) {', '.join(unknown)} not in {store.url}; it has: {', '.join(available) or 'none'}")
    written: dict[str, int] = {}
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        _put_attrs(h5, store.root.attrs.asdict())
        for model in models or available:
            group = h5.create_group(model)
            _put_attrs(group, store.model_attrs(model))
            written[model] = 0
            for song in store.songs(model):
                arr = store.array(model, song)
                data = arr[...]
                ds = group.create_dataset(song, data=data, chunks=tuple(arr.chunks), **_DATASET_OPTIONS)
                _put_attrs(ds, arr.attrs.asdict())
                written[model] += 1
            for failure in store.failures(model):
                _put_attrs(h5.require_group(f"{FAILURES}/{model}/{failure_node(failure['song_id'])}"), failure)
    return written


class H5Array:
    """One song's dataset, with the attribute interface the read API uses."""

    def __init__(self, dataset: Any) -> None:
        self._ds = dataset
        self.shape = dataset.shape
        self.dtype = dataset.dtype
        self.ndim = dataset.ndim
        self.chunks = dataset.chunks or dataset.shape

    @property
    def attrs(self) -> "_Attrs":
        return _Attrs(_get_attrs(self._ds))

    def __getitem__(self, index: Any) -> np.ndarray:
        return self._ds[index]


class _Attrs(dict):
    def asdict(self) -> dict[str, Any]:
        return dict(self)


class H5Store:
    """An exported HDF5 file, read-only, with the methods of :class:`FeatureStore` the read API uses."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import h5py

        self.url = str(path)
        try:
            self._h5 = h5py.File(path, "r")
        except FileNotFoundError as e:
            raise StoreError(f"{path}: no such file") from e
        except OSError as e:
            raise StoreError(f"{path}: cannot open as HDF5 ({e})") from e
        if "schema_version" not in self._h5.attrs:
            raise StoreError(f"{path}: an HDF5 file, but not one written by fstore export-hdf5")

    def models(self) -> list[str]:
        return sorted(k for k in self._h5.keys() if k != FAILURES)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return _get_attrs(self._h5[model])

    def song_states(self, model: str) -> dict[str, bool]:
        """Song id → complete: an export holds complete arrays only."""
        return dict.fromkeys(self.songs(model), True)

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        import h5py

        if model not in self._h5:
            return []
        found: list[str] = []
        self._h5[model].visititems(lambda name, node: found.append(name) if isinstance(node, h5py.Dataset) else None)
        return sorted(found)

    def array(self, model: str, song_id: str, complete_only: bool = True) -> H5Array | None:
        import h5py

        node = self._h5.get(f"{model}/{validate_song_id(song_id)}")
        return H5Array(node) if isinstance(node, h5py.Dataset) else None

    def song_attrs(self, model: str, song_id: str) -> dict[str, Any] | None:
        arr = self.array(model, song_id)
        return None if arr is None else arr.attrs.asdict()

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        if FAILURES not in self._h5:
            return []
        out: list[dict[str, Any]] = []
        self._h5[FAILURES].visititems(lambda name, node: out.append(_get_attrs(node)) if "error" in node.attrs else None)
        return sorted((f for f in out if model is None or f.get("model") == model), key=lambda a: (a["model"], a["song_id"]))

    def size_on_disk(self, model: str) -> int:
        import h5py

        sizes: list[int] = []
        self._h5[model].visititems(
            lambda name, node: sizes.append(node.id.get_storage_size()) if isinstance(node, h5py.Dataset) else None)
        return int(sum(sizes))

    def close(self) -> None:
        self._h5.close()
