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
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from .audio import SongAudio
from .discover import AudioFile, source_info, source_unchanged
from .errors import AudioError, AudioTooShort, FstoreError, InvalidSongId, StoreError
from .export import write_npy
from .extractors.base import Extractor, ExtractorConfig, TorchExtractor
from .prefetch import Prefetcher
from .store import FeatureStore
from .writer import Writer, when_done

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


@dataclass(frozen=True)
class _Failed:
    """Why a (song, model) could not be computed."""

    reason: str
    error_type: str


class _Sink:
    """Where a task's computed (song, model) outcomes go: stored in ``writer``'s threads, each
    :class:`Result` handed to ``on_result`` once its write has ended."""

    def __init__(self, store: FeatureStore, options: RunOptions, writer: Writer,
                 on_result: Callable[[Result], None]) -> None:
        self.store, self.options, self.writer, self.on_result = store, options, writer, on_result
        self.writes: list[Future] = []
        self._lock = threading.Lock()  # the threads of CPU-only models beside a GPU put too

    def put(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | _Failed, seconds: float,
            song: _Song | None = None, source: dict[str, Any] | None = None) -> None:
        """Queue the write of ``outcome`` (the array, or the failure to record); ``seconds`` it took to compute.

        Raises the StoreError of an earlier write, so a store that cannot be written stops the
        task before more is computed. ``song`` gives the array's attributes (its audio is not kept); a file that could not be
        decoded has none, only the ``source`` it was read from, if that much was known.
        """
        n_samples = int(song.audio.at(ext.time_axis.sample_rate).shape[0]) if song is not None else 0
        described = (song.duration, song.source) if song is not None else (None, source)
        nbytes = outcome.nbytes if isinstance(outcome, np.ndarray) else 0
        future = self.writer.submit(nbytes, self._store, file, ext, outcome, seconds, n_samples, *described)
        with self._lock:
            self.writes.append(future)

    def _store(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | _Failed, seconds: float,
               n_samples: int, duration: float | None, source: dict[str, Any] | None) -> None:
        self.on_result(_store_outcome(self.store, self.options, file, ext, outcome, seconds, n_samples, duration,
                                      source))


def _store_outcome(store: FeatureStore, options: RunOptions, file: AudioFile, ext: Extractor,
                   outcome: np.ndarray | _Failed, seconds: float, n_samples: int, duration: float | None,
                   source: dict[str, Any] | None) -> Result:
    """Write one (song, model)'s array (and its .npy copy), or record its failure; its result.

    A StoreError propagates: the store cannot be written, so the run stops.
    """
    group = options.group(ext)
    t = time.perf_counter()
    if isinstance(outcome, _Failed):
        store.record_failure(group, file.song_id, outcome.reason, outcome.error_type, source)
        return Result(file.song_id, group, "failed", seconds, error=outcome.reason, path=file.relative)
    try:
        attrs = song_attrs(ext, n_samples, duration or 0.0, source or {}, options.dtype)
        store.write(group, file.song_id, outcome, ext.dims, attrs, dtype=options.dtype)
        store.clear_failure(group, file.song_id)
    except StoreError:
        raise
    except (InvalidSongId, FstoreError, OSError, ValueError) as e:
        failed = _Failed(str(e), type(e).__name__)
        return _store_outcome(store, options, file, ext, failed, seconds + time.perf_counter() - t, n_samples,
                              duration, source)
    seconds += time.perf_counter() - t
    result = Result(file.song_id, group, "done", seconds, outcome.shape, duration, path=file.relative,
                    frame_rate_hz=ext.time_axis.frame_rate_hz)
    if options.output_base is not None:
        try:
            write_npy(options.output_base, group, file.song_id, outcome)
        except OSError as e:  # the store holds the result: only the copy failed
            return replace(result, status="failed", error=f"stored, but the .npy export failed: {e}")
    return result


def process_song(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
                 on_result: Callable[[Result], None], audio: SongAudio | None = None) -> float:
    """Decode one file once and run every model that needs it; return the decode + resample seconds.

    ``audio`` is the song already decoded ahead (see :mod:`.prefetch`), or None to decode it here.
    Every array is written when this returns.
    """
    return process_songs(store, [(file, extractors, audio)], options, on_result)[0]


def process_songs(store: FeatureStore, songs: Sequence[tuple[AudioFile, Sequence[Extractor], SongAudio | None]],
                  options: RunOptions, on_result: Callable[[Result], None]) -> list[float]:
    """Decode each song once and run every model each needs; return each song's decode + resample seconds.

    Each song comes with the models it needs and its audio if decoded ahead (else None); see
    :func:`_compute_songs`. Every array is written when this returns.
    """
    with Writer() as writer:
        sink = _Sink(store, options, writer, on_result)
        seconds = _compute_songs(sink, songs)
    for future in sink.writes:
        future.result()  # a StoreError stops the caller
    return seconds


def _compute_songs(sink: _Sink, songs: Sequence[tuple[AudioFile, Sequence[Extractor], SongAudio | None]]) -> list[float]:
    """Decode each song once and compute every model it needs, each outcome put in ``sink``; each song's decode seconds.

    A file that cannot be read or decoded is one failure per model that needed it. Songs up to
    ``BATCH_SONG_MAX_S`` share model calls (:meth:`Extractor.extract_batch`); a longer song runs
    alone as soon as it is decoded, so a task holds the audio of one long song at a time. Models
    that do not run on the run's device (CPU-only ones, while torch models use a GPU) run in
    threads beside the others, one song per call, so the GPU does not wait for them.
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
            failed = _Failed(e.reason if isinstance(e, AudioError) else f"cannot read ({e})", type(e).__name__)
            for ext in todo:
                sink.put(file, ext, failed, 0.0, source=source)
            seconds[index] = audio.seconds
            continue
        song = _Song(file, todo, audio, duration, source)
        if len(songs) > 1 and duration <= BATCH_SONG_MAX_S:
            batch.append((index, song))
        else:  # a long song goes alone, and its audio is let go before the next is decoded
            _run_models([song], sink)
            seconds[index] = audio.seconds
    if batch:
        _run_models([song for _, song in batch], sink)
        for index, song in batch:
            seconds[index] = song.audio.seconds
    return seconds


def _run_models(songs: Sequence[_Song], sink: _Sink) -> None:
    """Every model the decoded ``songs`` need, the songs of each model together (see :func:`_compute_songs`)."""
    models = list(dict.fromkeys(ext for song in songs for ext in song.todo))

    def compute(ext: Extractor) -> None:
        _compute_model(ext, [song for song in songs if ext in song.todo], sink)

    beside = [e for e in models if not runs_on(e, sink.options.device)]
    if beside:
        for song in songs:
            for rate in {e.time_axis.sample_rate for e in song.todo}:
                song.audio.at(rate)  # resampled here, before two threads read the copies
        # one song per call, so the songs spread over the pool's threads (onnxruntime and numpy release the GIL)
        pending = [_beside_pool().submit(_compute_model, ext, [song], sink)
                   for ext in beside for song in songs if ext in song.todo]
        try:
            for ext in models:
                if ext not in beside:
                    compute(ext)
        finally:  # also when interrupted: every write is queued before the task ends
            wait(pending)
        for future in pending:
            future.result()
        return
    for i, ext in enumerate(models):
        compute(ext)
        later = {e.time_axis.sample_rate for e in models[i + 1 :]}
        if ext.time_axis.sample_rate not in later:
            for song in songs:
                song.audio.forget(ext.time_axis.sample_rate)  # long songs: hold one resampled copy at a time


def _compute_model(ext: Extractor, songs: Sequence[_Song], sink: _Sink) -> None:
    """One model on songs: several in one ``extract_batch`` call, one alone through ``extract``.

    If the shared call fails (one song too short, out of memory), each song is computed on its
    own, so the failure is recorded for the song that caused it only.
    """
    rate = ext.time_axis.sample_rate
    if len(songs) > 1:
        t = time.perf_counter()
        try:
            outputs = ext.extract_batch([song.audio.at(rate) for song in songs])
        except _COMPUTE_ERRORS:
            pass  # one at a time below
        else:
            share = (time.perf_counter() - t) / len(songs)
            for song, data in zip(songs, outputs):
                sink.put(song.file, ext, data, share, song)
            return
    for song in songs:
        t = time.perf_counter()
        outcome: np.ndarray | _Failed
        try:
            outcome = ext.extract(song.audio.at(rate))
        except _COMPUTE_ERRORS as e:
            outcome = _Failed(e.reason if isinstance(e, AudioError) else str(e), type(e).__name__)
        sink.put(song.file, ext, outcome, time.perf_counter() - t, song)


#: what computing one song may raise that fails that song only
_COMPUTE_ERRORS = (AudioError, AudioTooShort, FstoreError, OSError, ValueError, RuntimeError, MemoryError)


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


@dataclass(frozen=True)
class SongOutcome:
    """What one worker did with one song (picklable, for executors)."""

    results: tuple[Result, ...]
    decode_seconds: float = 0.0
    busy: bool = False  # another live run holds the song


def work_on_songs(store: FeatureStore, files: Sequence[AudioFile], extractors: Sequence[Extractor],
                  options: RunOptions, failed: frozenset[tuple[str, str]], run_id: str,
                  audios: Sequence[SongAudio | None] | None = None) -> list[SongOutcome]:
    """Skip, or claim under ``run_id`` and process, the songs of one task; every array is written when it returns."""
    with Writer() as writer:
        outcomes = start_songs(store, files, extractors, options, failed, run_id, writer, audios)
    return outcomes.result()


def start_songs(store: FeatureStore, files: Sequence[AudioFile], extractors: Sequence[Extractor],
                options: RunOptions, failed: frozenset[tuple[str, str]], run_id: str, writer: Writer,
                audios: Sequence[SongAudio | None] | None = None) -> Future:
    """Skip, or claim under ``run_id`` and compute, the songs of one task (``audios``: decoded ahead, or None).

    The arrays are written in ``writer``'s threads, so this returns while the last ones may still
    be written: the future of the songs' outcomes is done once every write has ended and the
    leases are released (also after an interrupt); a StoreError from a write is its exception.
    """
    audios = audios or [None] * len(files)
    position = {file.song_id: i for i, file in enumerate(files)}
    results: list[list[Result]] = [[] for _ in files]
    busy = [False] * len(files)
    seconds = [0.0] * len(files)
    held: list[AudioFile] = []
    sink = _Sink(store, options, writer, lambda r: results[position[r.song_id]].append(r))

    def release() -> None:
        for file in held:
            store.release(file.song_id, run_id)

    def finish() -> list[SongOutcome]:
        release()
        for future in sink.writes:
            future.result()  # a StoreError stops the run
        return [SongOutcome(tuple(r), s, b) for r, s, b in zip(results, seconds, busy)]

    try:
        work: list[tuple[int, list[Extractor]]] = []
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
        spent = _compute_songs(sink, [(files[i], todo, audios[i]) for i, todo in work])
        for (i, _), s in zip(work, spent):
            seconds[i] = s
    except BaseException:  # interrupted, or the store failed: the leases go once the queued writes have ended
        when_done(list(sink.writes), release)
        raise
    return when_done(list(sink.writes), finish)


class SyncExecutor(Executor):
    """Runs each task when it is submitted, in this process: the in-process run is an executor too.

    A task may return a future instead of its result (its arrays are still being written
    behind it, see :func:`start_songs`): that future is the task's.
    """

    # the next task computes while the last one's arrays are written; results stream, and Ctrl-C
    # loses the computing task's songs only (the written ones are reported)
    window = 2

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            value = fn(*args, **kwargs)
        except Exception as e:  # a task's error travels in its future, as in any executor
            future.set_exception(e)
            return future
        if isinstance(value, Future):
            return value
        future.set_result(value)
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
    writer: Writer
    prefetcher: Prefetcher | None = None

    def __call__(self, files: Sequence[AudioFile]) -> Future:
        """The future of the songs' outcomes, done once their arrays are written (see :func:`start_songs`)."""
        audios = [self.prefetcher.take(file) if self.prefetcher is not None else None for file in files]
        return start_songs(self.store, files, self.extractors, self.run.options, self.run.failed, self.run.run_id,
                           self.writer, audios)

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
            _worker_stores[key] = FeatureStore(run.url, mode="r+", storage_options=run.storage_options)
        extractors = []
        for name, config in run.specs:
            mkey = (name, repr(config), run.options.device)
            if mkey not in _worker_models:
                ext = registry.get(name)(config)
                ext.load(run.options.device)
                _worker_models[mkey] = ext
            extractors.append(_worker_models[mkey])
        return _worker_stores[key], tuple(extractors)


def _run_tasks(executor: Executor, task: Callable[[Sequence[AudioFile]], Any], files: Sequence[AudioFile],
               per_task: int, on_outcome: Callable[[AudioFile, SongOutcome], None]) -> None:
    """Run ``files`` as tasks of ``per_task`` songs, at most the executor's ``window`` in flight; each
    (file, outcome) goes to ``on_outcome`` in completion order.

    Interrupted or failed, tasks not started are not started. In this process
    (:class:`SyncExecutor`) the tasks in flight are only writing: they end, and are reported.
    """
    window = getattr(executor, "window", MAX_IN_FLIGHT)
    pending: dict[Future, tuple[AudioFile, ...]] = {}
    tasks = (tuple(files[i : i + per_task]) for i in range(0, len(files), max(1, per_task)))

    def report(future: Future) -> None:
        for file, outcome in zip(pending.pop(future), future.result()):
            on_outcome(file, outcome)

    try:
        while True:
            for songs in tasks:
                pending[executor.submit(task, songs)] = songs
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in [f for f in pending if f in done]:  # in submission order
                report(future)
    finally:
        if isinstance(executor, SyncExecutor):
            for future in list(pending):
                if future.exception() is None:  # waits for its writes
                    report(future)
        for future in pending:
            future.cancel()


def run(store: FeatureStore, files: Iterable[AudioFile], extractors: Sequence[Extractor],
        options: RunOptions = RunOptions(), reporter: Reporter | None = None,
        executor: Executor | None = None) -> Summary:
    """Extract every ``extractor`` for every file into ``store``.

    Every ``options.batch_songs`` consecutive songs (default 1) are one task for
    ``executor``; the songs of a task up to ``BATCH_SONG_MAX_S`` share model calls. No
    executor (or :class:`SyncExecutor`) runs the tasks here, one after another, with the
    extractors loaded on ``options.device``, the next songs decoded ahead in a thread
    (:mod:`.prefetch`) and the arrays written behind the compute (:mod:`.writer`); a
    ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, or a Dask cluster's
    ``client.get_executor()``) runs them in workers, which load the models once per process
    and write their songs' arrays to the store themselves (so the store URL and the audio
    paths must be reachable from them). Every task carries this run's id, so the leases it
    takes are this run's wherever it runs.

    Model groups are written first. Each song is claimed with a lease in the store while it
    is processed, so concurrent runs on one store share the work: a song another live run
    holds is retried once at the end, then reported as skipped ("in progress in another
    run"); leases of dead processes are taken over.

    KeyboardInterrupt (also while models load) stops the run: arrays already computed are
    written (and reported), the ones being computed are never marked complete; the reporter still gets the
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

    def run_pass(task: Callable[[Sequence[AudioFile]], Any], batch: list[AudioFile]) -> list[AudioFile]:
        busy = []

        def on_outcome(file: AudioFile, outcome: SongOutcome) -> None:
            summary.decode_seconds += outcome.decode_seconds
            for r in outcome.results:
                report(r)
            if outcome.busy:
                busy.append(file)
            else:
                reporter.song_done(file)

        _run_tasks(executor, task, batch, options.batch_songs, on_outcome)
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
            # the next songs are decoded while one computes, and the last one's arrays are written (the writer's
            # exit waits for them, also after an interrupt); songs another run held are retried without prefetch
            with Writer() as writer:
                local = _LocalTask(shared, store, tuple(extractors), writer)
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
