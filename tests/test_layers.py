"""Layers on read: hidden states chosen by index and mixed (mean or weights) by load, load_song, pooled,
stack and FeatureWindows, on a group stored with several layers and on one stored with a single layer."""

from __future__ import annotations

import numpy as np
import pytest

import featurestore as fs
from featurestore.clock import TimeAxis
from featurestore.export import export_hdf5
from featurestore.store import FeatureStore
from featurestore.torch import FeatureWindows

from .helpers import write_group

MERT = TimeAxis(24000, 320, 200)  # 75 Hz
OPENL3 = TimeAxis(48000, 4800, 0)  # 10 Hz
STORED = [0, 6, 8, 12]
SONGS = {"a": 160, "b/c": 97}  # frames at 75 Hz


@pytest.fixture(scope="module")
def raw():
    """Each song's (layer, time, feature) values as written."""
    rng = np.random.default_rng(3)
    return {song: rng.standard_normal((len(STORED), frames, 5)).astype(np.float32) for song, frames in SONGS.items()}


@pytest.fixture(scope="module")
def url(tmp_path_factory, raw):
    """``mert``: layers 0, 6, 8, 12; ``mert12``: layer 12 alone (no layer dim, ``config.layers`` [12]);
    ``emb``: no layers."""
    path = str(tmp_path_factory.mktemp("layers") / "s.zarr")
    store = FeatureStore(path, mode="a")
    write_group(store, "mert", raw, ("layer", "time", "feature"), MERT, coords={"layer": STORED}, config={"layers": STORED})
    write_group(store, "mert12", {s: x[3] for s, x in raw.items()}, ("time", "feature"), MERT, config={"layers": [12]})
    rng = np.random.default_rng(4)
    write_group(store, "emb", {s: rng.standard_normal((int(n / 7.5), 3)).astype(np.float32) for s, n in SONGS.items()},
                ("time", "feature"), OPENL3)
    return path


@pytest.fixture(scope="module", params=["zarr", "hdf5"])
def reader(request, url, tmp_path_factory):
    if request.param == "zarr":
        return fs.open_store(url)
    out = tmp_path_factory.mktemp("h5") / "s.h5"
    export_hdf5(FeatureStore(url), out)
    return fs.open_store(str(out))


def test_layers_are_chosen_by_index_in_the_order_asked(reader, raw):
    da = reader.load("a", "mert", layers=[8, 6])
    assert da.dims == ("layer", "time", "feature") and list(da["layer"].values) == [8, 6]
    np.testing.assert_array_equal(da.values, raw["a"][[2, 1]])
    assert fs.decode_attrs(da.attrs)["layers"] == [8, 6]
    one = reader.load("a", "mert", layers=12)
    assert one.dims == ("time", "feature") and "layer" not in one.coords
    np.testing.assert_array_equal(one.values, raw["a"][3])
    window = reader.load("a", "mert", layers=[6], start=0.5, end=1.0)
    whole = reader.load("a", "mert", start=0.5, end=1.0)
    np.testing.assert_array_equal(window.values, whole.sel(layer=[6]).values)
    np.testing.assert_array_equal(window["time"].values, whole["time"].values)


def test_mean_and_weights_mix_in_float64(reader, raw):
    x = raw["b/c"].astype(np.float64)
    mean = reader.load("b/c", "mert", layers=[6, 12], reduce="mean")
    assert mean.dims == ("time", "feature") and mean.dtype == np.float32
    np.testing.assert_array_equal(mean.values, ((x[1] + x[3]) / 2).astype(np.float32))
    every = reader.load("b/c", "mert", reduce="mean")  # all stored layers
    np.testing.assert_array_equal(every.values, x.mean(axis=0).astype(np.float32))
    weighted = reader.load("b/c", "mert", layers=[0, 8], reduce=[1, 3])  # normalised: 0.25, 0.75
    np.testing.assert_array_equal(weighted.values, (0.25 * x[0] + 0.75 * x[2]).astype(np.float32))
    np.testing.assert_array_equal(weighted.values, reader.load("b/c", "mert", layers=[0, 8], reduce=[0.25, 0.75]).values)
    assert fs.decode_attrs(weighted.attrs)["layer_weights"] == [0.25, 0.75]
    lazy = reader.load("b/c", "mert", layers=[0, 8], reduce=[1, 3], lazy=True, start=0.2, end=0.9)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.compute().values, weighted.sel(time=lazy["time"]).values)


def test_a_group_stored_with_one_layer_answers_to_its_index(reader, raw):
    kept = reader.load("a", "mert12", layers=[12])
    assert kept.dims == ("layer", "time", "feature") and list(kept["layer"].values) == [12]  # as on a layered group
    np.testing.assert_array_equal(kept.values, reader.load("a", "mert", layers=[12]).values)
    for options in ({"layers": 12}, {"reduce": "mean"}, {"layers": [12], "reduce": [2.0]}):
        np.testing.assert_array_equal(reader.load("a", "mert12", **options).values, raw["a"][3])
    with pytest.raises(ValueError, match=r"'mert12' stores layers \[12\]; 6 is not among them"):
        reader.load("a", "mert12", layers=[6])


@pytest.mark.parametrize("options, message", [
    ({"layers": [6, 13]}, r"'mert' stores layers \[0, 6, 8, 12\]; 13 is not among them"),
    ({"layers": [6, 6]}, "repeat"),
    ({"layers": []}, "non-empty"),
    ({"reduce": "max"}, "mean"),
    ({"layers": [6, 8], "reduce": [1.0]}, "1 weights for 2 layers"),
    ({"layers": [6, 8], "reduce": [1.0, -1.0]}, "non-negative"),
    ({"layers": [6, 8], "reduce": [0, 0]}, "not all zero"),
])
def test_bad_choices_are_refused_with_the_stored_layers(reader, options, message):
    with pytest.raises(ValueError, match=message):
        reader.load("a", "mert", **options)


def test_a_group_without_layers_refuses_them(reader):
    with pytest.raises(ValueError, match="'emb' stores no hidden-state layers"):
        reader.load("a", "emb", layers=[6])
    with pytest.raises(ValueError, match="apply to none of"):
        reader.load_song("a", ["emb"], layers=[6])


def test_pooled_and_stack_take_the_same_choice(reader):
    for stat in ("mean", "std"):
        pooled = reader.pooled("mert", stat=stat, layers=[6, 8], reduce=[1, 1])
        assert pooled.dims == ("song", "feature")
        for song in SONGS:
            values = reader.load(song, "mert", layers=[6, 8], reduce=[1, 1]).values.astype(np.float64)
            expected = values.mean(axis=0) if stat == "mean" else values.std(axis=0)
            np.testing.assert_allclose(pooled.sel(song=song).values, expected, rtol=1e-6)
    kept = reader.pooled("mert", layers=[12, 0])
    assert kept.dims == ("song", "layer", "feature") and list(kept["layer"].values) == [12, 0]
    np.testing.assert_allclose(kept.sel(song="a").values,
                               reader.load("a", "mert", layers=[12, 0]).values.mean(axis=1, dtype=np.float64), rtol=1e-6)
    stacked = reader.stack("mert", layers=8)
    assert stacked.dims == ("song", "time", "feature") and list(stacked["length"].values) == [160, 97]
    np.testing.assert_array_equal(stacked.sel(song="b/c").values[:97], reader.load("b/c", "mert", layers=8).values)


def test_load_song_applies_a_choice_to_the_groups_with_layers(reader, raw):
    ds = reader.load_song("a", ["mert", "mert12", "emb"], align="emb", layers=[12], reduce="mean")
    assert ds["mert"].dims == ("time", "mert_feature") and ds["mert12"].dims == ("time", "mert12_feature")
    assert ds["emb"].dims == ("time", "emb_feature")  # left as it is
    np.testing.assert_array_equal(ds["mert"].values, ds["mert12"].values)
    per_group = reader.load_song("a", ["mert", "mert12"], layers={"mert": [0, 6]})
    assert per_group["mert"].dims == ("mert_layer", "time_mert", "mert_feature")
    assert per_group["mert12"].dims == ("time_mert12", "mert12_feature")  # not named: as stored
    np.testing.assert_array_equal(per_group["mert"].values, raw["a"][:2])
    with pytest.raises(ValueError, match="'emb' stores no hidden-state layers"):
        reader.load_song("a", ["mert", "emb"], layers={"emb": [0]})


def test_feature_windows_take_the_choice_per_window(url):
    windows = FeatureWindows(url, ["mert", "emb"], window_s=0.4, layers=[6, 12], reduce=[1, 3])
    reader = fs.open_store(url)
    assert len(windows) > 0
    for i in range(len(windows)):
        item = windows[i]
        expected = reader.load(item["song_id"], "mert", start=item["start_s"], end=item["start_s"] + 0.4,
                               layers=[6, 12], reduce=[1, 3])
        assert tuple(item["mert"].shape) == (30, 5)
        np.testing.assert_array_equal(item["mert"].numpy(), expected.values)
    kept = FeatureWindows(url, ["mert12"], window_s=0.4, layers=[12])[0]["mert12"]
    assert tuple(kept.shape) == (30, 1, 5)  # time first, then the layer dim
    with pytest.raises(ValueError, match=r"'mert' stores layers \[0, 6, 8, 12\]; 7 is not among them"):
        FeatureWindows(url, ["mert", "emb"], window_s=0.4, layers=[7])  # refused when built, not in a worker
