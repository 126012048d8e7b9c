"""Where a run's tasks execute: in this process, or in worker processes (a local pool, a Dask cluster).

Each execution declares what the coordinator needs to know of it (after lhotse's executor injection):
``window``, how many tasks may be in flight, and ``finish_in_flight``, whether tasks in flight when the
run stops are waited for and reported (in this process they are only writing) or cancelled.

- :class:`InProcess` loads the models here once, decodes the next songs ahead (:mod:`.prefetch`) and
  writes each song's arrays behind the next one's compute (:mod:`.writer`): two tasks in flight.
- :class:`Workers` hands tasks to any ``concurrent.futures.Executor``: a ``ProcessPoolExecutor`` or a
  Dask client's ``get_executor()``. Each worker process opens the store and loads the models once
  (:func:`worker_state`, freed by :func:`shutdown_worker_state` at exit) and writes its songs itself.
"""

from __future__ import annotations

import atexit
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..extractors.base import Extractor, ExtractorConfig
from ..store import FeatureStore
from .compute import SidePool, runs_on
from .options import RunOptions
from .planning import SongWork
from .prefetch import Prefetcher
from .results import SongOutcome
from .task import SongTask
from .writer import Writer

#: tasks submitted ahead to a pool or cluster: keeps every worker busy, bounds the queue
MAX_IN_FLIGHT = 1024

#: submit(songs) -> the future of their outcomes
Submit = Callable[[tuple[SongWork, ...]], Future]


@dataclass(frozen=True)
class RunSpec:
    """What every task of one run needs, picklable: where the store is, the run's id, the models' configurations."""

    url: str
    storage_options: dict[str, Any] | None
    run_id: str
    specs: tuple[tuple[str, ExtractorConfig], ...]
    options: RunOptions
    failed: frozenset[tuple[str, str]]


def _interrupted(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was caused by, a KeyboardInterrupt (following causes and contexts)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def load_models(extractors: Sequence[Extractor], device: str) -> None:
    """Load each model on ``device``, or on the CPU where it cannot run there.

    Ctrl-C during the imports a model's load makes (torch, transformers) can surface as an ImportError
    ("initialization failed") whose cause or context is the KeyboardInterrupt: that is an interrupt, and
    is raised as one, so the run stops as interrupted (exit 130, with its summary)."""
    for ext in extractors:
        try:
            ext.load(device if runs_on(ext, device) else "cpu")
        except ImportError as e:
            if _interrupted(e):
                raise KeyboardInterrupt from e
            raise


class InProcess:
    """Tasks run in this process, one after another: the next one computes while the last one's arrays are
    written, so results stream, and Ctrl-C loses the computing task's songs only."""

    window = 2
    finish_in_flight = True

    def __init__(self) -> None:
        self.load_seconds = 0.0

    @contextmanager
    def session(self, spec: RunSpec, store: FeatureStore, extractors: Sequence[Extractor],
                work: Sequence[SongWork]) -> Iterator[Submit]:
        """Load the models, then run tasks with the songs of ``work`` decoded ahead, in order."""
        loading = time.perf_counter()
        load_models(extractors, spec.options.device)
        self.load_seconds = time.perf_counter() - loading
        side = SidePool()
        by_name = {ext.name: ext for ext in extractors}
        try:
            # the writer's exit waits for the queued writes, also after an interrupt
            with Writer() as writer:
                task = SongTask(store, spec.run_id, tuple(extractors), spec.options, spec.failed, writer, side)

                def rates(song: SongWork) -> list[int]:
                    return sorted({by_name[name].time_axis.sample_rate for name in song.todo})

                with Prefetcher(work, rates) as prefetcher:
                    def submit(songs: tuple[SongWork, ...]) -> Future:
                        try:
                            return task.start(songs, [prefetcher.take(song) for song in songs])
                        except Exception as e:  # a task's error travels in its future, as in any executor
                            failed: Future = Future()
                            failed.set_exception(e)
                            return failed

                    yield submit
        finally:
            side.shutdown()


class Workers:
    """Tasks run in the processes of ``executor``; each loads the models once and writes its songs itself,
    so the store URL and the audio paths must be reachable from them."""

    window = MAX_IN_FLIGHT
    finish_in_flight = False
    load_seconds = 0.0  # the workers load their own models

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    @contextmanager
    def session(self, spec: RunSpec, store: FeatureStore, extractors: Sequence[Extractor],
                work: Sequence[SongWork]) -> Iterator[Submit]:
        yield lambda songs: self.executor.submit(remote_task, spec, songs)


def remote_task(spec: RunSpec, songs: tuple[SongWork, ...]) -> list[SongOutcome]:
    """A task in a worker process: every array is written when it returns."""
    store, extractors, side = worker_state(spec)
    with Writer() as writer:
        outcomes = SongTask(store, spec.run_id, extractors, spec.options, spec.failed, writer, side).start(songs)
    return outcomes.result()


# Per worker process: the stores, the loaded models and the side pool, built on the first task that needs them.
# The lock makes threaded workers (Dask's default) load each model once, not once per thread.
_worker_lock = threading.Lock()
_worker_stores: dict[tuple[str, str], FeatureStore] = {}
_worker_models: dict[tuple[str, str, str], Extractor] = {}
_worker_side = SidePool()


def worker_state(spec: RunSpec) -> tuple[FeatureStore, tuple[Extractor, ...], SidePool]:
    """This process's open store and loaded models for ``spec`` (made once per process)."""
    from ..extractors import registry

    with _worker_lock:
        key = (spec.url, repr(spec.storage_options))
        if key not in _worker_stores:
            _worker_stores[key] = FeatureStore(spec.url, mode="r+", storage_options=spec.storage_options)
        extractors = []
        for name, config in spec.specs:
            mkey = (name, repr(config), spec.options.device)
            if mkey not in _worker_models:
                ext = registry.get(name)(config)
                load_models([ext], spec.options.device)
                _worker_models[mkey] = ext
            extractors.append(_worker_models[mkey])
        return _worker_stores[key], tuple(extractors), _worker_side


@atexit.register
def shutdown_worker_state() -> None:
    """Close this process's stores, drop its models and stop its side pool (at exit, or between tests)."""
    with _worker_lock:
        for store in _worker_stores.values():
            store.close()
        _worker_stores.clear()
        _worker_models.clear()
        _worker_side.shutdown()


def worker_state_size() -> tuple[int, int]:
    """(stores, models) this process holds for worker tasks."""
    with _worker_lock:
        return len(_worker_stores), len(_worker_models)


def _share_cores(workers: int) -> None:
    """Give each local worker its share of the cores, so N workers do not each start N threads."""
    import os

    from ..devices import usable_cores

    threads = str(max(1, usable_cores() // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads


@contextmanager
def execution(workers: int = 0, dask_scheduler: str | None = None) -> Iterator[InProcess | Workers]:
    """This process (``workers=0``), ``workers`` local processes (spawned, each with its share of the cores),
    or the workers of the Dask cluster at ``dask_scheduler``."""
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise ImportError("--dask-scheduler needs the 'distributed' package: pip install 'fstore-audio[dask]'") from e
        with Client(dask_scheduler) as client:
            yield Workers(client.get_executor())
    elif workers > 0:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_share_cores, initargs=(workers,)) as pool:
            yield Workers(pool)
    else:
        yield InProcess()
