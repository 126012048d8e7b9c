"""Tasks of several songs: short songs share model calls (extract_batch), the store is the same as song by song."""

from __future__ import annotations

import numpy as np

import featurestore.run as fsrun
from featurestore.run import compute
from featurestore.store.attributes import group_attributes
from featurestore.discover import discover
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import fstore, loaded_models


def _audio(tmp_path):
    folder = tmp_path / "audio"
    for i, seconds in enumerate([0.3, 0.3, 0.9, 0.3, 0.002, 0.3, 0.3]):
        write_wav(folder / f"s{i}.wav", seconds, freq=200.0 + 40 * i)
    return discover(folder).files


def _calls(ext):
    """Record the number of songs in each extract_batch call of ``ext``."""
    calls: list[int] = []
    original = ext.extract_batch

    def recording(waves):
        calls.append(len(waves))
        return original(waves)

    ext.extract_batch = recording
    return calls


def test_short_songs_of_a_task_share_calls_and_the_store_is_unchanged(tmp_path, fake_models, monkeypatch):
    monkeypatch.setattr(compute, "BATCH_SONG_MAX_S", 0.5)
    files = _audio(tmp_path)
    single = FeatureStore(str(tmp_path / "single.zarr"), mode="a")
    alone = fsrun.run(single, files, loaded_models("fake", "slow"))
    batched_store = FeatureStore(str(tmp_path / "batched.zarr"), mode="a")
    exts = loaded_models("fake", "slow")
    calls = _calls(exts[0])
    batched = fsrun.run(batched_store, files, exts, fsrun.RunOptions(batch_songs=4))
    # (extract() is extract_batch of one) task s0-s3: the 0.9-s s2 goes alone as soon as it is decoded, then
    # s0, s1, s3 share a call; task s4-s6: the 2-ms s4 is too short for "fake" and spoils the shared call, so
    # each is then computed alone
    assert calls == [1, 3, 3, 1, 1, 1]
    for summary in (alone, batched):
        assert summary.totals["fake"].done == 6 and summary.totals["fake"].failed == 1
        assert [f.song_id for f in summary.failures if f.model == "fake"] == ["s4"]
    assert batched_store.songs("fake") == single.songs("fake")
    for model in ("fake", "slow"):
        for song in single.songs(model):
            a, b = single.array(model, song), batched_store.array(model, song)
            np.testing.assert_array_equal(a[...], b[...])
            assert {k: v for k, v in a.attrs.items() if k != "written"} == {k: v for k, v in b.attrs.items() if k != "written"}
    assert batched_store.leases.held() == []


def test_a_song_held_by_another_run_leaves_the_rest_of_its_task(tmp_path, fake_models):
    files = _audio(tmp_path)
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    other = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    for ext in loaded_models("fake"):
        store.ensure_model(ext.name, group_attributes(ext.describe(), ext.name, "float32"))
    assert other.leases.acquire("s1", "another-run") is None  # a live run holds s1
    try:
        summary = fsrun.run(store, files, loaded_models("fake"), fsrun.RunOptions(batch_songs=3))
    finally:
        other.leases.release("s1", "another-run")
    assert summary.totals["fake"].skipped == 1 and summary.totals["fake"].done == 5
    assert "s1" not in store.songs("fake") and "s0" in store.songs("fake") and "s2" in store.songs("fake")
    again = fsrun.run(store, files, loaded_models("fake"), fsrun.RunOptions(batch_songs=3))
    assert again.totals["fake"].done == 1 and again.totals["fake"].cached == 5


def test_cli_batch_songs(tmp_path, fake_models):


    files = _audio(tmp_path)
    result = fstore("extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                                      "--models", "fake", "--batch-songs", "3")
    assert result.exit_code == 1, result.output  # s4 is too short: one failure, the rest stored
    assert FeatureStore(str(tmp_path / "s.zarr")).songs("fake") == sorted(f.song_id for f in files if f.song_id != "s4")
