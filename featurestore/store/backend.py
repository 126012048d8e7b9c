"""What the read API needs of a store, written down: the :class:`ReadBackend` protocol, the
:class:`StoredArray` every backend hands out, and the :class:`Capabilities` a backend declares.

Two backends implement the protocol: :class:`~featurestore.store.zarr_store.FeatureStore` (Zarr v3 at
a local path, in memory or at any fsspec URL; the one runs write into) and
:class:`~featurestore.store.hdf5_store.H5Store` (a file written by ``fstore export-hdf5``, read-only).
``featurestore.testing.BackendContract`` runs the same checks against every backend. As with zarr's
``Store.supports_writes``, what a backend can do is declared, not guessed by its callers: leases need
``exclusive_create``, writing commands need ``writable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import CorruptArray


#: what a song's array can be: written whole, interrupted mid-write (the next run redoes it), or damaged
#: (its metadata cannot be read: ``fstore validate --fix`` removes it, the next run recomputes it)
COMPLETE, INCOMPLETE, DAMAGED = "complete", "incomplete", "damaged"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do: ``writable`` follows how it was opened, ``exclusive_create`` is its storage's."""

    #: runs can write arrays, failures and leases (the backend was opened for writing)
    writable: bool
    #: the storage creates a key only where none is, atomically, whatever the mode it was opened in (concurrent
    #: runs can share the store through leases, which need ``writable`` too)
    exclusive_create: bool


class StoredArray:
    """One song's array in any backend: its metadata at hand, its values read on indexing.

    ``attrs`` are plain Python values (the HDF5 backend decodes its JSON text); ``chunks`` is the
    chunk shape (the whole array when unchunked), ``dimension_names`` what the format records of the
    dims, if anything. Indexing reads only the chunks it touches (dask's ``from_array`` accepts it).
    """

    def __init__(self, where: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...],
                 attrs: dict[str, Any], read: Callable[[Any], np.ndarray],
                 dimension_names: tuple[str, ...] | None = None) -> None:
        self.where = where
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(int(n) for n in chunks)
        self.attrs = attrs
        self.dimension_names = dimension_names
        self._read = read

    @property
    def dims(self) -> tuple[str, ...]:
        """The array's dims as its attributes record them."""
        return tuple(self.attrs["dims"])

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._read(index))

    def __repr__(self) -> str:
        return f"<StoredArray {self.where} {self.shape} {self.dtype}>"


@runtime_checkable
class ReadBackend(Protocol):
    """A store as the read API sees it: groups of songs' arrays, their attributes, and the failures."""

    url: str
    capabilities: Capabilities

    def root_attrs(self) -> dict[str, Any]:
        """The store's own attributes (schema version, fstore version, creation time)."""

    def models(self) -> list[str]:
        """The model groups, in name order."""

    def model_attrs(self, model: str) -> dict[str, Any]:
        """A group's attributes; KeyError when there is no such group."""

    def states(self, model: str) -> dict[str, str]:
        """Every array of a group: song id -> :data:`COMPLETE`, :data:`INCOMPLETE` or :data:`DAMAGED`."""

    def song_states(self, model: str) -> dict[str, bool]:
        """Every array of a group: song id -> complete."""

    def songs(self, model: str, complete_only: bool = True) -> list[str]:
        """Song ids of a group (only complete arrays unless ``complete_only=False``), sorted."""

    def array(self, model: str, song_id: str, complete_only: bool = True) -> StoredArray | None:
        """One song's array, or None when absent or (by default) incomplete; raises
        :class:`~featurestore.errors.CorruptArray` when it is damaged (its reads too)."""

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        """Recorded failures (model, song_id, error, error_type, time, source), sorted by (model, song_id)."""

    def size_on_disk(self, model: str) -> int:
        """Bytes the group's arrays take (0 for a group the store does not hold)."""

    def close(self) -> None:
        """Let go of open files and connections."""


def songs_and_damage(backend: ReadBackend, model: str) -> tuple[list[str], list[CorruptArray]]:
    """A group's complete songs, and the error of each array whose metadata is damaged (so a collection or an
    export that reads the group names it rather than passing over it in silence)."""
    states = backend.states(model)
    damage = []
    for song in sorted(s for s, state in states.items() if state == DAMAGED):
        try:
            backend.array(model, song)
        except CorruptArray as e:
            damage.append(e)
    return sorted(s for s, state in states.items() if state == COMPLETE), damage
