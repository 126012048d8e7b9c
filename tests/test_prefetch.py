"""Decoding ahead: order, bounds, skipped songs, remembered failures, and the pipeline using it."""

from __future__ import annotations

import threading
import time

import numpy as np

from featurestore import audio as audio_module
from featurestore import pipeline
from featurestore.discover import discover
from featurestore.prefetch import Prefetcher
from featurestore.store import FeatureStore

from .conftest import write_wav
from .test_pipeline import _loaded


def _until(condition, timeout=30.0):
    """Wait for ``condition`` (the prefetch thread runs on its own time), then give it a moment to overrun."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the prefetch thread did not get there"
        time.sleep(0.01)
    time.sleep(0.3)


def _files(tmp_path, n=5, seconds=0.3):
    for i in range(n):
        write_wav(tmp_path / "audio" / f"s{i}.wav", seconds, freq=200.0 + 50 * i)
    return discover(tmp_path / "audio").files


def test_songs_come_in_order_decoded_and_resampled(tmp_path):
    files = _files(tmp_path)
    with Prefetcher(files, lambda f: [8000, 16000]) as prefetcher:
        for file in files:
            audio = prefetcher.take(file)
            assert audio is not None and audio.path == file.path
            assert set(audio._by_rate) == {8000, 16000}  # resampled ahead, not on use
            assert audio.at(16000).shape == (round(0.3 * 16000),)


def test_it_stays_at_most_depth_songs_ahead(tmp_path):
    files = _files(tmp_path, n=6)
    looked: list[str] = []
    with Prefetcher(files, lambda f: looked.append(f.song_id) or [8000], depth=2) as prefetcher:
        _until(lambda: len(looked) >= 2)
        assert looked == ["s0", "s1"]  # the next song and one more, then it waits
        prefetcher.take(files[0])
        _until(lambda: len(looked) >= 3)
        assert looked == ["s0", "s1", "s2"]


def test_byte_budget_limits_what_is_held(tmp_path):
    files = _files(tmp_path, n=4)
    looked: list[str] = []
    with Prefetcher(files, lambda f: looked.append(f.song_id) or [8000], depth=4, budget_bytes=1) as prefetcher:
        _until(lambda: len(looked) >= 1)
        assert looked == ["s0"]  # past the first song ahead, one byte of audio already fills the budget
        assert prefetcher.take(files[0]) is not None


def test_songs_without_work_are_not_decoded_and_out_of_order_is_none(tmp_path, monkeypatch):
    files = _files(tmp_path, n=3)
    decoded: list[str] = []
    real = audio_module.decode
    monkeypatch.setattr(audio_module, "decode", lambda p: decoded.append(p.name) or real(p))
    with Prefetcher(files, lambda f: [] if f.song_id == "s1" else [8000]) as prefetcher:
        assert prefetcher.take(files[1]) is None  # not the next song: the caller decodes it itself
        assert prefetcher.take(files[0]) is not None
        assert prefetcher.take(files[1]) is None  # nothing to compute when it looked
        assert prefetcher.take(files[2]) is not None
    assert decoded == ["s0.wav", "s2.wav"]


def test_a_failed_decode_is_kept_and_never_retried(tmp_path, monkeypatch):
    files = _files(tmp_path, n=2)
    files[0].path.write_bytes(b"not audio")
    calls = []
    real = audio_module.decode
    monkeypatch.setattr(audio_module, "decode", lambda p: calls.append(p.name) or real(p))
    with Prefetcher(files, lambda f: [8000, 16000]) as prefetcher:
        broken = prefetcher.take(files[0])
    for _ in range(3):
        try:
            broken.at(8000)
        except audio_module.AudioError as e:
            assert "s0.wav" in str(e)
        else:
            raise AssertionError("a broken file decoded")
    assert calls.count("s0.wav") == 1


def test_close_stops_the_thread(tmp_path):
    files = _files(tmp_path, n=8)
    prefetcher = Prefetcher(files, lambda f: [8000])
    prefetcher.close()
    assert not any(t.name == "fstore-prefetch" and t.is_alive() for t in threading.enumerate())


def test_run_decodes_each_song_once_in_the_prefetch_thread(tmp_path, fake_models, monkeypatch):
    files = _files(tmp_path, n=4)
    (tmp_path / "audio" / "bad.wav").write_text("not audio")
    files = discover(tmp_path / "audio").files
    threads: list[tuple[str, str]] = []
    real = audio_module.decode
    monkeypatch.setattr(audio_module, "decode",
                        lambda p: threads.append((p.name, threading.current_thread().name)) or real(p))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    summary = pipeline.run(store, files, _loaded("fake", "slow"))
    assert summary.totals["fake"].done == 4 and summary.totals["slow"].failed == 1
    assert sorted(name for name, _ in threads) == sorted(f.path.name for f in files)  # once each, the bad one too
    assert {thread for _, thread in threads} == {"fstore-prefetch"}
    assert summary.decode_seconds > 0


def test_cpu_models_run_beside_device_models(tmp_path, fake_models):
    """With the torch models on a GPU, CPU-only models run in their own thread; the results are the same."""
    files = _files(tmp_path, n=2)
    exts = _loaded("fake", "slow")
    seen: list[str] = []
    for ext in exts:
        original = ext._extract
        ext._extract = lambda wave, original=original: seen.append(threading.current_thread().name) or original(wave)
    plain = FeatureStore(str(tmp_path / "plain.zarr"), mode="a")
    beside = FeatureStore(str(tmp_path / "beside.zarr"), mode="a")
    for ext in exts:
        for store in (plain, beside):
            store.ensure_model(ext.name, pipeline.group_attrs(ext, pipeline.RunOptions()))
    for file in files:
        pipeline.process_song(plain, file, exts, pipeline.RunOptions(), lambda r: None)
    assert set(seen) == {"MainThread"}
    seen.clear()
    results = []
    # a task of both songs: the CPU-only models take one song per call, on the pool's threads
    pipeline.process_songs(beside, [(file, exts, None) for file in files], pipeline.RunOptions(device="cuda"),
                           results.append)
    assert all(name.startswith("fstore-cpu-models") for name in seen) and len(seen) == 4
    assert [r.status for r in results] == ["done"] * 4
    for ext in exts:
        for file in files:
            np.testing.assert_array_equal(beside.array(ext.name, file.song_id)[...], plain.array(ext.name, file.song_id)[...])


def test_model_loading_is_counted_apart_from_the_run(tmp_path, fake_models):
    """The summary says how long loading the models took, so per-song costs can leave it out."""
    from featurestore.extractors import registry

    files = _files(tmp_path, n=1)
    ext = registry.create("fake")
    ext._load = lambda device: time.sleep(0.3)
    summary = pipeline.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), files, [ext])
    assert 0.3 <= summary.load_seconds <= summary.wall_seconds


def test_an_interrupt_waits_for_the_models_beside(tmp_path, fake_models, monkeypatch):
    """Ctrl-C in the device models' thread: the CPU models' writes finish before the song's lease can be released."""
    import pytest

    files = _files(tmp_path, n=1)
    beside_model, device_model = _loaded("fake", "slow")
    monkeypatch.setattr(pipeline, "runs_on", lambda ext, device: ext is device_model)
    original = beside_model._extract
    beside_model._extract = lambda wave: time.sleep(0.5) or original(wave)

    def interrupted(wave):
        raise KeyboardInterrupt

    device_model._extract = interrupted
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    for ext in (beside_model, device_model):
        store.ensure_model(ext.name, pipeline.group_attrs(ext, pipeline.RunOptions()))
    with pytest.raises(KeyboardInterrupt):
        pipeline.process_song(store, files[0], [beside_model, device_model], pipeline.RunOptions(device="cuda"),
                              lambda r: None)
    assert store.songs("fake") == [files[0].song_id]  # written before the interrupt went on


def test_a_song_decoded_ahead_is_looked_up_twice_not_three_times(tmp_path, fake_models, monkeypatch):
    """The prefetcher's look at the store and the check under the lease: no third read in between."""
    files = _files(tmp_path, n=3)
    looks: list[str] = []
    real = pipeline._todo
    monkeypatch.setattr(pipeline, "_todo", lambda store, file, *rest: looks.append(file.song_id) or real(store, file, *rest))
    summary = pipeline.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), files, _loaded("fake"))
    assert summary.totals["fake"].done == 3
    assert sorted(looks) == sorted(f.song_id for f in files for _ in range(2))
