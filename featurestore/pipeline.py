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

MAX_IN_FLIGHT = 1024  # tasks submitted ahead to a pool or cluster: keeps every worker busy, bounds the queue
#: songs up to this long share model calls with the other songs of their task; longer ones fill batches alone
BATCH_SONG_MAX_S = 60.0


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
    load_seconds: float = 0.0  # loading the models in this process (workers load their own)
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
    batch_songs: int = 1  # songs per task: the short ones among them share model calls (extract_batch)

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


@dataclass(eq=False)
class _Song:
    """A decoded song of a task and the models it needs."""

    file: AudioFile
    todo: Sequence[Extractor]
    audio: SongAudio
    duration: float
    source: dict[str, Any]


def process_song(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
                 on_result: Callable[[Result], None], audio: SongAudio | None = None) -> float:
    """Decode one file once and run every model that needs it; return the decode + resample seconds.

    ``audio`` is the song already decoded ahead (see :mod:`.prefetch`), or None to decode it here.
    """
    return process_songs(store, [(file, extractors, audio)], options, on_result)[0]


def process_songs(store: FeatureStore, songs: Sequence[tuple[AudioFile, Sequence[Extractor], SongAudio | None]],
                  options: RunOptions, on_result: Callable[[Result], None]) -> list[float]:
    """Decode each song once and run every model each needs; return each song's decode + resample seconds.

    Each song comes with the models it needs and its audio if decoded ahead (else None). Each
    (song, model) outcome goes to ``on_result`` as soon as it is written. A file that cannot be
    read or decoded is one failure per model that needed it, recorded once each. Songs up to
    ``BATCH_SONG_MAX_S`` share model calls (:meth:`Extractor.extract_batch`); a longer song runs
    alone as soon as it is decoded, so a task holds the audio of one long song at a time. Models that do not
    run on ``options.device`` (CPU-only ones, while torch models use a GPU) run in threads
    beside the others, one song per call, so the GPU does not wait for them.
    """
    seconds = [0.0] * len(songs)
    batch: list[tuple[int, _Song]] = []
    for index, (file, todo, audio) in enumerate(songs):
        audio = audio if audio is not None else SongAudio(file.path)
        source: dict[str, Any] | None = None
        try:
            source = source_info(file)
            duration = audio.duration_s  # decodes (or raises the failure of a decode ahead)
            source["decoder"] = audio.audio.decoder
        except (AudioError, OSError) as e:
            reason = e.reason if isinstance(e, AudioError) else f"cannot read ({e})"
            for ext in todo:
                store.record_failure(options.group(ext), file.song_id, reason, type(e).__name__, source)
                on_result(Result(file.song_id, options.group(ext), "failed", error=reason, path=file.relative))
            seconds[index] = audio.seconds
            continue
        song = _Song(file, todo, audio, duration, source)
        if len(songs) > 1 and duration <= BATCH_SONG_MAX_S:
            batch.append((index, song))
        else:  # a long song goes alone, and its audio is let go before the next is decoded
            _run_models(store, [song], options, on_result)
            seconds[index] = audio.seconds
    if batch:
        _run_models(store, [song for _, song in batch], options, on_result)
        for index, song in batch:
            seconds[index] = song.audio.seconds
    return seconds


def _run_models(store: FeatureStore, songs: Sequence[_Song], options: RunOptions,
                on_result: Callable[[Result], None]) -> None:
    """Every model the decoded ``songs`` need, the songs of each model together (see :func:`process_songs`)."""
    models = list(dict.fromkeys(ext for song in songs for ext in song.todo))

    def compute(ext: Extractor) -> list[Result]:
        return _compute_model(store, ext, [song for song in songs if ext in song.todo], options)

    beside = [e for e in models if not runs_on(e, options.device)]
    if beside:
        for song in songs:
            for rate in {e.time_axis.sample_rate for e in song.todo}:
                song.audio.at(rate)  # resampled here, before two threads read the copies
        # one song per call, so the songs spread over the pool's threads (onnxruntime and numpy release the GIL)
        pending = [_beside_pool().submit(_compute_model, store, ext, [song], options)
                   for ext in beside for song in songs if ext in song.todo]
        try:
            for ext in models:
                if ext not in beside:
                    for result in compute(ext):
                        on_result(result)
        finally:  # also when interrupted: no write may outlive the song's lease
            wait(pending)
        for future in pending:
            for result in future.result():
                on_result(result)
        return
    for i, ext in enumerate(models):
        results = compute(ext)
        later = {e.time_axis.sample_rate for e in models[i + 1 :]}
        if ext.time_axis.sample_rate not in later:
            for song in songs:
                song.audio.forget(ext.time_axis.sample_rate)  # long songs: hold one resampled copy at a time
        for result in results:
            on_result(result)


def _compute_model(store: FeatureStore, ext: Extractor, songs: Sequence[_Song], options: RunOptions) -> list[Result]:
    """One model on songs: several in one ``extract_batch`` call, one alone through ``extract``.

    If the shared call fails (one song too short, out of memory), each song is computed on its
    own, so the failure is recorded for the song that caused it only.
    """
    if len(songs) > 1:
        t = time.perf_counter()
        try:
            outputs = ext.extract_batch([song.audio.at(ext.time_axis.sample_rate) for song in songs])
        except (AudioTooShort, FstoreError, ValueError, RuntimeError, MemoryError):
            pass  # one at a time below
        else:
            share = (time.perf_counter() - t) / len(songs)
            return [_compute_and_write(store, song, ext, options, (data, share)) for song, data in zip(songs, outputs)]
    return [_compute_and_write(store, song, ext, options) for song in songs]


def runs_on(ext: Extractor, device: str) -> bool:
    """Whether ``ext`` computes on ``device``: torch models do; the others (numpy, onnxruntime) run on the CPU."""
    return device == "cpu" or isinstance(ext, TorchExtractor)


_beside_lock = threading.Lock()
_beside: ThreadPoolExecutor | None = None


def _beside_pool() -> ThreadPoolExecutor:
    """Threads for the CPU-only models of songs whose torch models use a GPU: half the cores, 1 to 8.

    madmom costs ~0.27 s of one core per 30-s clip, more than a GPU spends on the other three
    models, so one thread would set the pace of a GPU run.
    """
    global _beside
    with _beside_lock:
        if _beside is None:
            from .devices import usable_cores

            threads = max(1, min(8, usable_cores() // 2))
            _beside = ThreadPoolExecutor(threads, thread_name_prefix="fstore-cpu-models")
        return _beside


def _compute_and_write(store: FeatureStore, song: _Song, ext: Extractor, options: RunOptions,
                       computed: tuple[Any, float] | None = None) -> Result:
    """One (song, model): extract (unless ``computed`` gives the output and its seconds), write the
    array (and the .npy copy), or record the failure."""
    group, file = options.group(ext), song.file
    wave = song.audio.at(ext.time_axis.sample_rate)
    t = time.perf_counter()
    try:
        data = ext.extract(wave) if computed is None else computed[0]
        attrs = song_attrs(ext, int(wave.shape[0]), song.duration, song.source, options.dtype)
        store.write(group, file.song_id, data, ext.dims, attrs, dtype=options.dtype)
        store.clear_failure(group, file.song_id)
        seconds = time.perf_counter() - t + (computed[1] if computed is not None else 0.0)
        result = Result(file.song_id, group, "done", seconds, data.shape, song.duration,
                        path=file.relative, frame_rate_hz=ext.time_axis.frame_rate_hz)
    except StoreError:
        raise
    except (AudioError, AudioTooShort, InvalidSongId, FstoreError, OSError, ValueError, RuntimeError, MemoryError) as e:
        reason = e.reason if isinstance(e, AudioError) else str(e)
        store.record_failure(group, file.song_id, reason, type(e).__name__, song.source)
        return Result(file.song_id, group, "failed", time.perf_counter() - t, error=reason, path=file.relative)
    if options.output_base is not None:
        try:
            write_npy(options.output_base, group, file.song_id, data)
        except OSError as e:  # the store holds the result: only the copy failed
            return Result(file.song_id, group, "failed", result.seconds, data.shape, song.duration,
                          error=f"stored, but the .npy export failed: {e}", path=file.relative)
    return result


@dataclass(frozen=True)
class SongOutcome:
    """What one worker did with one song (picklable, for executors)."""

    results: tuple[Result, ...]
    decode_seconds: float = 0.0
    busy: bool = False  # another live run holds the song


def work_on_songs(store: FeatureStore, files: Sequence[AudioFile], extractors: Sequence[Extractor],
                  options: RunOptions, failed: frozenset[tuple[str, str]], run_id: str,
                  audios: Sequence[SongAudio | None] | None = None) -> list[SongOutcome]:
    """Skip, or claim under ``run_id`` and process, the songs of one task (``audios``: decoded ahead, or None)."""
    audios = audios or [None] * len(files)
    results: list[list[Result]] = [[] for _ in files]
    busy = [False] * len(files)
    seconds = [0.0] * len(files)
    held: list[AudioFile] = []
    work: list[tuple[int, list[Extractor]]] = []
    try:
        for i, file in enumerate(files):
            # a song decoded ahead needed work when the prefetcher looked, a moment ago: claim it without asking
            # the store again (the check under the lease decides)
            todo, cached = (extractors, []) if audios[i] is not None else _todo(store, file, extractors, options, failed)
            if todo and store.acquire(file.song_id, run_id) is not None:
                busy[i] = True
                continue
            if todo:
                held.append(file)
                # decided again under the lease: another run may have finished the song meanwhile
                todo, cached = _todo(store, file, extractors, options, failed)
            results[i].extend(cached)
            if todo:
                work.append((i, todo))
        index = {files[i].song_id: i for i, _ in work}
        spent = process_songs(store, [(files[i], todo, audios[i]) for i, todo in work], options,
                              lambda r: results[index[r.song_id]].append(r))
        for (i, _), s in zip(work, spent):
            seconds[i] = s
    finally:
        for file in held:  # also after an interrupt
            store.release(file.song_id, run_id)
    return [SongOutcome(tuple(r), s, b) for r, s, b in zip(results, seconds, busy)]


class SyncExecutor(Executor):
    """Runs each task when it is submitted, in this process: the in-process run is an executor too."""

    window = 1  # submit one task, report it, then the next: results stream and Ctrl-C loses one task's songs

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
    """A task (a few songs) in the coordinator's process: its open store and its loaded models."""

    run: _Run
    store: FeatureStore
    extractors: tuple[Extractor, ...]
    prefetcher: Prefetcher | None = None

    def __call__(self, files: Sequence[AudioFile]) -> list[SongOutcome]:
        audios = [self.prefetcher.take(file) if self.prefetcher is not None else None for file in files]
        return work_on_songs(self.store, files, self.extractors, self.run.options, self.run.failed, self.run.run_id,
                             audios)

    def rates(self, file: AudioFile) -> list[int]:
        """The sample rates ``file`` is needed at by the models that still have to compute it."""
        todo, _ = _todo(self.store, file, self.extractors, self.run.options, self.run.failed)
        return sorted({ext.time_axis.sample_rate for ext in todo})


@dataclass(frozen=True)
class _RemoteTask:
    """A task (a few songs) in a worker process: the store is opened and the models loaded once per process."""

    run: _Run

    def __call__(self, files: Sequence[AudioFile]) -> list[SongOutcome]:
        store, extractors = _worker_state(self.run)
        return work_on_songs(store, files, extractors, self.run.options, self.run.failed, self.run.run_id)


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


def _outcomes(executor: Executor, task: Callable[[Sequence[AudioFile]], list[SongOutcome]],
              files: Sequence[AudioFile], per_task: int) -> Iterator[tuple[AudioFile, SongOutcome]]:
    """(file, outcome) in completion order, ``per_task`` songs per task, at most the executor's ``window`` tasks in flight."""
    window = getattr(executor, "window", MAX_IN_FLIGHT)
    pending: dict[Future, tuple[AudioFile, ...]] = {}
    tasks = (tuple(files[i : i + per_task]) for i in range(0, len(files), max(1, per_task)))
    try:
        while True:
            for songs in tasks:
                pending[executor.submit(task, songs)] = songs
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from zip(pending.pop(future), future.result())
    finally:  # interrupted or failed: tasks not started are not started
        for future in pending:
            future.cancel()


def run(store: FeatureStore, files: Iterable[AudioFile], extractors: Sequence[Extractor],
        options: RunOptions = RunOptions(), reporter: Reporter | None = None,
        executor: Executor | None = None) -> Summary:
    """Extract every ``extractor`` for every file into ``store``.

    Every ``options.batch_songs`` consecutive songs (default 1) are one task for
    ``executor``; the songs of a task up to ``BATCH_SONG_MAX_S`` share model calls. No
    executor (or :class:`SyncExecutor`) runs the tasks here, one after another, with the
    extractors loaded on ``options.device`` and the next songs decoded ahead in a thread
    (:mod:`.prefetch`); a
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
    complete, the ones being computed are never marked complete; the reporter still gets the
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

    def run_pass(task: Callable[[Sequence[AudioFile]], list[SongOutcome]], batch: list[AudioFile]) -> list[AudioFile]:
        busy = []
        for file, outcome in _outcomes(executor, task, batch, options.batch_songs):
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
            loading = time.perf_counter()
            for ext in extractors:
                ext.load(options.device)
            summary.load_seconds = time.perf_counter() - loading
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
