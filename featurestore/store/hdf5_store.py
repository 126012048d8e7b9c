"""The HDF5 backend: a file written by ``fstore export-hdf5``, read-only, in either of its layouts
(:mod:`.hdf5_layout`, told by the root's ``hdf5_layout`` attribute)::

    out.h5
      /                      root attributes of the store (schema version, fstore version, ...), hdf5_layout
      <model>/               group attributes (time axis, dims, fingerprint, ...)
        <song_id>/features   layout 2: the song's array with its attributes, in a netCDF-4 group beside its
                             coordinates (time in seconds, feature names, layers)
        <song_id>            layout 1 (files of earlier exports, without hdf5_layout): the song's
                             array, one dataset
      _failures/<model>/<song_id>   an empty group whose attributes say why it failed

HDF5 attributes hold strings and numbers; other values are JSON text, decoded by the one attribute
codec (:mod:`.attributes`). An export holds complete arrays only.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import CorruptArray, StoreError
from .attributes import decode
from .backend import COMPLETE, Capabilities, StoredArray
from .hdf5_layout import LAYOUT, LAYOUT_ATTR, SCALE_ATTRS, VARIABLE, node_path, store_path
from .layout import FAILURES, validate_song_id

#: the first bytes of every HDF5 file (the format's signature), to tell one by its content
SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file that starts with the HDF5 signature (its name does not matter)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SIGNATURE)) == SIGNATURE
    except (IsADirectoryError, FileNotFoundError, NotADirectoryError):
        return False


class H5Store:
    """An exported HDF5 file, read-only: the :class:`~.backend.ReadBackend` of an export."""

    capabilities = Capabilities(writable=False, exclusive_create=False)

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
            self._h5.close()
            raise StoreError(f"{path}: an HDF5 file, but not one written by fstore export-hdf5 (no schema_version)")
        #: the file's layout (:mod:`.hdf5_layout`): 1 for files written before the attribute existed
        self.layout = int(_attributes(self._h5).get(LAYOUT_ATTR, 1))
        if self.layout > LAYOUT:
            self._h5.close()
            raise StoreError(f"{path}: written by a newer fstore (HDF5 layout {self.layout}; this one reads "
                             f"layouts 1 to {LAYOUT}): upgrade fstore to read it")

    def _node(self, path: str) -> str:
        """Where a store path (``<model>[/<song_id>]``) lies in this file."""
        return node_path(path) if self.layout >= 2 else path

    def _store(self, node: str) -> str:
        """The store path a node path of this file stands for (the inverse of :meth:`_node`)."""
        return store_path(node) if self.layout >= 2 else node

    def root_attrs(self) -> dict[str, Any]:
        return {k: v for k, v in _attributes(self._h5).items() if k != LAYOUT_ATTR}

    def models(self) -> list[str]:
        return sorted(self._store(k) for k in self._h5.keys() if k != FAILURES)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return _attributes(self._h5[self._node(model)])

    def states(self, model: str) -> dict[str, str]:
        """Song id → state: an export holds complete arrays only (a damaged one shows when it is read)."""
        return dict.fromkeys(self.songs(model), COMPLETE)

    def song_states(self, model: str) -> dict[str, bool]:
        return dict.fromkeys(self.songs(model), True)

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        import h5py

        group = self._h5.get(self._node(model))
        if not isinstance(group, h5py.Group):
            return []
        found: list[str] = []
        if self.layout >= 2:  # each song's group holds its array as VARIABLE, beside its coordinates
            suffix = f"/{VARIABLE}"
            group.visititems(lambda name, node: found.append(self._store(name.removesuffix(suffix)))
                             if name.endswith(suffix) and isinstance(node, h5py.Dataset) else None)
        else:
            group.visititems(lambda name, node: found.append(name) if isinstance(node, h5py.Dataset) else None)
        return sorted(found)

    def array(self, model: str, song_id: str, complete_only: bool = True) -> StoredArray | None:
        import h5py

        sid = validate_song_id(song_id)
        path = self._node(f"{model}/{sid}") + (f"/{VARIABLE}" if self.layout >= 2 else "")
        node = self._h5.get(path)
        if not isinstance(node, h5py.Dataset):
            return None

        def read(index: Any) -> Any:
            """The dataset's values; damage (a Fletcher-32 checksum that does not match, bytes that do not
            decompress) is a :class:`CorruptArray`, never numbers."""
            try:
                return node[index]
            except (OSError, ValueError, RuntimeError) as e:
                cause = "checksum mismatch" if "filter" in str(e).lower() else "undecodable bytes"
                raise CorruptArray(self.url, model, sid, cause, detail=str(e)) from e

        attrs = _attributes(node)
        return StoredArray(f"{self.url}/{model}/{sid}", node.shape, node.dtype, node.chunks or node.shape, attrs, read)

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        if FAILURES not in self._h5:
            return []
        out: list[dict[str, Any]] = []
        self._h5[FAILURES].visititems(lambda name, node: out.append(_attributes(node)) if "error" in node.attrs else None)
        return sorted((f for f in out if model is None or f.get("model") == model), key=lambda a: (a["model"], a["song_id"]))

    def size_on_disk(self, model: str) -> int:
        """Bytes the group's datasets take in the file; 0 for a group it does not hold, as the Zarr backend says."""
        import h5py

        group = self._h5.get(self._node(model))
        if not isinstance(group, h5py.Group):
            return 0
        sizes: list[int] = []
        group.visititems(
            lambda name, node: sizes.append(node.id.get_storage_size()) if isinstance(node, h5py.Dataset) else None)
        return int(sum(sizes))

    def close(self) -> None:
        self._h5.close()


def _attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as the store wrote them: decoded, without those HDF5 dimension scales and netCDF-C
    add (a file rewritten by ``nccopy`` also holds each attribute as a one-element array: decoded alike)."""
    return decode({key: node.attrs[key] for key in node.attrs if key not in SCALE_ATTRS})
