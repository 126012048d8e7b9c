"""Beat-synchronous and grid summaries: librosa.util.sync's intervals, frames assigned by centre time."""

from __future__ import annotations

import numpy as np
import pytest

import featurestore as fs
from featurestore.run import run
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.store import FeatureStore
from featurestore.sync import aggregate, beat_intervals, grid_intervals

from .conftest import write_wav

STATS = {"mean": np.mean, "median": np.median, "max": np.max, "std": np.std}


def expected(values: np.ndarray, times: np.ndarray, starts, ends, stat: str, axis: int = 0) -> np.ndarray:
    """The reference: numpy's ``stat`` of the frames with ``start <= centre < end``, NaN where there are none."""
    rows = []
    for s, e in zip(starts, ends):
        inside = (times >= s) & (times < e)
        frames = np.compress(inside, values, axis=axis).astype(np.float64)
        shape = np.delete(np.array(values.shape), axis)
        rows.append(STATS[stat](frames, axis=axis) if inside.any() else np.full(shape, np.nan))
    return np.stack(rows, axis=axis)


# librosa.util.sync(data, idx) with integer frames: boundaries fix_frames(idx, x_min=0, x_max=n_frames),
# i.e. 0, the clipped beats and n_frames, sorted and unique. On 10 frames centred at 0, 1, ..., 9 s:
#   sync(np.arange(10.), [2, 5, 5, 12])       -> [0.5, 3.0, 7.0]     (slices 0:2, 2:5, 5:10)
#   sync(np.arange(10.), [0, 4])              -> [1.5, 6.5]          (slices 0:4, 4:10)
#   sync(np.arange(10.), [7, 3], aggregate=np.max) -> [2.0, 6.0, 9.0]  (slices 0:3, 3:7, 7:10)
#   sync(np.arange(10.), [12])                -> [4.5]               (slice 0:10)
#   sync(np.arange(10.), [])                  -> []                  (an empty index: no slices)
# (librosa 0.11.0 gives these.)
@pytest.mark.parametrize("beats, stat, starts, ends, values", [
    ([2, 5, 5, 12], "mean", [0, 2, 5], [2, 5, 10], [0.5, 3.0, 7.0]),
    ([0, 4], "mean", [0, 4], [4, 10], [1.5, 6.5]),
    ([7, 3], "max", [0, 3, 7], [3, 7, 10], [2.0, 6.0, 9.0]),
    ([12], "mean", [0], [10], [4.5]),
    ([], "mean", [], [], []),
])
def test_librosa_sync_semantics(beats, stat, starts, ends, values):
    got_starts, got_ends = beat_intervals(np.array(beats, dtype=float), end_s=10.0)
    np.testing.assert_array_equal(got_starts, starts)
    np.testing.assert_array_equal(got_ends, ends)
    frames = np.arange(10.0)
    np.testing.assert_array_equal(aggregate(frames, frames, got_starts, got_ends, stat), values)


def test_negative_beats_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        beat_intervals(np.array([-0.1, 1.0]), 2.0)


def test_a_frame_centred_on_a_boundary_starts_the_next_interval():
    times = np.arange(10) / 10  # 0.0, 0.1, ... 0.9 s
    starts, ends = beat_intervals(np.array([3 / 10]), 1.0)
    out = aggregate(np.arange(10.0), times, starts, ends, "max")
    np.testing.assert_array_equal(out, [2.0, 9.0])  # frame 3 (0.3 s) opens the second interval


def test_grid_intervals():
    starts, ends = grid_intervals(2.0, 2.2)
    np.testing.assert_array_equal(starts, [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(ends, [0.5, 1.0, 1.5, 2.0, 2.5])
    assert grid_intervals(10.0, 0.3)[0].size == 3  # 0.3 * 10 is 3.0000000000000004 in floats
    assert grid_intervals(2.0, 0.0)[0].size == 0
    with pytest.raises(ValueError, match="rate_hz"):
        grid_intervals(0.0, 1.0)


@pytest.mark.parametrize("stat", list(STATS))
def test_aggregate_equals_numpy_on_frame_centres(stat):
    rng = np.random.default_rng(0)
    times = (200 + np.arange(300) * 320) / 24000  # MERT's clock: t0 8.33 ms, 75 Hz
    values = rng.normal(size=(300, 4)).astype(np.float32)
    beats = np.sort(rng.uniform(0.2, 3.9, size=9))
    for starts, ends in (beat_intervals(beats, 4.0), grid_intervals(2.0, 4.0)):
        got = aggregate(values, times, starts, ends, stat)
        np.testing.assert_allclose(got, expected(values, times, starts, ends, stat), rtol=1e-12, atol=1e-12)


def test_aggregate_along_another_axis_keeps_the_others():
    rng = np.random.default_rng(1)
    times = np.arange(50) / 10
    values = rng.normal(size=(3, 50, 2))  # (layer, time, feature)
    starts, ends = beat_intervals(np.array([0.55, 1.0, 3.21]), 5.0)
    out = aggregate(values, times, starts, ends, "median", axis=1)
    assert out.shape == (3, 4, 2)
    np.testing.assert_allclose(out, expected(values, times, starts, ends, "median", axis=1), rtol=1e-12)


def test_an_interval_without_frame_centres_is_nan():
    times = np.arange(10) / 10
    starts, ends = beat_intervals(np.array([0.31, 0.33]), 1.0)  # [0.31, 0.33) holds no centre
    out = aggregate(np.ones(10), times, starts, ends, "mean")
    assert np.isnan(out[1]) and not np.isnan(out[[0, 2]]).any()


def test_aggregate_refusals():
    with pytest.raises(ValueError, match="stat"):
        aggregate(np.ones(3), np.arange(3.0), [0.0], [1.0], "min")
    with pytest.raises(ValueError, match="frame times"):
        aggregate(np.ones(3), np.arange(4.0), [0.0], [1.0])
    with pytest.raises(ValueError, match="ascending"):
        aggregate(np.ones(3), np.array([0.0, 2.0, 1.0]), [0.0], [1.0])


# --- through the store -------------------------------------------------------------------------

def activation(n: int, period: int = 50, first: int = 20) -> np.ndarray:
    """A madmom-like beat activation at 100 fps: a peak every ``period`` frames (50: 120 BPM)."""
    act = np.full(n, 0.02, dtype=np.float32)
    act[first::period] = 0.95
    act[first + 1::period] = act[first - 1::period][: len(act[first + 1::period])] = 0.5
    return act


def activation_attrs(n: int, t0_samples: int = 0) -> dict:
    return {"model": "madmom", "sample_rate": 44100, "hop_samples": 441, "t0_samples": t0_samples,
            "hop_s": 0.01, "t0_s": t0_samples / 44100, "frame_rate_hz": 100.0, "duration_s": n / 100,
            "n_samples": n * 441, "fingerprint": "0" * 64,
            "source": {"path": "song.wav", "size": 1, "mtime": 0.0, "sha256": "f" * 64}, "dims": ["time"]}


@pytest.fixture
def store_path(tmp_path, fake_models):
    """One 4-s song: ``fake`` (100 Hz, t0 5 ms, (T, 2)), ``slow`` (10 Hz, (T,)), and beat activations
    ``madmom`` (t0 0) and ``shifted`` (t0 5 ms)."""
    write_wav(tmp_path / "audio" / "song.wav", 4.0, rate=16000)
    exts = [registry.create(n) for n in ("fake", "slow")]
    for e in exts:
        e.load("cpu")
    path = str(tmp_path / "s.zarr")
    store = FeatureStore(path, mode="a")
    run(store, discover(tmp_path / "audio").files, exts)
    store.write("madmom", "song", activation(400), activation_attrs(400))
    store.write("shifted", "song", activation(400), activation_attrs(400, t0_samples=220))
    return path


def test_store_beats_are_madmoms_on_the_groups_clock(store_path):
    from madmom.features.beats import DBNBeatTrackingProcessor

    store = fs.open_store(store_path)
    act = store.load("song", "madmom").values
    beats = store.beats("song")
    np.testing.assert_array_equal(beats, DBNBeatTrackingProcessor(fps=100)(act))
    np.testing.assert_allclose(beats, np.arange(20, 400, 50) / 100, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(store.beats("song", group="shifted"), beats + 220 / 44100)
    slow = store.beats("song", max_bpm=100)
    np.testing.assert_array_equal(slow, DBNBeatTrackingProcessor(fps=100, max_bpm=100)(act))
    assert len(slow) < len(beats)


def test_store_beats_refusals(store_path):
    store = fs.open_store(store_path)
    with pytest.raises(ValueError, match="not a beat activation"):
        store.beats("song", group="fake")
    with pytest.raises(KeyError, match="nope"):
        store.beats("nope")
    with pytest.raises(TypeError, match="'max_bmp'"):
        store.beats("song", max_bmp=100)


@pytest.mark.parametrize("stat", list(STATS))
def test_load_song_synced_to_beats(store_path, stat):
    store = fs.open_store(store_path)
    ds = store.load_song("song", models=["fake", "slow"], sync="beats", stat=stat)
    beats = store.beats("song")
    np.testing.assert_array_equal(ds["start_s"].values, np.r_[0.0, beats])
    np.testing.assert_array_equal(ds["end_s"].values, np.r_[beats, 4.0])  # the audio's duration
    assert ds["fake"].dims == ("beat", "fake_feature") and list(ds["fake_feature"].values) == ["rms", "mean"]
    assert ds["slow"].dims == ("beat",) and ds["fake"].dtype == np.float32
    assert ds.attrs["sync"] == "beats" and ds.attrs["stat"] == stat and ds.attrs["beats_from"] == "madmom"
    for model in ("fake", "slow"):
        da_ = store.load("song", model)
        want = expected(da_.values, da_["time"].values, ds["start_s"].values, ds["end_s"].values, stat)
        np.testing.assert_allclose(ds[model].values, want, rtol=1e-6, atol=1e-7)
        assert not np.isnan(ds[model].values).any()


def test_load_song_on_a_grid(store_path):
    store = fs.open_store(store_path)
    ds = store.load_song("song", sync=2.0)
    assert set(ds.data_vars) == {"fake", "slow", "madmom", "shifted"}
    np.testing.assert_array_equal(ds["start_s"].values, np.arange(8) / 2)
    np.testing.assert_array_equal(ds["end_s"].values, np.arange(1, 9) / 2)
    assert ds.attrs["sync"] == "grid" and ds.attrs["rate_hz"] == 2.0
    for model in ("fake", "slow", "madmom", "shifted"):
        da_ = store.load("song", model)
        want = expected(da_.values, da_["time"].values, ds["start_s"].values, ds["end_s"].values, "mean")
        np.testing.assert_allclose(ds[model].values, want, rtol=1e-6, atol=1e-7)
        assert not np.isnan(ds[model].values).any()


def test_load_song_with_given_beats_and_beats_from(store_path):
    store = fs.open_store(store_path)
    beats = store.beats("song", group="shifted")
    given = store.load_song("song", models=["fake"], sync=beats)
    from_group = store.load_song("song", models=["fake"], sync="beats", beats_from="shifted")
    np.testing.assert_array_equal(given["fake"].values, from_group["fake"].values)
    np.testing.assert_array_equal(given["start_s"].values, np.r_[0.0, beats])
    assert from_group.attrs["beats_from"] == "shifted" and given.attrs["beats_from"] == "given"


@pytest.mark.parametrize("kwargs, match", [
    ({"sync": "beats", "align": "fake"}, "align"),
    ({"sync": 2.0, "start": 1.0}, "start"),
    ({"sync": "bars"}, "'bars'"),
    ({"sync": "beats", "stat": "min"}, "'min'"),
])
def test_load_song_sync_refusals(store_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.open_store(store_path).load_song("song", **kwargs)


def test_a_last_frame_centred_at_the_audios_end_stays_in():
    """CREPE's last frame can be centred exactly at the end of the audio: the song's end moves half a hop past it."""
    import xarray as xr

    from featurestore.sync import song_end_s, sync_dataset

    clock = {"sample_rate": 100, "hop_samples": 1, "t0_samples": 0, "duration_s": 0.04}
    da_ = xr.DataArray(np.arange(5.0), dims=("time",), coords={"time": np.arange(5) / 100}, attrs=clock)
    assert song_end_s({"m": da_}) == 0.045
    ds = sync_dataset({"m": da_}, *beat_intervals(np.array([0.02]), song_end_s({"m": da_})), "max")
    np.testing.assert_array_equal(ds["m"].values, [1.0, 4.0])
    np.testing.assert_array_equal(ds["end_s"].values, [0.02, 0.045])
