"""The xarray read API: time in seconds, attrs, lazy loading, alignment across models."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import featurestore as fs
import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.store import FeatureStore

from .conftest import write_wav


@pytest.fixture
def store_path(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "song.wav", 2.0, rate=16000)
    exts = [registry.create(n) for n in ("fake", "slow")]
    for e in exts:
        e.load("cpu")
    path = str(tmp_path / "s.zarr")
    fsrun.run(FeatureStore(path, mode="a"), discover(audio).files, exts)
    return path


def test_load_gives_seconds_and_attrs(store_path):
    store = fs.open_store(store_path)
    assert store.models() == ["fake", "slow"] and store.songs() == ["song"]
    da = store.load("song", "fake")
    assert da.dims == ("time", "feature") and da.shape == (200, 2)
    assert list(da["feature"].values) == ["rms", "mean"]
    np.testing.assert_allclose(da["time"].values, da.attrs["t0_s"] + np.arange(200) * da.attrs["hop_s"], rtol=0, atol=1e-12)
    assert da["time"].values[0] == 0.005 and fs.decode_attrs(da.attrs)["source"]["path"] == "song.wav"
    assert "complete" not in da.attrs


def test_lazy_load_is_dask_backed(store_path):
    da = fs.open_store(store_path).load("song", "slow", lazy=True)
    assert da.chunks is not None
    np.testing.assert_array_equal(da.compute().values, fs.open_store(store_path).load("song", "slow").values)


def test_missing_song_is_a_key_error(store_path):
    with pytest.raises(KeyError, match="nope"):
        fs.open_store(store_path).load("nope", "fake")


def test_align_nearest_and_linear(store_path):
    store = fs.open_store(store_path)
    slow = store.load("song", "slow")  # 10 Hz, t0 0
    ds = store.load_song("song", align="fake")  # onto 100 Hz, t0 5 ms
    assert ds["slow"].dims == ("time",) and ds.sizes["time"] == 200
    # 0.005 .. 0.045 s are nearest to slow's frame 0 (0.0 s); 0.055 to frame 1 (0.1 s)
    np.testing.assert_array_equal(ds["slow"].values[:5], np.repeat(slow.values[0], 5))
    assert ds["slow"].values[10] == slow.values[1]
    # past the last frame + half a hop: NaN
    assert np.isnan(ds["slow"].values[-1]) == (ds["time"].values[-1] > slow["time"].values[-1] + 0.05)
    lin = store.load_song("song", align="fake", method="linear")["slow"]
    t = lin["time"].values[7]  # 0.075 s: between slow frames 0 and 1
    expected = slow.values[0] + (slow.values[1] - slow.values[0]) * (t - 0.0) / 0.1
    assert lin.values[7] == pytest.approx(expected, rel=1e-6)


def test_unaligned_dataset_keeps_each_clock(store_path):
    ds = fs.open_store(store_path).load_song("song")
    assert ds["fake"].dims == ("time_fake", "fake_feature") and ds["slow"].dims == ("time_slow",)


def test_plain_xarray_can_open_a_song(store_path):
    da = xr.open_zarr(store_path, group="fake", consolidated=False)
    assert "song" in da.data_vars and da["song"].dims == ("time", "feature")


def test_info_counts(store_path):
    info = fs.open_store(store_path).info()
    assert info["models"]["fake"]["songs"] == 1 and info["models"]["fake"]["frame_rate_hz"] == 100.0
