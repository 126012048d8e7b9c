"""discover -> decode -> extract -> write, for every (song, model) of a run.

The pipeline knows models only through the extractor contract. It reports through a
:class:`Reporter` (the CLI draws progress bars with it; tests collect events), never by
printing. A bad file is a per-(song, model) failure, recorded in the store and the
summary, and the run goes on; a store that cannot be written (read-only, disk full)
stops the run, since every later write would fail too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from .audio import SongAudio
from .discover import AudioFile, source_info, source_unchanged
from .errors import AudioError, AudioTooShort, FstoreError, InvalidSongId, StoreError
from .export import write_npy
from .extractors.base import Extractor, ExtractorConfig, TorchExtractor
from .prefetch import Prefetcher
from .store import FeatureStore

MAX_IN_FLIGHT = 1024  # songs submitted ahead to a pool or cluster: keeps every worker busy, bounds the queue


# -- results and reporting -----------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """The outcome of one (song, model)."""

    song_id: str
    model: str
    status: str  # "done" | "cached" | "skipped" (another live run has the song) | "failed"
    seconds: float = 0.0
    shape: tuple[int, ...] | None = None
    duration_s: float | None = None
    error: str | None = None
    path: str | None = None
    frame_rate_hz: float | None = None


@dataclass
class ModelTotals:
    done: int = 0
    cached: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class Summary:
    """What a run did, per model, and every failure with its reason."""

    totals: dict[str, ModelTotals] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    scan_errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) from discovery
    decode_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False
    replaced: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> (arrays, failures) removed

    def add(self, r: Result) -> None:
        t = self.totals.setdefault(r.model, ModelTotals())
        setattr(t, r.status, getattr(t, r.status) + 1)
        t.seconds += r.seconds
        if r.status == "failed":
            self.failures.append(r)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.scan_errors and not self.interrupted


class Reporter(Protocol):
    """Callbacks a run reports through (all optional to act on)."""

    def start(self, n_songs: int, models: Sequence[str]) -> None: ...
    def song_done(self, file: AudioFile) -> None: ...
    def result(self, result: Result) -> None: ...
    def end(self, summary: Summary) -> None: ...


class SilentReporter:
    def start(self, n_songs: int, models: Sequence[str]) -> None:
        pass

    def song_done(self, file: AudioFile) -> None:
        pass

    def result(self, result: Result) -> None:
        pass

    def end(self, summary: Summary) -> None:
        pass


# -- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    skip_existing: bool = True  # caching: a complete array of the same configuration and source is kept
    retry_failed: bool = False  # only (song, model) pairs whose failure is recorded in the store
    output_base: Path | None = None  # also write <output_base>/<model>/<song_id>.npy
    device: str = "cpu"  # where the models run ("cpu", "cuda", "cuda:N"), resolved already
    overwrite: bool = False  # replace each model's group (its arrays and failures) before the run
    dtype: str = "float32"  # how arrays are stored: float32 or float16
    groups: tuple[tuple[str, str], ...] = ()  # (model, group) pairs: store a model under another group name

    def group(self, ext: Extractor) -> str:
        """The store group ``ext`` writes into: its name, unless ``--as`` chose another."""
        return dict(self.groups).get(ext.name, ext.name)


def group_attrs(ext: Extractor, options: RunOptions) -> dict[str, Any]:
    """The attributes of ``ext``'s store group: the extractor's description plus how it is stored."""
    return {**ext.group_attrs(), "group": options.group(ext), "dtype": options.dtype}


def song_attrs(ext: Extractor, n_samples_at_rate: int, duration_s: float, source: dict[str, Any],
               dtype: str = "float32") -> dict[str, Any]:
    """The attributes of one song's array (the time axis, its source, what computed it)."""
    attrs: dict[str, Any] = {
        "model": ext.name,
        "dtype": dtype,
        **ext.time_axis.as_attrs(),
        "duration_s": duration_s,
        "n_samples": n_samples_at_rate,
        "source": source,
        "fingerprint": ext.fingerprint,
    }
    if ext.feature_names is not None:
        attrs["feature_names"] = list(ext.feature_names)
    if ext.coords:
        attrs["coords"] = ext.coords
    return attrs


def is_cached(store: FeatureStore, file: AudioFile, ext: Extractor, options: RunOptions) -> bool:
    """Whether (song, model) already has a complete array of this configuration from this unchanged file."""
    attrs = store.song_attrs(options.group(ext), file.song_id)
    return (
        attrs is not None
        and attrs.get("complete") is True
        and attrs.get("fingerprint") == ext.fingerprint
        and attrs.get("dtype", "float32") == options.dtype
        and source_unchanged(file, attrs.get("source"))
    )


def _todo(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
          failed: frozenset[tuple[str, str]]) -> tuple[list[Extractor], list[Result]]:
    """Which models still need this song, and "cached" results for the rest."""
    todo, cached = [], []
    for ext in extractors:
        if options.retry_failed and (options.group(ext), file.song_id) not in failed:
            continue
        if options.skip_existing and not options.overwrite and is_cached(store, file, ext, options):
            cached.append(Result(file.song_id, options.group(ext), "cached", path=file.relative))
            continue
        todo.append(ext)
    return todo, cached


@dataclass(frozen=True)
class Plan:
    """How many (song, model) pairs a run will compute and how many it finds cached, per group."""

    compute: dict[str, int]
    cached: dict[str, int]
    songs: dict[str, list[tuple[str, str]]] = field(default_factory=dict, compare=False)  # group -> (song, action)


def plan(store: FeatureStore | None, files: Sequence[AudioFile], extractors: Sequence[Extractor],
         options: RunOptions = RunOptions()) -> Plan:
    """Count the work before a run (one attribute read per (song, model); nothing is written).

    ``store=None`` stands for a store that does not exist yet: everything is to compute.
    """
    failed = _recorded_failures(store, options) if store is not None else frozenset()
    groups = [options.group(e) for e in extractors]
    result = Plan(dict.fromkeys(groups, 0), dict.fromkeys(groups, 0), {g: [] for g in groups})
    for file in files:
        todo, hits = _todo(store, file, extractors, options, failed) if store is not None else (list(extractors), [])
        for ext in todo:
            result.compute[options.group(ext)] += 1
            result.songs[options.group(ext)].append((file.song_id, "compute"))
        for r in hits:
            result.cached[r.model] += 1
            result.songs[r.model].append((file.song_id, "cached"))
    return result


def _recorded_failures(store: FeatureStore, options: RunOptions) -> frozenset[tuple[str, str]]:
    """(group, song) pairs whose failure is recorded, when the run only retries those."""
    if not options.retry_failed:
        return frozenset()
    return frozenset((f["model"], f["song_id"]) for f in store.failures())


def process_song(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
                 on_result: Callable[[Result], None], audio: SongAudio | None = None) -> float:
    """Decode one file once and run every model that needs it; return the decode + resample seconds.

    ``audio`` is the song already decoded ahead (see :mod:`.prefetch`), or None to decode it
    here. Each (song, model) outcome goes to ``on_result`` as soon as it is written. A file
    that cannot be read or decoded is one failure per model that needed it, recorded once each.
    Models that do not run on ``options.device`` (CPU-only ones, while torch models use a GPU)
    run in a thread beside the others, so the GPU does not wait for them.
    """
    audio = audio if audio is not None else SongAudio(file.path)
    source: dict[str, Any] | None = None
    try:
        source = source_info(file)
        duration = audio.duration_s  # decodes (or raises the failure of a decode ahead)
        source["decoder"] = audio.audio.decoder
    except (AudioError, OSError) as e:
        reason = e.reason if isinstance(e, AudioError) else f"cannot read ({e})"
        for ext in extractors:
            store.record_failure(options.group(ext), file.song_id, reason, type(e).__name__, source)
            on_result(Result(file.song_id, options.group(ext), "failed", error=reason, path=file.relative))
        return audio.seconds

    def compute(ext: Extractor) -> Result:
        return _compute_and_write(store, file, ext, audio.at(ext.time_axis.sample_rate), duration, source, options)

    beside = [e for e in extractors if not runs_on(e, options.device)] if options.device != "cpu" else []
    if beside:
        for rate in {e.time_axis.sample_rate for e in extractors}:
            audio.at(rate)  # resampled here, before two threads read the copies
        pending = [_beside_pool().submit(compute, ext) for ext in beside]
        for ext in extractors:
            if ext not in beside:
                on_result(compute(ext))
        for future in pending:
            on_result(future.result())
        return audio.seconds
    last_use = {ext.time_axis.sample_rate: i for i, ext in enumerate(extractors)}
    for i, ext in enumerate(extractors):
        result = compute(ext)
        if last_use[ext.time_axis.sample_rate] == i:
            audio.forget(ext.time_axis.sample_rate)  # long songs: hold one resampled copy at a time
        on_result(result)
    return audio.seconds


def runs_on(ext: Extractor, device: str) -> bool:
    """Whether ``ext`` computes on ``device``: torch models do; the others (numpy, onnxruntime) run on the CPU."""
    return device == "cpu" or isinstance(ext, TorchExtractor)


_beside_lock = threading.Lock()
_beside: ThreadPoolExecutor | None = None


def _beside_pool() -> ThreadPoolExecutor:
    """One thread per process for the CPU-only models of songs whose torch models use a GPU."""
    global _beside
    with _beside_lock:
        if _beside is None:
            _beside = ThreadPoolExecutor(1, thread_name_prefix="fstore-cpu-models")
        return _beside


def _compute_and_write(store: FeatureStore, file: AudioFile, ext: Extractor, wave: Any, duration: float,
                       source: dict[str, Any], options: RunOptions) -> Result:
    """One (song, model): extract, write the array (and the .npy copy), or record the failure."""
    group = options.group(ext)
    t = time.perf_counter()
    try:
        data = ext.extract(wave)
        attrs = song_attrs(ext, int(wave.shape[0]), duration, source, options.dtype)
        store.write(group, file.song_id, data, ext.dims, attrs, dtype=options.dtype)
        store.clear_failure(group, file.song_id)
        result = Result(file.song_id, group, "done", time.perf_counter() - t, data.shape, duration,
                        path=file.relative, frame_rate_hz=ext.time_axis.frame_rate_hz)
    except StoreError:
        raise
    except (AudioError, AudioTooShort, InvalidSongId, FstoreError, OSError, ValueError, RuntimeError, MemoryError) as e:
        reason = e.reason if isinstance(e, AudioError) else str(e)
        store.record_failure(group, file.song_id, reason, type(e).__name__, source)
        return Result(file.song_id, group, "failed", time.perf_counter() - t, error=reason, path=file.relative)
    if options.output_base is not None:
        try:
            write_npy(options.output_base, group, file.song_id, data)
        except OSError as e:  # the store holds the result: only the copy failed
            return Result(file.song_id, group, "failed", result.seconds, data.shape, duration,
                          error=f"stored, but the .npy export failed: {e}", path=file.relative)
    return result


@dataclass(frozen=True)
class SongOutcome:
    """What one worker did with one song (picklable, for executors)."""

    results: tuple[Result, ...]
    decode_seconds: float = 0.0
    busy: bool = False  # another live run holds the song


def work_on_song(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
                 failed: frozenset[tuple[str, str]], run_id: str, audio: SongAudio | None = None) -> SongOutcome:
    """Skip, or claim under ``run_id`` and process, one song (``audio``: decoded ahead, or None)."""
    results: list[Result] = []
    todo, cached = _todo(store, file, extractors, options, failed)
    if not todo:
        return SongOutcome(tuple(cached))
    try:
        if store.acquire(file.song_id, run_id) is not None:
            return SongOutcome((), busy=True)
        # decided again under the lease: another run may have finished the song meanwhile
        todo, cached = _todo(store, file, extractors, options, failed)
        results.extend(cached)
        decode_seconds = process_song(store, file, todo, options, results.append, audio) if todo else 0.0
    finally:
        store.release(file.song_id, run_id)  # a no-op unless this run holds the lease (also after an interrupt)
    return SongOutcome(tuple(results), decode_seconds)


class SyncExecutor(Executor):
    """Runs each task when it is submitted, in this process: the in-process run is an executor too."""

    window = 1  # submit one song, report it, then the next: results stream and Ctrl-C loses one song

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # a task's error travels in its future, as in any executor
            future.set_exception(e)
        return future


@dataclass(frozen=True)
class _Run:
    """What every song task of one run shares (picklable): the coordinator's run id travels with it."""

    url: str
    storage_options: dict[str, Any] | None
    run_id: str
    specs: tuple[tuple[str, ExtractorConfig], ...]
    options: RunOptions
    failed: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class _LocalTask:
    """A song task in the coordinator's process: its open store and its loaded models."""

    run: _Run
    store: FeatureStore
    extractors: tuple[Extractor, ...]
    prefetcher: Prefetcher | None = None

    def __call__(self, file: AudioFile) -> SongOutcome:
        audio = self.prefetcher.take(file) if self.prefetcher is not None else None
        return work_on_song(self.store, file, self.extractors, self.run.options, self.run.failed, self.run.run_id,
                            audio)

    def rates(self, file: AudioFile) -> list[int]:
        """The sample rates ``file`` is needed at by the models that still have to compute it."""
        todo, _ = _todo(self.store, file, self.extractors, self.run.options, self.run.failed)
        return sorted({ext.time_axis.sample_rate for ext in todo})


@dataclass(frozen=True)
class _RemoteTask:
    """A song task in a worker process: the store is opened and the models loaded once per process."""

    run: _Run

    def __call__(self, file: AudioFile) -> SongOutcome:
        store, extractors = _worker_state(self.run)
        return work_on_song(store, file, extractors, self.run.options, self.run.failed, self.run.run_id)


# Per worker process: the stores and the loaded models, built on the first song that needs them.
# The lock makes threaded workers (Dask's default) load each model once, not once per thread.
_worker_lock = threading.Lock()
_worker_stores: dict[tuple[str, str], FeatureStore] = {}
_worker_models: dict[tuple[str, str, str], Extractor] = {}


def _worker_state(run: _Run) -> tuple[FeatureStore, tuple[Extractor, ...]]:
    from .extractors import registry

    with _worker_lock:
        key = (run.url, repr(run.storage_options))
        if key not in _worker_stores:
            _worker_stores[key] = FeatureStore(run.url, mode="a", storage_options=run.storage_options)
        extractors = []
        for name, config in run.specs:
            mkey = (name, repr(config), run.options.device)
            if mkey not in _worker_models:
                ext = registry.get(name)(config)
                ext.load(run.options.device)
                _worker_models[mkey] = ext
            extractors.append(_worker_models[mkey])
        return _worker_stores[key], tuple(extractors)


def _outcomes(executor: Executor, task: Callable[[AudioFile], SongOutcome],
              files: Sequence[AudioFile]) -> Iterator[tuple[AudioFile, SongOutcome]]:
    """(file, outcome) in completion order, with at most the executor's ``window`` songs in flight."""
    window = getattr(executor, "window", MAX_IN_FLIGHT)
    pending: dict[Future, AudioFile] = {}
    queue = iter(files)
    try:
        while True:
            for file in queue:
                pending[executor.submit(task, file)] = file
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:  # interrupted or failed: songs not started are not started
        for future in pending:
            future.cancel()


def run(store: FeatureStore, files: Iterable[AudioFile], extractors: Sequence[Extractor],
        options: RunOptions = RunOptions(), reporter: Reporter | None = None,
        executor: Executor | None = None) -> Summary:
    """Extract every ``extractor`` for every file into ``store``.

    Each song is one task for ``executor``: none (or :class:`SyncExecutor`) runs them here,
    one after another, with the extractors loaded on ``options.device`` and the next songs
    decoded ahead in a thread (:mod:`.prefetch`); a
    ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, or a Dask cluster's
    ``client.get_executor()``) runs them in workers, which load the models once per process
    and write their songs' arrays to the store themselves (so the store URL and the audio
    paths must be reachable from them). Every task carries this run's id, so the leases it
    takes are this run's wherever it runs.

    Model groups are written first. Each song is claimed with a lease in the store while it
    is processed, so concurrent runs on one store share the work: a song another live run
    holds is retried once at the end, then reported as skipped ("in progress in another
    run"); leases of dead processes are taken over.

    KeyboardInterrupt (also while models load) stops the run: finished arrays stay
    complete, the one being computed is never marked complete; the reporter still gets the
    summary, which says ``interrupted``, and the exception propagates.
    """
    reporter = reporter or SilentReporter()
    executor = executor or SyncExecutor()
    files = list(files)
    groups = [options.group(e) for e in extractors]
    summary = Summary(totals={g: ModelTotals() for g in groups})

    def report(r: Result) -> None:
        summary.add(r)
        reporter.result(r)

    def run_pass(task: Callable[[AudioFile], SongOutcome], batch: list[AudioFile]) -> list[AudioFile]:
        busy = []
        for file, outcome in _outcomes(executor, task, batch):
            summary.decode_seconds += outcome.decode_seconds
            for r in outcome.results:
                report(r)
            if outcome.busy:
                busy.append(file)
            else:
                reporter.song_done(file)
        return busy

    start = time.perf_counter()
    reporter.start(len(files), groups)
    try:
        for ext in extractors:
            summary.replaced[options.group(ext)] = store.ensure_model(options.group(ext), group_attrs(ext, options),
                                                                      replace=options.overwrite)
        shared = _Run(store.url, store.storage_options, store.run_id, tuple((e.name, e.config) for e in extractors),
                      replace(options, overwrite=False),  # replaced once, here: workers must not replace again
                      _recorded_failures(store, options))
        if isinstance(executor, SyncExecutor):
            for ext in extractors:
                ext.load(options.device)
            local = _LocalTask(shared, store, tuple(extractors))
            # the next songs are decoded while one computes; songs another run held are retried without
            with Prefetcher(files, local.rates) as prefetcher:
                busy = run_pass(replace(local, prefetcher=prefetcher), files)
            busy = run_pass(local, busy)
        else:
            remote = _RemoteTask(shared)
            busy = run_pass(remote, run_pass(remote, files))
        # songs another run held twice: left to that run
        for file in busy:
            for ext in extractors:
                report(Result(file.song_id, options.group(ext), "skipped", error="in progress in another run",
                              path=file.relative))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.wall_seconds = time.perf_counter() - start
        reporter.end(summary)
    return summary
