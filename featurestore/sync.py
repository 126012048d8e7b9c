"""Beat-synchronous and fixed-grid summaries of frames: one value per time interval.

Models run at different frame rates (OpenL3 10 Hz, MERT 75 Hz, CREPE and madmom 100 Hz).
Summarising each model's frames over the same intervals in seconds, between beats or on a
regular grid, gives every model one row per interval, comparable across models and songs.

The intervals between beats follow ``librosa.util.sync`` (with its default ``pad=True``),
in seconds instead of frame indices; a frame belongs to an interval by its **centre time**:
frame ``i`` (centred at ``t0_s + i*hop_s``) is in ``[start, end)`` when
``start <= t0_s + i*hop_s < end``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from .extractors.base import TimeAxis

if TYPE_CHECKING:
    import xarray as xr

_STATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda x: np.mean(x, axis=0, dtype=np.float64),
    "median": lambda x: np.median(x.astype(np.float64), axis=0),
    "max": lambda x: np.max(x, axis=0).astype(np.float64),
    "std": lambda x: np.std(x, axis=0, dtype=np.float64),
}
#: the statistics :func:`aggregate` computes (``std`` is the population one, numpy's ``ddof=0``)
SYNC_STATS = tuple(_STATS)


def beat_intervals(beats: np.ndarray, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The intervals between beats, as ``librosa.util.sync(..., pad=True)`` forms them.

    The boundaries are 0, every beat (clipped to ``[0, end_s]``) and ``end_s``, sorted, each
    once; interval ``k`` is ``[boundary_k, boundary_k+1)``. So the frames before the first
    beat form the first interval (none when a beat is at 0), the frames from the last beat
    to ``end_s`` the last one, beats at or after ``end_s`` add nothing, and a repeated beat
    is one boundary. This is librosa's ``fix_frames(beats, x_min=0, x_max=n_frames)`` in
    seconds, with ``end_s`` in the place of ``n_frames``. As in librosa, no beats at all give
    no intervals (``sync`` with an empty index returns an empty result).

    Parameters
    ----------
    beats : np.ndarray [shape=(n_beats,)]
        Beat times in seconds, >= 0, in any order.
    end_s : float >= 0
        The end of the song in seconds: every frame to summarise is centred before it.

    Returns
    -------
    starts, ends : np.ndarray [shape=(n_intervals,), dtype=float64]
        Interval bounds in seconds; ``ends[:-1] == starts[1:]``, ``starts[0] == 0`` and
        ``ends[-1] == end_s`` (no intervals when there are no beats or ``end_s == 0``).

    Raises
    ------
    ValueError
        A negative beat time (librosa refuses negative frame indices) or ``end_s``.
    """
    beats = np.asarray(beats, dtype=np.float64)
    if beats.ndim != 1:
        raise ValueError(f"beats must be 1-d (n_beats,), not of shape {beats.shape}")
    if np.any(beats < 0) or not end_s >= 0:
        raise ValueError("beat times and end_s must be >= 0 seconds")
    if beats.size == 0:
        return np.empty(0), np.empty(0)
    bounds = np.unique(np.concatenate(([0.0, end_s], np.clip(beats, 0.0, end_s))))
    return bounds[:-1], bounds[1:]


def grid_intervals(rate_hz: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Regular intervals of ``1 / rate_hz`` seconds from 0 until ``end_s`` is covered.

    Interval ``k`` is ``[k / rate_hz, (k + 1) / rate_hz)`` for ``k = 0 .. ceil(end_s * rate_hz) - 1``:
    all have the same length, so the last one may end after ``end_s``. With ``end_s`` a
    multiple of the period, none does (``end_s * rate_hz`` is rounded to 9 decimals first,
    so that 0.3 s at 10 Hz is 3 intervals, not 4).

    Parameters
    ----------
    rate_hz : float > 0
        Intervals per second, e.g. 2.0 for half-second summaries.
    end_s : float >= 0
        The end of the song in seconds.

    Returns
    -------
    starts, ends : np.ndarray [shape=(n_intervals,), dtype=float64]
        Interval bounds in seconds.
    """
    if not rate_hz > 0 or not end_s >= 0:
        raise ValueError(f"rate_hz must be > 0 and end_s >= 0, not {rate_hz!r} and {end_s!r}")
    k = np.arange(math.ceil(round(end_s * rate_hz, 9)) + 1, dtype=np.float64)
    bounds = k / rate_hz
    return bounds[:-1], bounds[1:]


def aggregate(values: np.ndarray, frame_times: np.ndarray, starts: np.ndarray, ends: np.ndarray,
              stat: str = "mean", axis: int = 0) -> np.ndarray:
    """``stat`` of the frames whose centre time lies in each interval ``[starts[k], ends[k])``.

    Parameters
    ----------
    values : np.ndarray [shape=(..., n_frames, ...)]
        Frames along ``axis``, any other dims (features, layers) kept.
    frame_times : np.ndarray [shape=(n_frames,)]
        Centre time of each frame in seconds, ascending.
    starts, ends : np.ndarray [shape=(n_intervals,)]
        Interval bounds in seconds (from :func:`beat_intervals` or :func:`grid_intervals`).
    stat : {"mean", "median", "max", "std"}
        The statistic over each interval's frames, computed in float64 (``std`` with ``ddof=0``).
    axis : int
        The frame axis of ``values``.

    Returns
    -------
    summary : np.ndarray [shape=values.shape with n_frames replaced by n_intervals, dtype=float64]
        One summary per interval; NaN for an interval that holds no frame centre (two beats
        closer than one hop, or a model whose frames stop before the song's end).
    """
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {SYNC_STATS}, not {stat!r}")
    frames = np.moveaxis(np.asarray(values), axis, 0)
    times = np.asarray(frame_times, dtype=np.float64)
    if times.shape != frames.shape[:1]:
        raise ValueError(f"{times.size} frame times for {frames.shape[0]} frames along axis {axis}")
    if np.any(np.diff(times) < 0):
        raise ValueError("frame_times must be ascending")
    first = np.searchsorted(times, np.asarray(starts, dtype=np.float64), side="left")
    stop = np.searchsorted(times, np.asarray(ends, dtype=np.float64), side="left")
    out = np.full((first.size,) + frames.shape[1:], np.nan)
    reduce = _STATS[stat]
    for k in np.flatnonzero(stop > first):
        out[k] = reduce(frames[first[k]:stop[k]])
    return np.moveaxis(out, 0, axis)


def song_end_s(arrays: Mapping[str, "xr.DataArray"]) -> float:
    """Where a song's intervals end: its duration, or later where a model's last frame needs it.

    The end is the latest of the audio's ``duration_s`` and, for each model, half a hop past
    its last frame centre (the end of that frame's hop-long span), so that every frame centre
    lies before it: CREPE's last frame can be centred exactly at the end of the audio. The
    duration keeps the intervals the same whichever models are loaded.
    """
    ends = [float(a.attrs.get("duration_s", 0.0)) for a in arrays.values()]
    for a in arrays.values():
        axis = TimeAxis.from_attrs(a.attrs)
        ends.append((2 * axis.t0_samples + (2 * a.sizes["time"] - 1) * axis.hop_samples) / (2 * axis.sample_rate))
    return max(ends)


def sync_dataset(arrays: Mapping[str, "xr.DataArray"], starts: np.ndarray, ends: np.ndarray,
                 stat: str = "mean") -> "xr.Dataset":
    """Each model's ``stat`` over the intervals, in one Dataset with a ``beat`` dim.

    ``arrays`` are one song's arrays as :meth:`featurestore.read.StoreReader.load` returns them
    (a ``time`` coordinate of frame centres in seconds). Each variable keeps its other dims,
    renamed ``<model>_<dim>`` as ``load_song`` names them, with ``time`` replaced by ``beat``;
    ``beat`` has the coordinates ``start_s`` and ``end_s``. Values are float32, like every
    loaded array.
    """
    import xarray as xr

    variables = {}
    for model, da_ in arrays.items():
        axis = da_.dims.index("time")
        data = aggregate(da_.values, da_["time"].values, starts, ends, stat, axis).astype(np.float32)
        dims = tuple("beat" if d == "time" else f"{model}_{d}" for d in da_.dims)
        coords = {f"{model}_{d}": da_.coords[d].values for d in da_.dims if d != "time" and d in da_.coords}
        variables[model] = xr.DataArray(data, dims=dims, coords=coords, attrs={**da_.attrs, "stat": stat})
    return xr.Dataset(variables, coords={"start_s": ("beat", starts, {"units": "s"}),
                                         "end_s": ("beat", ends, {"units": "s"})})
