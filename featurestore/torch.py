"""Fixed-length windows of a store as a PyTorch ``Dataset``, aligned across models.

::

    from torch.utils.data import DataLoader
    from featurestore.torch import FeatureWindows, collate_windows

    windows = FeatureWindows("features.zarr", ["openl3", "madmom"], window_s=1.0, align="madmom")
    for batch in DataLoader(windows, batch_size=64, shuffle=True, num_workers=4, collate_fn=collate_windows):
        batch["openl3"]     # (64, 100, 512): OpenL3 on madmom's 100 Hz clock, one second per window
        batch["madmom"]     # (64, 100)
        batch["song_id"], batch["start_s"]

An item is a dict: one float32 tensor per model, time first (``(frames, ...)``: the stored dims
after ``time``, as :meth:`~featurestore.read.StoreReader.stack` orders them), plus ``song_id`` and
``start_s``. With ``align="<model>"`` every tensor is that window's rows of
``load_song(song, models, align=<model>)`` (nearest frame, within half a hop) and has the target's
frame count; with ``align=None`` each model keeps its own clock and its own count, the rows of
``load(song, model, start=start_s, end=start_s + window_s)``. Which windows exist, and how ``pad``
treats a song's end, is :mod:`featurestore.windows`'s to say. An item reads only the chunks that
hold its window (and, when aligning, one hop of each other model beyond it).

The index of windows is built from metadata (frame counts and clocks), never from features, and
is exposed per song (:attr:`FeatureWindows.songs`, :meth:`FeatureWindows.indices`), so a sampler can
shuffle windows or split a dataset by song (``torch.utils.data.Subset``).

Workers: ``FeatureWindows`` keeps the store's URL (and storage options), never an open handle
across processes. Each process opens its own on its first item, keyed by its pid, so a handle
opened before a ``fork`` (an HDF5 file, an S3 session) is never used after it, and ``spawn``
pickles no handle. It works with ``DataLoader(num_workers=N)`` under either start method, on a
Zarr store (local or ``s3://``) and on an HDF5 export. Each process keeps the arrays it has opened
(up to :data:`ARRAY_CACHE`), so reading a song again costs only its chunks: the dataset reads the
store as it was when indexed; build a new one after the store changes. A damaged array (a chunk
missing or failing its checksum) raises :class:`~featurestore.errors.CorruptArray` from the item
that reads it, never zeros.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .clock import TimeAxis, nearest_frames
from .layers import Layers, Reduce, group_choices, stored_layers
from .read import StoreReader, as_names, open_store
from .store import StoredArray
from .windows import PADS, Grid, window_range

__all__ = ["ARRAY_CACHE", "FeatureWindows", "collate_windows"]

#: metadata documents read at once while indexing (remote stores answer each after a round trip)
INDEX_THREADS = 16
#: arrays each process keeps open, the least recently read dropped first: reopening one reads its metadata
#: again (an HDF5 array's attributes cost more than its window's chunk; a Zarr array's a store round trip),
#: while each open array holds memory (an HDF5 dataset keeps its last decompressed chunk, up to 1 MiB): with
#: 4096, a process reading 1,000 OpenL3 songs from HDF5 grew to 1 GiB
ARRAY_CACHE = 256


@dataclass
class _Opened:
    """What one process holds open: its own store handle and the arrays it has opened (least recent first)."""

    pid: int
    reader: StoreReader
    arrays: OrderedDict = field(default_factory=OrderedDict)


class FeatureWindows(torch.utils.data.Dataset):
    """Windows of ``window_s`` seconds every ``hop_s`` seconds (default ``window_s``) of each song, with
    one tensor per model, aligned on ``align``'s clock or each on its own.

    Parameters
    ----------
    store
        A path or URL (``features.zarr``, ``s3://bucket/features.zarr``, an ``.h5`` export) or an open
        :class:`~featurestore.read.StoreReader`, of which only the URL and storage options are kept.
    models
        The groups read, one tensor each (``align``'s is added if missing, as ``load_song`` does).
    window_s, hop_s
        Window length and the step between window starts, in seconds; every window holds a whole number
        of frames of the clocks it is read on (:meth:`featurestore.windows.Grid.frames`).
    align
        A model whose clock every model is put on (``method="nearest"``), or None for each its own.
    songs
        The songs to cut (default: those with a complete array of every model); KeyError for one that
        lacks a model.
    layers, reduce
        Hidden states chosen and mixed on read, as :meth:`StoreReader.load_song` takes them: applied to
        the groups stored with layers, or ``{group: ...}`` per group.
    pad
        ``"drop"``: only windows with every value present (no NaN from a song's end); ``"nan"``: also the
        partial windows at the end (and at the start on a clock whose first frame lies a hop or more
        after 0 s), padded with NaN to the full frame count; :func:`collate_windows` gives their masks.
    transform
        Called on each item (the dict) before it is returned; picklable for ``spawn`` workers.
    storage_options
        fsspec options for a URL (S3 endpoint, credentials); a StoreReader brings its own.
    """

    def __init__(self, store: str | os.PathLike[str] | StoreReader, models: str | Sequence[str], window_s: float,
                 hop_s: float | None = None, align: str | None = None, songs: str | Sequence[str] | None = None,
                 layers: Layers | Mapping[str, Layers] = None, reduce: Reduce | Mapping[str, Reduce] = None,
                 pad: str = "drop", transform: Callable[[dict[str, Any]], Any] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        if pad not in PADS:
            raise ValueError(f"pad must be one of {PADS}, not {pad!r}")
        self.models = as_names(models)
        if align is not None and align not in self.models:
            self.models.append(align)
        self.align, self.pad, self.transform = align, pad, transform
        self.grid = Grid.of(window_s, hop_s)
        self._opened: _Opened | None = None
        if isinstance(store, StoreReader):
            reader = store
            self.url, self.storage_options = store.url, getattr(store.backend, "storage_options", None)
        else:
            self.url, self.storage_options = str(store), dict(storage_options) if storage_options else None
            reader = open_store(self.url, self.storage_options)
            self._opened = _Opened(os.getpid(), reader)
        groups = reader.models()
        missing = [m for m in self.models if m not in groups]
        if missing:
            raise KeyError(f"no group {', '.join(map(repr, missing))} in {self.url}; it has {groups}")
        group_attrs = {m: reader.model_attrs(m) for m in self.models}
        #: each group's clock
        self.clocks = {m: TimeAxis.from_attrs(attrs) for m, attrs in group_attrs.items()}
        #: frames per window of each tensor (every model's own, or the target's for all)
        self.frames = self.grid.frames(self.clocks if align is None else {align: self.clocks[align]})
        if align is not None:
            self.frames = dict.fromkeys(self.models, self.frames[align])
        #: each group's layer choice (checked here, not in a worker)
        self._choices = group_choices({m: stored_layers(attrs) for m, attrs in group_attrs.items()}, layers, reduce)
        self.songs = self._songs(reader, songs)
        counts = self._plan(reader)
        #: window ``i`` of the dataset is window ``self._first[k] + i - self._offsets[k]`` of song ``k``
        self._first = np.asarray([r.start for r in counts], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum([len(r) for r in counts])]).astype(np.int64)

    def _songs(self, reader: StoreReader, songs: str | Sequence[str] | None) -> list[str]:
        """The songs asked for, each with every model; by default every such song, sorted."""
        complete = [set(reader.songs(m)) for m in self.models]
        if songs is None:
            return sorted(set.intersection(*complete))
        songs = as_names(songs)
        lacking = [s for s in songs if not all(s in c for c in complete)]
        if lacking:
            raise KeyError(f"{len(lacking)} song(s) lack a complete array of one of {self.models}: {lacking[:5]}")
        return songs

    def _plan(self, reader: StoreReader) -> list[range]:
        """Each song's windows, from its arrays' metadata (clocks and frame counts); no chunk is read."""
        def song(song_id: str) -> range:
            clocks = {}
            for model in self.models:
                arr = reader.backend.array(model, song_id)
                clocks[model] = (TimeAxis.from_attrs(arr.attrs), arr.shape[arr.dims.index("time")])
            return window_range(self.grid, clocks, self.frames, self.align, self.pad)

        with ThreadPoolExecutor(INDEX_THREADS) as pool:
            return list(pool.map(song, self.songs))

    # -- the index -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._offsets[-1])

    def indices(self, song_id: str) -> range:
        """The dataset indices of ``song_id``'s windows, in time order (for samplers that split by song)."""
        k = self.songs.index(song_id)
        return range(int(self._offsets[k]), int(self._offsets[k + 1]))

    def window(self, index: int) -> tuple[str, float]:
        """``(song_id, start_s)`` of window ``index``, from the index alone."""
        k, j = self._locate(index)
        return self.songs[k], self.grid.bounds(j)[0]

    def _locate(self, index: int) -> tuple[int, int]:
        """(song position, window number ``j`` within the song) of dataset index ``index``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window {index} of {n}")
        index %= n
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return k, int(self._first[k] + index - self._offsets[k])

    # -- items -----------------------------------------------------------------------------------
    def _array(self, model: str, song: str) -> StoredArray:
        """``song``'s array of ``model``, through this process's own handle (opened on its first item, never
        one inherited through a fork) and its cache of open arrays (:data:`ARRAY_CACHE`)."""
        if self._opened is None or self._opened.pid != os.getpid():
            self._opened = _Opened(os.getpid(), open_store(self.url, self.storage_options))
        arrays = self._opened.arrays
        arr = arrays.get((model, song))
        if arr is not None:
            arrays.move_to_end((model, song))
            return arr
        arr = self._opened.reader.backend.array(model, song)
        if arr is None:
            raise KeyError(f"no complete {model!r} features for song {song!r} in {self.url} (removed since indexing?)")
        arrays[model, song] = arr
        if len(arrays) > ARRAY_CACHE:
            arrays.popitem(last=False)
        return arr

    def __getitem__(self, index: int) -> Any:
        k, j = self._locate(index)
        song = self.songs[k]
        arrays = {model: self._array(model, song) for model in self.models}
        if self.align is None:
            item = {m: self._own_clock(arrays[m], m, j) for m in self.models}
        else:
            item = self._aligned(arrays, j)
        item = {m: torch.from_numpy(x) for m, x in item.items()}
        item.update(song_id=song, start_s=self.grid.bounds(j)[0])
        return self.transform(item) if self.transform is not None else item

    def _own_clock(self, arr: StoredArray, model: str, j: int) -> np.ndarray:
        """Window ``j`` of ``model`` on its own clock: its ``frames`` rows, NaN where the song has none."""
        n, first = self.frames[model], self.grid.first_frame(self.clocks[model], j)
        lo, hi = max(first, 0), min(first + n, arr.shape[arr.dims.index("time")])
        return _placed(self._read(arr, model, lo, hi), lo - first, n)

    def _aligned(self, arrays: Mapping[str, StoredArray], j: int) -> dict[str, np.ndarray]:
        """Window ``j`` of every model on the target's clock: the target's rows, and for each other model
        the frame nearest each of the target's times (:func:`~featurestore.clock.nearest_frames`, as
        ``load_song`` aligns), NaN where the target has no frame or the model none within half its hop."""
        target = self.clocks[self.align]
        n, first = self.frames[self.align], self.grid.first_frame(target, j)
        lo, hi = max(first, 0), min(first + n, arrays[self.align].shape[arrays[self.align].dims.index("time")])
        times = target.times(hi - lo, first=lo)
        out = {self.align: _placed(self._read(arrays[self.align], self.align, lo, hi), lo - first, n)}
        for model, arr in arrays.items():
            if model == self.align:
                continue
            axis = self.clocks[model]
            a, b = _around(axis, arr.shape[arr.dims.index("time")], times)
            nearest = nearest_frames(axis.times(b - a, first=a), times, axis.hop_s)
            values = self._read(arr, model, a, b)
            rows = np.full((len(times),) + values.shape[1:], np.nan, dtype=np.float32)
            rows[nearest >= 0] = values[nearest[nearest >= 0]]
            out[model] = _placed(rows, lo - first, n)
        return out

    def _read(self, arr: StoredArray, model: str, lo: int, hi: int) -> np.ndarray:
        """Frames ``lo..hi-1`` of ``arr`` as float32, the model's layer choice applied, time first. Reads
        only the chunks that hold them."""
        dims = arr.dims
        index = tuple(slice(lo, hi) if d == "time" else slice(None) for d in dims)
        data = np.asarray(arr[index], dtype=np.float32)
        choice = self._choices.get(model)
        if choice is not None:
            data, dims = choice.apply(data, dims)
        return np.moveaxis(data, dims.index("time"), 0)

    def __getstate__(self) -> dict[str, Any]:
        """What a ``spawn`` worker receives: everything but what this process holds open."""
        return {**self.__dict__, "_opened": None}

    def __repr__(self) -> str:
        return (f"FeatureWindows({self.url!r}, {self.models}, window_s={float(self.grid.window):g}, "
                f"hop_s={float(self.grid.hop):g}, align={self.align!r}, pad={self.pad!r}: {len(self)} windows "
                f"of {len(self.songs)} songs)")


def _around(axis: TimeAxis, length: int, times: np.ndarray) -> tuple[int, int]:
    """The frames ``a..b-1`` of a clock (of ``length`` frames) around ``times``: each time's neighbours on
    either side, plus one frame for the rounding of the float positions."""
    if len(times) == 0:
        return 0, 0
    position = (times[[0, -1]] * axis.sample_rate - axis.t0_samples) / axis.hop_samples
    return max(0, math.floor(position[0]) - 1), max(0, min(length, math.ceil(position[1]) + 2))


def _placed(rows: np.ndarray, offset: int, n: int) -> np.ndarray:
    """``rows`` at ``offset`` in ``n`` time steps, NaN elsewhere (no copy when they fill them)."""
    if offset == 0 and len(rows) == n:
        return np.ascontiguousarray(rows)
    out = np.full((n,) + rows.shape[1:], np.nan, dtype=np.float32)
    out[offset:offset + len(rows)] = rows
    return out


def collate_windows(items: Sequence[Mapping[str, Any]], fill: float | None = None) -> dict[str, Any]:
    """A batch of :class:`FeatureWindows` items (``pad="nan"`` or ``"drop"``): ``DataLoader(collate_fn=...)``.

    Returns ``{model: (batch, frames, ...) tensor, "mask": {model: (batch, frames) bool}, "song_id":
    [str], "start_s": (batch,) float64 tensor}``. ``mask`` is True at the time steps that hold a value:
    a padded step (past a song's end) is all NaN, as is a step an aligned model does not cover; a step
    whose stored values are all NaN counts as padding too. ``fill`` replaces the NaN of the returned
    tensors (e.g. 0.0 for a model that cannot take NaN), after the masks are taken.
    Use ``functools.partial(collate_windows, fill=0.0)`` to pass it to a DataLoader.
    """
    models = [k for k in items[0] if k not in ("song_id", "start_s")]
    batch: dict[str, Any] = {"mask": {}}
    for model in models:
        x = torch.stack([item[model] for item in items])
        batch["mask"][model] = ~torch.isnan(x).flatten(2).all(dim=2) if x.ndim > 2 else ~torch.isnan(x)
        batch[model] = x if fill is None else torch.where(torch.isnan(x), torch.tensor(fill, dtype=x.dtype), x)
    batch["song_id"] = [item["song_id"] for item in items]
    batch["start_s"] = torch.tensor([item["start_s"] for item in items], dtype=torch.float64)
    return batch
