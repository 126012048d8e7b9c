"""Leases: exclusive claims, a stale-lease takeover only one run wins, heartbeats that keep live leases fresh."""

from __future__ import annotations

import json
import threading
import time

import pytest

from featurestore.store.leases import LEASES, Leases, is_stale
from featurestore.store import FeatureStore

from .helpers import fstore


def _race(n: int, claim) -> list:
    """Run ``claim(i)`` in ``n`` threads released at once; return their results."""
    start = threading.Barrier(n)
    results: list = [None] * n

    def go(i: int) -> None:
        start.wait()
        results[i] = claim(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_run_wins_each_song(tmp_path):
    FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    leases = [Leases(str(tmp_path / "s.zarr")) for _ in range(6)]
    for song in range(10):
        results = _race(6, lambda i: leases[i].acquire(f"song{song}", f"run{i}"))
        assert sum(r is None for r in results) == 1
        winner = results.index(None)
        assert leases[0].owner(f"song{song}")["run"] == f"run{winner}"
        leases[winner].release(f"song{song}", f"run{winner}")
    assert leases[0].held() == []


def _dead_lease(store, song: str) -> None:
    path = store / LEASES / song / "zarr.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
        "run": "dead", "host": "elsewhere", "pid": 1, "time": time.time() - 10, "beat": 1.0}}))


def test_a_stale_lease_is_taken_over_by_exactly_one_run(tmp_path):
    store = tmp_path / "s.zarr"
    FeatureStore(str(store), mode="a")
    for song in ("a", "b", "c"):
        _dead_lease(store, song)
        leases = [Leases(str(store)) for _ in range(6)]
        results = _race(6, lambda i: leases[i].acquire(song, f"run{i}"))
        assert sum(r is None for r in results) == 1, results
        winner = results.index(None)
        assert leases[0].owner(song)["run"] == f"run{winner}"
        leases[winner].release(song, f"run{winner}")
        assert leases[0].owner(song) is None
        assert not (store / LEASES / "__takeover" / song).exists()


def test_heartbeat_keeps_a_held_lease_fresh_and_a_dead_remote_run_frees_its_songs(tmp_path, monkeypatch):
    monkeypatch.setenv("FSTORE_LEASE_BEAT_S", "0.5")
    FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    leases = Leases(str(tmp_path / "s.zarr"))
    assert leases.acquire("x", "live") is None
    first = leases.owner("x")["time"]
    deadline = time.monotonic() + 60
    while leases.owner("x")["time"] == first:  # the heartbeat thread rewrites the lease with a new time
        assert time.monotonic() < deadline, "the lease was never renewed"
        time.sleep(0.05)
    lease = leases.owner("x")
    assert lease["run"] == "live" and lease["beat"] == 0.5 and lease["time"] > first
    assert Leases(str(tmp_path / "s.zarr")).acquire("x", "other")["run"] == "live"
    leases.release("x", "live")
    # a run on another host that stopped beating: stale after MISSED_BEATS beats, by its own beat
    old = {"run": "r", "host": "elsewhere", "pid": 1, "time": 100.0, "beat": 0.2}
    assert is_stale(old, now=100.61) and not is_stale(old, now=100.59)


def test_leases_in_memory_stores(tmp_path):
    FeatureStore("memory://lease-test.zarr", mode="a")
    a, b = Leases("memory://lease-test.zarr"), Leases("memory://lease-test.zarr")
    assert a.acquire("s", "ra") is None and b.acquire("s", "rb")["run"] == "ra"
    a.release("s", "ra")
    assert b.acquire("s", "rb") is None
    b.release("s", "rb")


def test_failure_of_an_invalid_song_id_has_one_node_in_every_process(tmp_path):
    import subprocess
    import sys

    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    code = ("import sys; from featurestore.store import FeatureStore; "
            "FeatureStore(sys.argv[1], mode='a').record_failure('m', 'bad\\x00id', 'why', 'InvalidSongId', None)")
    for _ in range(2):  # hash() of a str differs per process (PYTHONHASHSEED)
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.zarr")], check=True)
    assert len(store.failures("m")) == 1


def test_cli_lists_and_frees_leases(tmp_path):


    store = tmp_path / "s.zarr"
    FeatureStore(str(store), mode="a")
    _dead_lease(store, "gone")
    live = Leases(str(store))
    assert live.acquire("busy", "live-run") is None
    listed = fstore("leases", str(store))
    assert listed.exit_code == 0 and "gone\tdead" in listed.output and "stale" in listed.output
    assert "busy\tlive-run" in listed.output and "live" in listed.output
    freed = fstore("leases", str(store), "--release-stale")
    assert "freed" in freed.output
    assert [h["song_id"] for h in live.held()] == ["busy"]
    fstore("leases", str(store), "--release", "live-run")
    assert live.held() == []


def test_songs_left_to_a_live_run_exit_3(tmp_path, fake_models):

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 0.3)
    write_wav(tmp_path / "audio" / "b.wav", 0.3)
    store = tmp_path / "s.zarr"
    FeatureStore(str(store), mode="a")
    other = Leases(str(store))
    assert other.acquire("a", "another-live-run") is None
    result = fstore("extract", str(tmp_path / "audio"), "--store", str(store), "--models", "fake")
    assert result.exit_code == 3, result.output
    assert FeatureStore(str(store)).songs("fake") == ["b"]
    other.release("a", "another-live-run")


def test_a_store_that_refuses_writes_stops_the_run_with_a_store_error(tmp_path, fake_models, monkeypatch):
    import featurestore.run as fsrun
    from featurestore.discover import discover
    from featurestore.store import leases as leases_module
    from featurestore.errors import StoreError
    from featurestore.extractors import registry

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 0.3)
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(leases_module.os, "link", read_only)  # as root, chmod cannot make a store read-only
    with pytest.raises(StoreError, match="(?i)read-only"):
        fsrun.run(store, discover(tmp_path / "audio").files, [registry.create("fake")])


def test_a_dead_runs_lease_on_a_finished_song_goes_with_the_next_run(tmp_path, fake_models):
    """Killed after writing a song but before letting it go, a run leaves a lease on a complete song; the next
    run (which has nothing to compute there) frees it, and leaves a live run's lease alone."""
    from .conftest import write_wav

    for song in ("a", "b"):
        write_wav(tmp_path / "audio" / f"{song}.wav", 0.3)
    store = tmp_path / "s.zarr"
    assert fstore("extract", tmp_path / "audio", "--store", store, "--models", "fake").exit_code == 0
    _dead_lease(store, "a")
    live = Leases(str(store))
    assert live.acquire("b", "live-run") is None
    result = fstore("extract", tmp_path / "audio", "--store", store, "--models", "fake")
    assert result.exit_code == 0, result.output
    assert [(lease["song_id"], lease["run"]) for lease in live.held()] == [("b", "live-run")]
    live.release("b", "live-run")
    assert not (store / LEASES / "a").exists()
