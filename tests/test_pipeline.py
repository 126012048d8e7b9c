"""Discovery and the extraction loop, on the test extractors (no model weights needed)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import loaded_models


def test_discovery(tmp_path):
    write_wav(tmp_path / "a.wav", 0.1)
    write_wav(tmp_path / "a.flac", 0.1, fmt="FLAC")
    write_wav(tmp_path / "nested" / "deeper" / "b c ü.wav", 0.1)
    write_wav(tmp_path / ".hidden.wav", 0.1)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "folder.wav").mkdir()
    os.symlink(tmp_path, tmp_path / "nested" / "loop")
    found = discover(tmp_path)
    ids = [f.song_id for f in found.files]
    assert ids == ["a.flac", "a.wav", "nested/deeper/b c ü"]
    assert found.skipped_non_audio == 1 and found.skipped_hidden == 1
    assert any("share the name" in n for n in found.notes)
    assert any("loop" in n for n in found.notes)


def test_missing_audio_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "absent")



def test_run_writes_reads_and_skips(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "one.wav", 1.0)
    write_wav(audio / "sub" / "two.wav", 0.5, channels=2)
    (audio / "bad.wav").write_text("not audio")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    files = discover(audio).files
    exts = loaded_models("fake", "slow")
    summary = fsrun.run(store, files, exts, fsrun.RunOptions(output_base=tmp_path / "npy"))
    assert summary.totals["fake"].done == 2 and summary.totals["fake"].failed == 1
    assert not summary.ok and {f.song_id for f in summary.failures} == {"bad"}
    assert store.songs("fake") == ["one", "sub/two"]
    arr = store.array("fake", "one")
    assert arr.shape == (100, 2) and arr.attrs["source"]["path"] == "one.wav"
    assert np.load(tmp_path / "npy" / "fake" / "sub" / "two.npy").shape == (50, 2)
    assert {f["song_id"] for f in store.failures()} == {"bad"}

    again = fsrun.run(store, files, exts)  # caching is the default
    assert again.totals["fake"].cached == 2 and again.totals["fake"].done == 0
    assert fsrun.plan(store, files, exts) == fsrun.Plan({"fake": 1, "slow": 1}, {"fake": 2, "slow": 2})

    # a changed source file is redone; same content with a new mtime is not
    os.utime(audio / "one.wav", (time.time() + 10, time.time() + 10))
    write_wav(audio / "sub" / "two.wav", 0.6, channels=2)
    third = fsrun.run(store, files, exts, fsrun.RunOptions(skip_existing=True))
    assert third.totals["fake"].cached == 1 and third.totals["fake"].done == 1
    assert store.array("fake", "sub/two").shape == (60, 2)


def test_one_configuration_per_group(tmp_path, fake_models):
    from featurestore.errors import ConfigurationMismatch

    audio = tmp_path / "audio"
    write_wav(audio / "one.wav", 1.0)
    write_wav(audio / "two.wav", 0.5)
    (audio / "bad.wav").write_text("not audio")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    files = discover(audio).files
    fsrun.run(store, files, loaded_models("fake"))
    before = store.array("fake", "one")[...]

    # other options: refused before any work, naming the option with both values
    with pytest.raises(ConfigurationMismatch) as e:
        fsrun.run(store, files, loaded_models("fake", gain=2.0))
    assert ("gain", 1.0, 2.0) in e.value.differences and "--overwrite" in str(e.value) and "--as" in str(e.value)
    assert np.array_equal(store.array("fake", "one")[...], before)
    assert store.model_attrs("fake")["config"] == {"gain": 1.0}

    # a storage dtype is part of the configuration too
    with pytest.raises(ConfigurationMismatch, match="dtype"):
        fsrun.run(store, files, loaded_models("fake"), fsrun.RunOptions(dtype="float16"))

    # --as keeps a second configuration beside the first
    side = fsrun.run(store, files, loaded_models("fake", gain=2.0), fsrun.RunOptions(groups=(("fake", "fake2"),)))
    assert side.totals["fake2"].done == 2 and store.models() == ["fake", "fake2"]
    assert store.model_attrs("fake2")["model"] == "fake" and store.model_attrs("fake2")["group"] == "fake2"
    np.testing.assert_allclose(store.array("fake2", "one")[...], 2 * before, rtol=1e-6)
    assert {f["model"] for f in store.failures()} == {"fake", "fake2"}

    # --overwrite replaces the group: old arrays and failures go, every song is recomputed
    new = fsrun.run(store, files, loaded_models("fake", gain=2.0), fsrun.RunOptions(overwrite=True))
    assert new.replaced["fake"] == (2, 1) and new.totals["fake"].done == 2 and new.totals["fake"].cached == 0
    assert store.model_attrs("fake")["config"] == {"gain": 2.0}
    np.testing.assert_allclose(store.array("fake", "one")[...], 2 * before, rtol=1e-6)


def test_float16_storage(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "one.wav", 1.0)
    files = discover(audio).files
    exact = FeatureStore(str(tmp_path / "a.zarr"), mode="a")
    half = FeatureStore(str(tmp_path / "b.zarr"), mode="a")
    fsrun.run(exact, files, loaded_models("fake"))
    fsrun.run(half, files, loaded_models("fake"), fsrun.RunOptions(dtype="float16"))
    a, b = exact.array("fake", "one"), half.array("fake", "one")
    assert a.dtype == np.float32 and b.dtype == np.float16 and b.attrs["dtype"] == "float16"
    np.testing.assert_allclose(b[...].astype(np.float32), a[...], rtol=1e-3, atol=1e-4)
    assert fsrun.run(half, files, loaded_models("fake"), fsrun.RunOptions(dtype="float16")).totals["fake"].cached == 1


def test_retry_failed_only_redoes_failures(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "good.wav", 0.5)
    (audio / "late.wav").write_text("not yet audio")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    exts = loaded_models("fake")
    fsrun.run(store, discover(audio).files, exts)
    assert [f["song_id"] for f in store.failures()] == ["late"]
    write_wav(audio / "late.wav", 0.5)  # the user fixed the file
    summary = fsrun.run(store, discover(audio).files, exts, fsrun.RunOptions(retry_failed=True))
    assert summary.totals["fake"].done == 1 and summary.ok
    assert store.failures() == [] and store.songs("fake") == ["good", "late"]


def test_too_short_is_a_per_model_failure(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "blip.wav", 0.005, rate=8000)  # 40 samples < fake's 80-sample minimum
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    summary = fsrun.run(store, discover(audio).files, loaded_models("fake"))
    (failure,) = summary.failures
    assert "needs at least 80" in failure.error


def test_interrupt_leaves_finished_songs_complete(tmp_path, fake_models, monkeypatch):
    audio = tmp_path / "audio"
    for i in range(3):
        write_wav(audio / f"s{i}.wav", 0.3)
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    (ext,) = loaded_models("fake")
    real = type(ext)._extract
    calls = []

    def interrupted(self, wave):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, wave)

    monkeypatch.setattr(type(ext), "_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fsrun.run(store, discover(audio).files, [ext])
    assert store.songs("fake") == ["s0"]
    assert store.songs("fake", complete_only=False) == ["s0"]


def _reference_run(tmp_path, audio, names):
    store = FeatureStore(str(tmp_path / "ref.zarr"), mode="a")
    fsrun.run(store, discover(audio).files, [registry.create(n) for n in names])
    return {s: store.array("fake", s)[...] for s in store.songs("fake")}


@pytest.mark.parametrize("batch_songs", [1, 3])
def test_process_pool_executor_gives_the_same_store(tmp_path, fake_models, batch_songs):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    audio = tmp_path / "audio"
    for i in range(6):
        write_wav(audio / f"s{i}.wav", 0.4, freq=300 + 50 * i)
    (audio / "bad.wav").write_text("nope")
    expected = _reference_run(tmp_path, audio, ["fake"])
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    # fork keeps this test's registry of fake models in the workers
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        summary = fsrun.run(store, discover(audio).files, [registry.create("fake")],
                               fsrun.RunOptions(batch_songs=batch_songs), executor=pool)
    assert summary.totals["fake"].done == 6 and [f.song_id for f in summary.failures] == ["bad"]
    assert [f["song_id"] for f in store.failures()] == ["bad"]
    for song, data in expected.items():
        np.testing.assert_array_equal(store.array("fake", song)[...], data)


def test_dask_executor(tmp_path, fake_models):
    distributed = pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    audio = tmp_path / "audio"
    for i in range(3):
        write_wav(audio / f"s{i}.wav", 0.4, freq=300 + 50 * i)
    expected = _reference_run(tmp_path, audio, ["fake"])
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        summary = fsrun.run(store, discover(audio).files, [registry.create("fake")],
                               executor=client.get_executor())
    assert summary.ok and summary.totals["fake"].done == 3
    for song, data in expected.items():
        np.testing.assert_array_equal(store.array("fake", song)[...], data)
