"""Decoding ahead: order, bounds, skipped songs, remembered failures, and the pipeline using it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from featurestore import audio as audio_module
import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.run import planning as plan_module
from featurestore.run.planning import SongWork
from featurestore.run.prefetch import Prefetcher
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import loaded_models


def _songs(tmp_path, n=5, seconds=0.3):
    """``n`` short songs as a plan's work (each with one model to compute)."""
    for i in range(n):
        write_wav(tmp_path / "audio" / f"s{i}.wav", seconds, freq=200.0 + 50 * i)
    return [SongWork(file, ("fake",)) for file in discover(tmp_path / "audio").files]


def _settled(prefetcher):
    """Wait until the prefetch thread waits for the consumer (or is done): it cannot move further."""
    assert prefetcher.waiting.wait(timeout=30), "the prefetch thread did not get there"


def test_songs_come_in_order_decoded_and_resampled(tmp_path):
    songs = _songs(tmp_path)
    with Prefetcher(songs, lambda s: [8000, 16000]) as prefetcher:
        for song in songs:
            audio = prefetcher.take(song)
            assert audio is not None and audio.path == song.file.path
            spent = audio.seconds
            assert audio.at(16000).shape == (round(0.3 * 16000),) and audio.at(8000).shape == (round(0.3 * 8000),)
            assert audio.seconds == spent  # resampled ahead, not on use


def test_it_stays_at_most_depth_songs_ahead(tmp_path):
    songs = _songs(tmp_path, n=6)
    looked: list[str] = []
    with Prefetcher(songs, lambda s: looked.append(s.file.song_id) or [8000], depth=2) as prefetcher:
        _settled(prefetcher)
        assert looked == ["s0", "s1"]  # the next song and one more, then it waits
        prefetcher.take(songs[0])
        _settled(prefetcher)
        assert looked == ["s0", "s1", "s2"]


def test_byte_budget_limits_what_is_held(tmp_path):
    songs = _songs(tmp_path, n=4)
    looked: list[str] = []
    with Prefetcher(songs, lambda s: looked.append(s.file.song_id) or [8000], depth=4, budget_bytes=1) as prefetcher:
        _settled(prefetcher)
        assert looked == ["s0"]  # past the first song ahead, one byte of audio already fills the budget
        assert prefetcher.take(songs[0]) is not None


def test_out_of_order_is_none(tmp_path):
    songs = _songs(tmp_path, n=3)
    with Prefetcher(songs, lambda s: [8000]) as prefetcher:
        assert prefetcher.take(songs[1]) is None  # not the next song: the caller decodes it itself
        assert prefetcher.take(songs[0]) is not None
        assert prefetcher.take(songs[1]) is not None


def test_a_failed_decode_is_kept_and_never_retried(tmp_path, monkeypatch):
    songs = _songs(tmp_path, n=2)
    songs[0].file.path.write_bytes(b"not audio")
    calls = []
    real = audio_module.decode
    monkeypatch.setattr(audio_module, "decode", lambda p: calls.append(p.name) or real(p))
    with Prefetcher(songs, lambda s: [8000, 16000]) as prefetcher:
        broken = prefetcher.take(songs[0])
    for _ in range(3):
        try:
            broken.at(8000)
        except audio_module.AudioError as e:
            assert "s0.wav" in str(e)
        else:
            raise AssertionError("a broken file decoded")
    assert calls.count("s0.wav") == 1


def test_close_stops_the_thread(tmp_path):
    songs = _songs(tmp_path, n=8)
    prefetcher = Prefetcher(songs, lambda s: [8000])
    prefetcher.close()
    assert not any(t.name == "fstore-prefetch" and t.is_alive() for t in threading.enumerate())


def test_run_decodes_each_song_once_in_the_prefetch_thread(tmp_path, fake_models, monkeypatch):
    _songs(tmp_path, n=4)
    (tmp_path / "audio" / "bad.wav").write_text("not audio")
    files = discover(tmp_path / "audio").files
    threads: list[tuple[str, str]] = []
    real = audio_module.decode
    monkeypatch.setattr(audio_module, "decode",
                        lambda p: threads.append((p.name, threading.current_thread().name)) or real(p))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    summary = fsrun.run(store, files, loaded_models("fake", "slow"))
    assert summary.totals["fake"].done == 4 and summary.totals["slow"].failed == 1
    assert sorted(name for name, _ in threads) == sorted(f.path.name for f in files)  # once each, the bad one too
    assert {thread for _, thread in threads} == {"fstore-prefetch"}
    assert summary.decode_seconds > 0


def test_cpu_models_run_beside_device_models(tmp_path, fake_models):
    """With the other models on a GPU, CPU-only models run in their own threads; the results are the same."""
    files = [song.file for song in _songs(tmp_path, n=2)]
    exts = loaded_models("devfake", "slow")
    seen: list[tuple[str, str]] = []
    for ext in exts:
        original = ext._extract
        ext._extract = lambda wave, ext=ext, original=original: seen.append(
            (ext.name, threading.current_thread().name)) or original(wave)
    plain = FeatureStore(str(tmp_path / "plain.zarr"), mode="a")
    assert fsrun.run(plain, files, exts).ok
    assert {thread for _, thread in seen} == {"MainThread"}
    seen.clear()
    # a task of both songs: "devfake" declares cuda and runs here; the CPU-only "slow" one song per call beside it
    beside = FeatureStore(str(tmp_path / "beside.zarr"), mode="a")
    summary = fsrun.run(beside, files, exts, fsrun.RunOptions(device="cuda", batch_songs=2))
    assert summary.totals["slow"].done == summary.totals["devfake"].done == 2
    assert sorted(seen) == [("devfake", "MainThread")] * 2 + [("slow", t) for _, t in seen if _ == "slow"]
    assert all(t.startswith("fstore-cpu-models") for name, t in seen if name == "slow") and len(seen) == 4
    for ext in exts:
        for file in files:
            np.testing.assert_array_equal(beside.array(ext.name, file.song_id)[...], plain.array(ext.name, file.song_id)[...])


def test_model_loading_is_counted_apart_from_the_run(tmp_path, fake_models):
    """The summary says how long loading the models took, so per-song costs can leave it out."""
    from featurestore.extractors import registry

    files = [song.file for song in _songs(tmp_path, n=1)]
    ext = registry.create("fake")
    ext._load = lambda device: time.sleep(0.3)
    summary = fsrun.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), files, [ext])
    assert 0.3 <= summary.load_seconds <= summary.wall_seconds


def test_an_interrupt_waits_for_the_models_beside(tmp_path, fake_models):
    """Ctrl-C in the device models' thread: the CPU models' writes finish before the song's lease is released."""
    files = [song.file for song in _songs(tmp_path, n=1)]
    device_model, beside_model = loaded_models("devfake", "slow")
    original = beside_model._extract
    beside_model._extract = lambda wave: time.sleep(0.5) or original(wave)

    def interrupted(wave):
        raise KeyboardInterrupt

    device_model._extract = interrupted
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    with pytest.raises(KeyboardInterrupt):
        fsrun.run(store, files, [device_model, beside_model], fsrun.RunOptions(device="cuda"))
    assert store.songs("slow") == [files[0].song_id]  # written before the interrupt went on
    assert store.leases.held() == []


def test_each_pair_is_decided_twice_the_plan_and_under_the_lease(tmp_path, fake_models, monkeypatch):
    """The plan and the check under the lease decide whether a (song, model) needs computing: nothing else."""
    files = [song.file for song in _songs(tmp_path, n=3)]
    looks: list[str] = []
    real = plan_module.decide
    monkeypatch.setattr(plan_module, "decide", lambda store, file, *rest: looks.append(file.song_id) or real(store, file, *rest))
    summary = fsrun.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), files, loaded_models("fake"))
    assert summary.totals["fake"].done == 3
    assert sorted(looks) == sorted(f.song_id for f in files for _ in range(2))
