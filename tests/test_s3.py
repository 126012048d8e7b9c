"""Stores on an S3 endpoint (moto's server on localhost, through s3fs): extract, leases, read, export."""

from __future__ import annotations

import numpy as np
import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.export import export_npy
from featurestore.extractors import registry
from featurestore.store.leases import Leases
from featurestore.read import open_store
from featurestore.store import FeatureStore

from .conftest import write_wav
from .fakes import GATE_ENV, assert_same_contents, computes, counted_env, counted_run, store_contents
from .helpers import moto_s3

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fstore[s3]')")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")


@pytest.fixture(scope="module")
def s3():
    """storage_options for a fresh bucket on a moto S3 server."""
    with moto_s3() as options:
        yield options


def test_extract_read_and_export_on_s3(tmp_path, s3, fake_models):
    audio = tmp_path / "audio"
    for i in range(3):
        write_wav(audio / f"s{i}.wav", 0.3, freq=300 + 50 * i)
    local = FeatureStore(str(tmp_path / "ref.zarr"), mode="a")
    fsrun.run(local, discover(audio).files, [registry.create("fake")])
    url = "s3://fstore-test/features.zarr"
    store = FeatureStore(url, mode="a", storage_options=s3)
    summary = fsrun.run(store, discover(audio).files, [registry.create("fake")])
    assert summary.ok and summary.totals["fake"].done == 3
    assert Leases(url, s3).held() == []
    again = fsrun.run(FeatureStore(url, mode="a", storage_options=s3), discover(audio).files,
                         [registry.create("fake")])
    assert again.totals["fake"].cached == 3  # resumed: nothing computed twice
    reader = open_store(url, storage_options=s3)
    assert reader.songs("fake") == ["s0", "s1", "s2"]
    for song in ("s0", "s1", "s2"):
        np.testing.assert_array_equal(np.asarray(reader.load(song, "fake")), local.array("fake", song)[...])
    export_npy(FeatureStore(url, storage_options=s3), tmp_path / "npy")
    assert sorted(p.name for p in (tmp_path / "npy" / "fake").glob("*.npy")) == ["s0.npy", "s1.npy", "s2.npy"]


def test_two_runs_on_s3_never_hold_one_song(s3):
    url = "s3://fstore-test/leases.zarr"
    FeatureStore(url, mode="a", storage_options=s3)
    a, b = Leases(url, s3), Leases(url, s3)
    assert a.acquire("x", "run-a") is None  # a conditional put (If-None-Match: *) ...
    assert b.acquire("x", "run-b")["run"] == "run-a"  # ... that the second run loses
    a.release("x", "run-a")
    assert b.acquire("x", "run-b") is None
    b.release("x", "run-b")
    assert a.held() == []


def _counted_songs(audio, n: int) -> None:
    for i in range(n):
        write_wav(audio / f"s{i}.wav", 0.4, freq=250 + 40 * i)


def _s3_env(s3, log, compute_s: float) -> dict[str, str]:
    """A counted run's environment, with the moto endpoint named the fsspec way (as a user would)."""
    return counted_env(log, compute_s, FSSPEC_S3_ENDPOINT_URL=s3["client_kwargs"]["endpoint_url"])


@pytest.fixture(scope="module")
def counted_reference(tmp_path_factory):
    """An uninterrupted local run of the counted extractors on six songs: (audio folder, its contents)."""
    import subprocess

    tmp = tmp_path_factory.mktemp("s3ref")
    _counted_songs(tmp / "audio", 6)
    done = subprocess.run(counted_run(tmp / "audio", str(tmp / "ref.zarr")), env=counted_env(tmp / "log", 0),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp / "audio", store_contents(str(tmp / "ref.zarr"))


def test_a_run_killed_on_s3_resumes_to_the_same_store(tmp_path, s3, counted_reference):
    import signal
    import subprocess
    import time

    audio, want = counted_reference
    url, log = "s3://fstore-test/killed.zarr", tmp_path / "log"
    env = _s3_env(s3, log, 0.3)
    run = subprocess.Popen(counted_run(audio, url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (log.exists() and len(computes(log)) >= 3) and run.poll() is None:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed = computes(log)
    rerun = subprocess.run(counted_run(audio, url), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_contents(store_contents(url, s3), want)
    in_flight = {m: d for m, _, d in killed}.items()  # the killed run's last song per model
    redone = {(m, d) for m, _, d in computes(log)[len(killed):]}
    assert not redone & ({(m, d) for m, _, d in killed} - set(in_flight)), "finished songs recomputed"
    assert Leases(url, s3).held() == []


def test_two_runs_on_s3_compute_each_song_once(tmp_path, s3, counted_reference):
    import subprocess
    import time
    from collections import Counter

    audio, want = counted_reference
    url, log = "s3://fstore-test/twice.zarr", tmp_path / "log"
    env = _s3_env(s3, log, 0.2)
    # the first run waits inside its first song until the second has computed one: they overlap, whatever the
    # machine's speed
    gate = tmp_path / "second-run-computes"
    first = subprocess.Popen(counted_run(audio, url), env={**env, GATE_ENV: str(gate)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    while not (log.exists() and computes(log)):
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.02)
    second = subprocess.Popen(counted_run(audio, url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    while {pid for _, pid, _ in computes(log)} != {first.pid, second.pid}:
        assert second.poll() is None, second.stderr.read()
        time.sleep(0.02)
    gate.touch()
    runs = [first, second]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode in (0, 3), err  # 3: songs left to the other, live run
    counts = Counter((m, d) for m, _, d in computes(log))
    assert len(counts) == len(want) and set(counts.values()) == {1}
    assert len({pid for _, pid, _ in computes(log)}) == 2, "one run did all the work: they never overlapped"
    assert_same_contents(store_contents(url, s3), want)


def test_export_hdf5_from_s3(tmp_path, s3, fake_models):
    from featurestore.export import export_hdf5

    audio = tmp_path / "audio"
    for i in range(2):
        write_wav(audio / "sub" / f"s{i}.wav", 0.3, freq=300 + 50 * i)
    url = "s3://fstore-test/h5.zarr"
    store = FeatureStore(url, mode="a", storage_options=s3)
    assert fsrun.run(store, discover(audio).files, [registry.create("fake")]).ok
    store.record_failure("fake", "sub/bad", "boom", "DecodeError", None)
    export_hdf5(FeatureStore(url, storage_options=s3), tmp_path / "out.h5")
    h5 = open_store(str(tmp_path / "out.h5"))
    assert h5.songs("fake") == ["sub/s0", "sub/s1"] and [f["song_id"] for f in h5.failures()] == ["sub/bad"]
    for song in ("sub/s0", "sub/s1"):
        np.testing.assert_array_equal(h5.load(song, "fake").values, store.array("fake", song)[...])
        assert h5.load(song, "fake").attrs["fingerprint"] == store.song_attrs("fake", song)["fingerprint"]
