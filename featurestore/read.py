"""Read an fstore store as xarray objects whose ``time`` coordinate is in seconds.

    import featurestore as fs
    store = fs.open_store("features.zarr")
    store.songs("madmom")                       # complete songs only
    da = store.load("song1", "crepe")           # DataArray (time, feature), time = t0_s + i*hop_s
    ds = store.load_song("song1", align="madmom")   # every model on madmom's 100 Hz clock

Reading needs neither torch nor any model: only zarr, xarray (and dask for ``lazy=True``).
Incomplete arrays (interrupted writes) are invisible here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .extractors.base import TimeAxis
from .store import FeatureStore

ALIGN_METHODS = ("nearest", "linear")


def open_store(url: str = "features.zarr", storage_options: Mapping[str, Any] | None = None) -> "StoreReader":
    """Open a store for reading (local path or fsspec URL such as ``s3://bucket/features.zarr``)."""
    return StoreReader(FeatureStore(url, mode="r", storage_options=storage_options))


class StoreReader:
    """The read API of a store (songs, models, xarray loading and alignment)."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    @property
    def url(self) -> str:
        return self._store.url

    def models(self) -> list[str]:
        """Models with at least a group in the store."""
        return self._store.models()

    def songs(self, model: str | None = None) -> list[str]:
        """Song ids with a complete array for ``model`` (or for any model when None)."""
        if model is not None:
            return self._store.songs(model)
        return sorted({s for m in self.models() for s in self._store.songs(m)})

    def failures(self, model: str | None = None) -> list[dict[str, Any]]:
        """Recorded failures: dicts with model, song_id, error, error_type, time, source."""
        return self._store.failures(model)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return self._store.model_attrs(model)

    def load(self, song_id: str, model: str, lazy: bool = False):
        """One song's features for one model as an ``xr.DataArray``.

        Dims are the stored ones, e.g. ``("time",)``, ``("time", "feature")`` or
        ``("layer", "time", "feature")``; ``time`` is in seconds, ``feature`` carries the
        feature names where the model has them (CREPE: frequency, confidence), ``layer`` the
        layer indices. Attributes are the array's (time axis, source, fingerprint, ...).
        ``lazy=True`` returns a dask-backed array that reads on ``.compute()``.

        Raises KeyError when (song, model) has no complete array.
        """
        import xarray as xr

        arr = self._store.array(model, song_id)
        if arr is None:
            raise KeyError(f"no complete {model!r} features for song {song_id!r} in {self.url}")
        attrs = arr.attrs.asdict()
        dims = tuple(attrs["dims"])
        if lazy:
            import dask.array as da

            data = da.from_zarr(arr)
        else:
            data = arr[...]
        coords: dict[str, Any] = {"time": ("time", TimeAxis.from_attrs(attrs).times(arr.shape[dims.index("time")]), {"units": "s"})}
        if "feature" in dims and attrs.get("feature_names"):
            coords["feature"] = list(attrs["feature_names"])
        for dim, values in (attrs.get("coords") or {}).items():
            coords[dim] = list(values)
        attrs.pop("complete", None)
        return xr.DataArray(data, dims=dims, coords=coords, name=model, attrs=attrs)

    def load_song(self, song_id: str, models: Sequence[str] | None = None, align: str | None = None,
                  method: str = "nearest", lazy: bool = False):
        """Several models' features of one song in one ``xr.Dataset``.

        Without ``align`` each model keeps its own clock, as dims ``time_<model>``. With
        ``align="<model>"`` every variable is put on that model's ``time`` coordinate:

        - ``method="nearest"``: each target time takes the source frame whose centre is
          nearest, provided it lies within half a source hop (else NaN, e.g. beyond the end);
        - ``method="linear"``: linear interpolation between the two surrounding source frames
          (NaN outside the first..last source frame centres).

        Non-time dims are renamed ``<model>_feature`` / ``<model>_layer`` so models of
        different widths can share a Dataset. Models without a complete array for the
        song are left out; KeyError if none has one.
        """
        import xarray as xr

        if method not in ALIGN_METHODS:
            raise ValueError(f"method must be one of {ALIGN_METHODS}, not {method!r}")
        models = list(models) if models is not None else self.models()
        if align is not None and align not in models:
            models.append(align)
        arrays = {}
        for model in models:
            try:
                arrays[model] = self.load(song_id, model, lazy=lazy)
            except KeyError:
                continue
        if not arrays:
            raise KeyError(f"song {song_id!r} has no complete features for {models} in {self.url}")
        if align is not None and align not in arrays:
            raise KeyError(f"cannot align on {align!r}: song {song_id!r} has no complete {align} features")
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

    def info(self) -> dict[str, Any]:
        """Per model: complete and incomplete song counts, frame rate, dims; plus failures."""
        out: dict[str, Any] = {"url": self.url, "models": {}, "failures": len(self.failures())}
        for model in self.models():
            attrs = self.model_attrs(model)
            complete = self._store.songs(model)
            everything = self._store.songs(model, complete_only=False)
            out["models"][model] = {
                "songs": len(complete),
                "incomplete": len(everything) - len(complete),
                "failed": len(self.failures(model)),
                "frame_rate_hz": attrs.get("frame_rate_hz"),
                "hop_s": attrs.get("hop_s"),
                "t0_s": attrs.get("t0_s"),
                "dims": attrs.get("dims"),
                "variant": attrs.get("variant"),
            }
        return out


def _align(da_, target, method: str):
    """Put ``da_`` on the ``target`` time coordinate (see :meth:`StoreReader.load_song`)."""
    if method == "linear":
        return da_.interp(time=target.values, method="linear").assign_coords(time=target)
    hop = float(da_.attrs.get("hop_s", 0.0))
    return da_.reindex(time=target.values, method="nearest", tolerance=hop / 2 + 1e-9).assign_coords(time=target)
