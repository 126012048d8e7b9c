"""A real Dask cluster (worker processes): the same store as an in-process run, and a killed worker loses nothing."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.store import FeatureStore

from .conftest import write_wav

distributed = pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")


class RegisterFakes(distributed.WorkerPlugin):
    """Registers tests/fakes.py's extractors in every worker process, also one a nanny restarts."""

    def setup(self, worker) -> None:
        from featurestore.extractors import registry

        from tests.fakes import FAKES

        for name, target in FAKES.items():
            registry.register(name, target)


def _songs_and_reference(tmp_path, n_songs: int, models: tuple[str, ...]):
    """``n_songs`` short songs, a store of them made in this process, and an empty store for the cluster run."""
    audio = tmp_path / "audio"
    for i in range(n_songs):
        write_wav(audio / f"s{i}.wav", 0.4, freq=300 + 50 * i)
    files = discover(audio).files
    ref = FeatureStore(str(tmp_path / "ref.zarr"), mode="a")
    fsrun.run(ref, files, [registry.create(m) for m in models])
    return files, ref, FeatureStore(str(tmp_path / "s.zarr"), mode="a")


@contextlib.contextmanager
def _cluster():
    """A client of a local cluster of two single-threaded worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client

@pytest.mark.slow
def test_worker_processes_write_the_same_store_as_one_process(tmp_path, fake_models):
    files, ref, store = _songs_and_reference(tmp_path, 8, ("fake", "slow"))
    with _cluster() as client:
        client.register_plugin(RegisterFakes())
        summary = fsrun.run(store, files, [registry.create("fake"), registry.create("slow")],
                               executor=client.get_executor())
    assert summary.ok and summary.totals["fake"].done == 8 and summary.totals["slow"].done == 8
    for model in ("fake", "slow"):
        assert store.songs(model) == ref.songs(model)
        for song in ref.songs(model):
            np.testing.assert_array_equal(store.array(model, song)[...], ref.array(model, song)[...])


class SlowFakes(RegisterFakes):
    """The fakes, each song taking 0.5 s, so a worker can be killed mid-run."""

    def setup(self, worker) -> None:
        import time

        from tests.fakes import FakeFrames

        super().setup(worker)
        extract = FakeFrames._extract

        def slowly(self, wave):
            time.sleep(0.5)
            return extract(self, wave)

        FakeFrames._extract = slowly


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tmp_path, fake_models):
    import os
    import threading
    import time

    files, ref, store = _songs_and_reference(tmp_path, 10, ("fake",))
    with _cluster() as client:
        client.register_plugin(SlowFakes())
        victim = sorted(client.scheduler_info()["workers"])[0]

        def kill_when_started() -> None:
            deadline = time.time() + 60
            while len(FeatureStore(str(tmp_path / "s.zarr")).songs("fake")) < 2 and time.time() < deadline:
                time.sleep(0.1)
            try:
                client.run(os._exit, 1, workers=[victim])
            except Exception:  # the worker dies before answering
                pass

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        summary = fsrun.run(store, files, [registry.create("fake")], executor=client.get_executor())
        killer.join()
        assert victim not in client.scheduler_info()["workers"]  # it died (its nanny started a new one)
    assert summary.ok and summary.totals["fake"].done == 10 and summary.totals["fake"].skipped == 0
    assert store.songs("fake") == ref.songs("fake")
    for song in ref.songs("fake"):
        np.testing.assert_array_equal(store.array("fake", song)[...], ref.array("fake", song)[...])
    assert store.leases.held() == []
