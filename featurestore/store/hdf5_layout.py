"""The layouts of an ``fstore export-hdf5`` file, in one place for its writer (:mod:`featurestore.export`) and
its reader (:class:`~.hdf5_store.H5Store`).

Layout 1 (files without :data:`LAYOUT_ATTR`, written by earlier exports) holds each song as one dataset,
``<model>/<song_id>``. netCDF readers saw no clock in it: its dims were anonymous (``phony_dim_0``) and the
time axis lay in JSON attributes only.

Layout 2 (:data:`LAYOUT`) makes each song a netCDF-4 group that netCDF and HDF tools (``ncdump``, Panoply,
MATLAB's ``ncread``, ``xr.open_dataset(..., group=..., engine="h5netcdf")``) read with its clock::

    <model>/<song_id>/       song_id attribute: the song's id
      features               the song's array, dims as stored (e.g. (time, feature)), with its attributes
      time                   frame centres in seconds (float64, units "s"): the coordinate ``load`` gives
      feature, layer         the names or indices of those dims where the store records them (CREPE's
                             frequency/confidence, MERT's layers); else a bare netCDF dimension

Each dim is an HDF5 dimension scale attached to ``features`` (the netCDF-4 format's dimensions); groups and
datasets track creation order, as netCDF-4 expects. Nested song ids are nested groups. A name component that
starts with a space (which ``ncdump`` refuses to print, failing the whole listing) is written with a
backslash in front of it: no song id holds a backslash, so the name maps back unambiguously.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from ..clock import TimeAxis
from .attributes import dim_labels, encode

#: the root attribute that says which layout a file has; a file without it has layout 1
LAYOUT_ATTR = "hdf5_layout"
#: the layout the export writes, and the newest this fstore reads
LAYOUT = 2
#: a song's array in its group
VARIABLE = "features"
#: the song group's attribute naming its song id (its path may be escaped)
SONG_ID = "song_id"
#: what attached dimension scales add to a variable's attributes (and netCDF-C, when a netCDF tool edits the
#: file): not the store's
SCALE_ATTRS = frozenset({"DIMENSION_LIST", "_Netcdf4Dimid", "_Netcdf4Coordinates", "_NCProperties"})
#: the NAME of a dimension scale that is a netCDF dimension without a coordinate variable (netCDF-4's own text)
_DIMENSION_ONLY = "This is a netCDF dimension but not a netCDF variable."
#: a first character ``ncdump`` cannot print (space and control characters; song ids hold no control characters)
_UNPRINTABLE_FIRST = re.compile(r"^[\x01-\x20\x7f]")
_ESCAPE = "\\"
#: the time coordinate's attributes, fixed-length text (netCDF's char attributes, which every netCDF tool reads)
_TIME_ATTRS = {"units": np.bytes_(b"s"), "long_name": np.bytes_(b"time of the frame's centre from the audio's start")}


def node_path(path: str) -> str:
    """Where a store path (``<model>/<song_id>``, a failure's node) lies in a layout-2 file: each component
    that starts with a character ``ncdump`` cannot print gets a backslash in front."""
    return "/".join(_ESCAPE + part if _UNPRINTABLE_FIRST.match(part) else part for part in path.split("/"))


def store_path(node: str) -> str:
    """The store path a layout-2 node path stands for (the inverse of :func:`node_path`)."""
    return "/".join(part.removeprefix(_ESCAPE) for part in node.split("/"))


def require_groups(parent: Any, path: str) -> Any:
    """The group at ``path`` below ``parent``, made level by level where absent, each tracking creation order
    (h5py's ``require_group`` would make the levels between without)."""
    for part in path.split("/"):
        parent = parent[part] if part in parent else parent.create_group(part, track_order=True)
    return parent


def write_song(model_group: Any, song_id: str, data: np.ndarray, chunks: tuple[int, ...],
               attrs: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Write one song into ``model_group`` as its netCDF-4 group: the array as :data:`VARIABLE` (``chunks``,
    dataset ``options``: compression, checksums) with ``attrs`` (the store's, encoded), one dimension
    scale per dim, and ``time`` in seconds, as :meth:`~featurestore.read.StoreReader.load` gives it."""
    group = require_groups(model_group, node_path(song_id))
    group.attrs[SONG_ID] = song_id
    dims = list(attrs["dims"])
    labels = dim_labels(attrs)
    scales = []
    for axis, (dim, size) in enumerate(zip(dims, data.shape)):
        if dim == "time":
            scale = group.create_dataset(dim, data=TimeAxis.from_attrs(attrs).times(size), chunks=(chunks[axis],),
                                         track_order=True, **options)
            for key, value in _TIME_ATTRS.items():
                scale.attrs[key] = value
            scale.make_scale(dim)
        elif dim in labels:
            scale = group.create_dataset(dim, data=_label_values(labels[dim]), track_order=True)
            scale.make_scale(dim)
        else:  # a netCDF dimension without values: a scale that holds none (no storage is allocated)
            scale = group.create_dataset(dim, shape=(size,), dtype=">f4", track_order=True)
            scale.make_scale(f"{_DIMENSION_ONLY}{size:10d}")
        scales.append(scale)
    variable = group.create_dataset(VARIABLE, data=data, chunks=chunks, track_order=True, **options)
    for axis, scale in enumerate(scales):
        variable.dims[axis].attach_scale(scale)
    for key, value in encode(attrs).items():
        variable.attrs[key] = value


def _label_values(labels: list[Any]) -> np.ndarray:
    """A dim's labels as a dataset's values: names as variable-length UTF-8 text (netCDF-4's string type),
    numbers as they are."""
    import h5py

    if all(isinstance(label, str) for label in labels):
        return np.array(labels, dtype=h5py.string_dtype())
    return np.asarray(labels)
