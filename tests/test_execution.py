"""One execution path: the in-process run is an executor; tasks carry the run's identity; models load once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.run.execution import shutdown_worker_state, worker_state_size
from featurestore.store import FeatureStore
from featurestore.store.leases import Leases

from .conftest import write_wav
from .helpers import Events, fstore
from .fakes import FakeFrames


@pytest.fixture
def audio(tmp_path):
    for i in range(4):
        write_wav(tmp_path / "audio" / f"s{i}.wav", 0.3, freq=300 + 50 * i)
    return tmp_path / "audio"


def test_interrupt_while_models_load_still_reports(tmp_path, audio, fake_models, monkeypatch):
    def interrupted(self, device):
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeFrames, "_load", interrupted)
    events = Events()
    with pytest.raises(KeyboardInterrupt):
        fsrun.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), discover(audio).files,
                     [registry.create("fake")], reporter=events)
    assert events.ended is not None and events.ended.interrupted


def test_cli_ctrl_c_while_models_load_exits_130_with_a_summary(tmp_path, audio, fake_models, monkeypatch):
    def interrupted(self, device):
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeFrames, "_load", interrupted)
    result = fstore("extract", str(audio), "--store", str(tmp_path / "s.zarr"), "--models", "fake")
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output


def test_tasks_lease_under_the_coordinators_run_id(tmp_path, audio, fake_models, monkeypatch):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    seen: list[str] = []
    acquire = Leases.acquire

    def spy(self, song_id, run_id, groups=()):
        seen.append(run_id)
        return acquire(self, song_id, run_id, groups)

    monkeypatch.setattr(Leases, "acquire", spy)
    shutdown_worker_state()
    with ThreadPoolExecutor(2) as pool:  # a worker: opens its own store object, as a Dask worker would
        summary = fsrun.run(store, discover(audio).files, [registry.create("fake")], executor=pool)
    assert summary.ok and summary.totals["fake"].done == 4
    assert len(summary.run_id) == 32 and seen == [summary.run_id] * 4
    assert worker_state_size() == (1, 1)  # the worker's own store and model
    shutdown_worker_state()
    assert worker_state_size() == (0, 0)


def test_threaded_workers_load_each_model_once(tmp_path, audio, fake_models, monkeypatch):
    loads = []

    def slow_load(self, device):
        loads.append(threading.get_ident())
        threading.Event().wait(0.2)  # wide enough for every thread to race into the cache

    monkeypatch.setattr(FakeFrames, "_load", slow_load)
    shutdown_worker_state()
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    with ThreadPoolExecutor(4) as pool:
        summary = fsrun.run(store, discover(audio).files, [registry.create("fake")], executor=pool)
    assert summary.totals["fake"].done == 4
    assert len(loads) == 1
    shutdown_worker_state()


def test_in_process_results_stream_song_by_song(tmp_path, audio, fake_models):
    """The synchronous executor reports each song while the next computes (its array is written
    meanwhile), never later: progress streams, and an interrupt loses one song."""
    order: list[str] = []

    class Trace(Events):
        def result(self, result):
            order.append(f"result {result.song_id}")

    ext = registry.create("fake")
    extract = ext.extract

    def traced(wave):
        order.append("extract")
        return extract(wave)

    ext.extract = traced
    fsrun.run(FeatureStore(str(tmp_path / "s.zarr"), mode="a"), discover(audio).files, [ext], reporter=Trace())
    extracts = [i for i, event in enumerate(order) if event == "extract"]
    assert len(extracts) == 4 and sorted(order[e] for e in range(len(order)) if e not in extracts) == [
        f"result s{i}" for i in range(4)]
    for i in range(4):
        assert extracts[i] < order.index(f"result s{i}")
        # two songs in flight at most: one computing, one being written
        assert sum(event.startswith("result") for event in order[: extracts[i]]) >= i - 1
