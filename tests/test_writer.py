"""Writing behind compute: the writer's memory bound and completion, and the pipeline using it
(overlap, leases held until the write ends, interrupts, a store that fails)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.errors import StoreError
from featurestore.store import FeatureStore
from featurestore.run.writer import Writer, when_done, writer_threads

from .conftest import write_wav
from .helpers import Events, loaded_models


def test_a_submit_waits_while_the_budget_is_full():
    release = threading.Event()
    started: list[str] = []
    with Writer(threads=2, budget_bytes=100) as writer:
        writer.submit(80, lambda: (started.append("a"), release.wait(10)))
        submitted = threading.Event()

        def second() -> None:
            writer.submit(50, started.append, "b")
            submitted.set()

        thread = threading.Thread(target=second)
        thread.start()
        assert not submitted.wait(0.3), "a job over the budget was let in while another held it"
        assert writer.queued_bytes == 80 and started == ["a"]
        release.set()
        assert submitted.wait(10)
        thread.join()
    assert started == ["a", "b"] and writer.queued_bytes == 0


def test_a_job_larger_than_the_budget_runs_alone():
    with Writer(threads=1, budget_bytes=10) as writer:
        assert writer.submit(1000, lambda: 7).result(timeout=10) == 7
    assert writer.queued_bytes == 0


def test_close_waits_for_every_job_and_a_failing_job_frees_its_bytes():
    done: list[int] = []
    writer = Writer(threads=1, budget_bytes=1 << 20)
    failing = writer.submit(10, lambda: 1 / 0)
    for i in range(5):
        writer.submit(10, lambda i=i: (time.sleep(0.02), done.append(i)))
    writer.close()
    assert done == list(range(5)) and writer.queued_bytes == 0
    assert isinstance(failing.exception(), ZeroDivisionError)


def test_after_a_store_error_no_later_job_runs_and_submits_raise_it():
    ran: list[int] = []
    gate = threading.Event()

    def broken() -> None:
        raise StoreError("cannot write fake/s1: No space left on device")

    with Writer(threads=1) as writer:
        first = writer.submit(1, lambda: (gate.wait(10), ran.append(1)))
        failed = writer.submit(1, broken)
        later = writer.submit(1, ran.append, 3)  # queued behind the failure
        gate.set()
        assert isinstance(later.exception(timeout=10), StoreError)
        with pytest.raises(StoreError, match="No space left"):
            writer.submit(1, ran.append, 4)
    assert first.exception() is None and ran == [1]
    assert isinstance(failed.exception(), StoreError) and later.exception() is failed.exception()
    assert writer.queued_bytes == 0


def test_when_done_runs_after_the_last_future_even_if_cancelled():
    first, second = Future(), Future()
    calls: list[str] = []
    result = when_done([first, second], lambda: calls.append("ran") or "value")
    first.set_result(1)
    assert calls == [] and not result.done()
    assert result.cancel()  # nobody waits any more: it still runs (it releases leases)
    second.set_exception(ValueError("write failed"))
    assert calls == ["ran"]
    assert when_done([], lambda: 3).result() == 3
    failing = when_done([], lambda: 1 / 0)
    assert isinstance(failing.exception(), ZeroDivisionError)


def test_writer_threads_grow_with_the_cores():
    assert [writer_threads(c) for c in (1, 2, 8, 16, 64)] == [1, 1, 1, 2, 4]


def _songs_store_model(tmp_path, n):
    """``n`` short songs, an empty store and the loaded test model."""
    for i in range(n):
        write_wav(tmp_path / "audio" / f"s{i}.wav", 0.3, freq=200.0 + 50 * i)
    (ext,) = loaded_models("fake")
    return discover(tmp_path / "audio").files, FeatureStore(str(tmp_path / "s.zarr"), mode="a"), ext


def test_arrays_are_written_behind_the_next_songs_compute_under_their_lease(tmp_path, fake_models, monkeypatch):
    """Song k's write waits until song k+1's compute has started: it can only get there if writes run behind
    compute (written in line, the run would stall and the wait time out). Each write runs under its lease."""
    files, store, ext = _songs_store_model(tmp_path, 3)
    real_write, real_extract = FeatureStore.write, ext.extract
    started = [threading.Event() for _ in files]
    writes: list[tuple[str, str | None, str]] = []  # (song, lease owner's run, writer thread)

    def write_once_the_next_song_computes(self, model, song_id, *args, **kwargs):
        owner = store.leases.owner(song_id)
        writes.append((song_id, owner and owner["run"], threading.current_thread().name))
        index = int(song_id[1:])
        if index + 1 < len(files):
            assert started[index + 1].wait(timeout=60), f"{song_id}'s write came before the next song's compute"
        real_write(self, model, song_id, *args, **kwargs)

    def traced_extract(wave):
        started[sum(e.is_set() for e in started)].set()
        return real_extract(wave)

    monkeypatch.setattr(FeatureStore, "write", write_once_the_next_song_computes)
    ext.extract = traced_extract
    summary = fsrun.run(store, files, [ext])
    assert summary.totals["fake"].done == 3 and summary.ok, summary.failures
    assert sorted(song for song, _, _ in writes) == ["s0", "s1", "s2"]
    assert all(run == summary.run_id for _, run, _ in writes), "a write outlived its song's lease"
    assert all(thread.startswith("fstore-writer") for _, _, thread in writes)
    assert store.leases.held() == []
    assert store.songs("fake") == ["s0", "s1", "s2"]


def test_an_interrupt_stores_and_reports_what_was_computed(tmp_path, fake_models, monkeypatch):
    files, store, ext = _songs_store_model(tmp_path, 3)
    real_write, real_extract = FeatureStore.write, ext.extract
    calls: list[int] = []

    def slow_write(self, *args, **kwargs):
        time.sleep(0.5)  # still writing s0 when s1's compute is interrupted
        real_write(self, *args, **kwargs)

    def interrupted(wave):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_extract(wave)

    monkeypatch.setattr(FeatureStore, "write", slow_write)
    ext.extract = interrupted
    events = Events()
    with pytest.raises(KeyboardInterrupt):
        fsrun.run(store, files, [ext], reporter=events)
    assert store.songs("fake") == ["s0"]
    assert events.ended.interrupted and events.ended.totals["fake"].done == 1
    assert store.leases.held() == []


def test_a_store_that_fails_in_the_writer_stops_the_run(tmp_path, fake_models, monkeypatch):
    files, store, ext = _songs_store_model(tmp_path, 6)
    real_write, real_extract = FeatureStore.write, ext.extract
    computed: list[int] = []

    def failing_write(self, model, song_id, *args, **kwargs):
        if song_id == "s1":
            raise StoreError("cannot write fake/s1: No space left on device")
        real_write(self, model, song_id, *args, **kwargs)

    def counted(wave):
        computed.append(1)
        return real_extract(wave)

    monkeypatch.setattr(FeatureStore, "write", failing_write)
    ext.extract = counted
    with pytest.raises(StoreError, match="No space left"):
        fsrun.run(store, files, [ext])
    assert len(computed) < 6, "the run went on computing songs it could not store"
    assert "s0" in store.songs("fake") and "s1" not in store.songs("fake", complete_only=False)
    assert store.leases.held() == []
