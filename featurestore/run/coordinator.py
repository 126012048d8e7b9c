"""The run: make the model groups, sort out the work, hand it out as tasks, and report.

The coordinator knows models only through the extractor contract and executions only through what
they declare (:mod:`.execution`). A bad file is a per-(song, model) failure, recorded in the store and
the summary, and the run goes on; a store that cannot be written stops the run, since every later
write would fail too.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import replace
from typing import Callable, Iterable, Sequence

from ..discover import AudioFile
from ..extractors.base import Extractor
from ..store import FeatureStore
from ..errors import StoreError
from ..store.attributes import group_attributes
from ..store.leases import group_lease
from .execution import InProcess, RunSpec, Submit, Workers
from .options import RunOptions
from .planning import Plan, SongWork, plan as make_plan, recorded_failures
from .results import ModelTotals, Reporter, Result, SilentReporter, SongOutcome, Summary


def run(store: FeatureStore, files: Iterable[AudioFile], extractors: Sequence[Extractor],
        options: RunOptions = RunOptions(), reporter: Reporter | None = None,
        executor: Executor | InProcess | Workers | None = None, plan: Plan | None = None) -> Summary:
    """Extract every ``extractor`` for every file into ``store``; the summary of what was done.

    Every ``options.songs_per_task`` consecutive songs to compute are one task; the songs of a task up
    to 60 s share model calls. ``executor`` says where tasks run: None (or :class:`InProcess`) here,
    with the extractors loaded on ``options.device``; a ``concurrent.futures.Executor`` (a
    ``ProcessPoolExecutor``, or a Dask client's ``get_executor()``) in its workers (see
    :mod:`.execution`). Every task carries this run's id, so the leases it takes are this run's
    wherever it runs. ``plan`` is the run's work sorted out beforehand (:func:`.planning.plan`, with
    the same options); without it the run makes its own.

    Model groups are written first. Each song is claimed with a lease in the store while it is
    processed, so concurrent runs on one store share the work: a song another live run holds is
    retried once at the end, then reported as skipped ("in progress in another run").

    KeyboardInterrupt (also while models load) stops the run: arrays already computed are written
    (and reported), the ones being computed are never marked complete; the reporter still gets the
    summary, which says ``interrupted``, and the exception propagates.
    """
    reporter = reporter or SilentReporter()
    execution = executor if isinstance(executor, (InProcess, Workers)) else \
        InProcess() if executor is None else Workers(executor)
    files = list(files)
    groups = [options.group(e) for e in extractors]
    summary = Summary(run_id=uuid.uuid4().hex, totals={g: ModelTotals() for g in groups})

    def report(r: Result) -> None:
        summary.add(r)
        reporter.result(r)

    def on_outcome(song: SongWork, outcome: SongOutcome) -> None:
        summary.decode_seconds += outcome.decode_seconds
        for r in outcome.results:
            report(r)
        if not outcome.busy:
            reporter.song_done(song.file)

    start = time.perf_counter()
    reporter.start(len(files), groups)
    held = ExitStack()  # the groups an --overwrite run holds, released when it ends however it ends
    try:
        work = plan if plan is not None else make_plan(store, files, extractors, options)
        for ext in extractors:
            group = options.group(ext)
            attrs = group_attributes(ext.describe(), group, options.dtype)
            if options.overwrite:  # the group is this run's until it ends: no second --overwrite interleaves
                claim = held.enter_context(store.leases.claim(group_lease(group), summary.run_id))
                if not claim.held:
                    raise StoreError(f"{store.url}: the {group} group is being replaced by run {claim.owner.get('run')} "
                                     f"({claim.owner.get('host')}:{claim.owner.get('pid')}); run again once it has ended")
                summary.replaced[group] = store.replace_model(group, attrs, summary.run_id)
            else:
                store.ensure_model(group, attrs)
        for song in work.done:
            on_outcome(song, SongOutcome(song.cached))
        spec = RunSpec(store.url, store.storage_options, summary.run_id, tuple((e.name, e.config) for e in extractors),
                       replace(options, overwrite=False),  # replaced once, here: tasks must not replace again
                       recorded_failures(store, options))
        with execution.session(spec, store, extractors, work.work) as submit:
            summary.load_seconds = execution.load_seconds
            busy = run_tasks(execution, submit, work.work, options.songs_per_task, on_outcome)
            busy = run_tasks(execution, submit, busy, options.songs_per_task, on_outcome)
        for song in busy:  # held by another run twice: left to that run
            for ext in extractors:
                report(Result(song.file.song_id, options.group(ext), "skipped", error="in progress in another run",
                              path=song.file.relative))
        # a run killed between writing a song and letting it go leaves a lease no later run needs to take
        store.leases.clear_stale({f.song_id for f in files}, summary.run_id)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        held.close()
        summary.wall_seconds = time.perf_counter() - start
        reporter.end(summary)
    return summary


def run_tasks(execution: InProcess | Workers, submit: Submit, songs: Sequence[SongWork], per_task: int,
              on_outcome: Callable[[SongWork, SongOutcome], None]) -> list[SongWork]:
    """Run ``songs`` as tasks of ``per_task`` songs, at most the execution's ``window`` in flight; each
    (song, outcome) goes to ``on_outcome`` in completion order. Returns the songs another run held.

    Interrupted or failed, tasks not started are not started; those in flight are waited for and
    reported where the execution says so (``finish_in_flight``), else cancelled.
    """
    pending: dict[Future, tuple[SongWork, ...]] = {}
    tasks = (tuple(songs[i : i + per_task]) for i in range(0, len(songs), max(1, per_task)))
    busy: list[SongWork] = []

    def report(future: Future) -> None:
        for song, outcome in zip(pending.pop(future), future.result()):
            on_outcome(song, outcome)
            if outcome.busy:
                busy.append(song)

    try:
        while True:
            for task in tasks:
                pending[submit(task)] = task
                if len(pending) >= execution.window:
                    break
            if not pending:
                return busy
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in [f for f in pending if f in done]:  # in submission order
                report(future)
    finally:
        if execution.finish_in_flight:
            for future in list(pending):
                if future.exception() is None:  # waits for its writes
                    report(future)
        for future in pending:
            future.cancel()
