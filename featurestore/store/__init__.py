"""Where features are kept: the Zarr store runs write into, exported HDF5 files, and what they share.

- :mod:`.layout`: names, schema version, chunking; :mod:`.attributes`: what is recorded, and the codec
  for text-only formats;
- :mod:`.backend`: the :class:`ReadBackend` protocol the read API needs, and :class:`StoredArray`;
- :mod:`.zarr_store`: :class:`FeatureStore`, the Zarr v3 backend (reads and writes);
- :mod:`.hdf5_store`: :class:`H5Store`, an export read back; :mod:`.hdf5_layout`: the export's layouts (each
  song a netCDF-4 group with its time coordinate), for its writer and its reader;
- :mod:`.failures`, :mod:`.leases`: recorded failures and song leases.

Nothing here imports a model, torch or the run: reading a store needs zarr (or h5py) and numpy.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .backend import Capabilities, ReadBackend, StoredArray
from .hdf5_store import H5Store, is_hdf5
from .layout import FAILURES, LEASES, SCHEMA_VERSION, STORAGE_DTYPES, validate_song_id
from .zarr_store import FeatureStore, location


def open_backend(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> ReadBackend:
    """The backend that reads ``url``, chosen by content, not by name: a file that starts with the HDF5
    signature is an export (:class:`H5Store`); anything else is opened as a Zarr store (read-only)."""
    if "://" not in str(url) and is_hdf5(url):
        return H5Store(url)
    return FeatureStore(str(url), mode="r", storage_options=storage_options)


__all__ = ["FAILURES", "LEASES", "SCHEMA_VERSION", "STORAGE_DTYPES", "Capabilities", "FeatureStore", "H5Store",
           "ReadBackend", "StoredArray", "is_hdf5", "location", "open_backend", "validate_song_id"]
