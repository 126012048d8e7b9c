"""What a run has to do: one function, :func:`decide`, says whether a (song, model) pair is cached,
to compute, or outside the run; it is called twice at most per pair: when the run is planned, and
again under the song's lease, since another run may have finished the song meanwhile.

A pair is cached when its array is complete, was computed with the same configuration (fingerprint
and storage dtype) and its audio file is unchanged (:func:`~featurestore.discover.source_unchanged`:
by size and mtime, or by sha256 with ``hash_sources``).
A pair whose array cannot be read because the network or the server failed is to compute: decided
again under the lease, and at worst computed again, never taken as cached unseen.
With ``retry_failed`` only the pairs whose failure is recorded in the store are in the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..discover import AudioFile, source_unchanged
from ..errors import TransientStoreError
from ..extractors.base import Extractor
from ..store import FeatureStore
from .options import RunOptions
from .results import Result

COMPUTE, CACHED, OUTSIDE = "compute", "cached", "outside"


def recorded_failures(store: FeatureStore, options: RunOptions) -> frozenset[tuple[str, str]]:
    """(group, song) pairs whose failure is recorded, when the run only retries those (else empty)."""
    if not options.retry_failed:
        return frozenset()
    return frozenset((f["model"], f["song_id"]) for f in store.failures())


def decide(store: FeatureStore, file: AudioFile, ext: Extractor, options: RunOptions,
           failed: frozenset[tuple[str, str]]) -> str:
    """:data:`COMPUTE`, :data:`CACHED` or :data:`OUTSIDE` (not retried: no failure recorded) for one pair."""
    group = options.group(ext)
    if options.retry_failed and (group, file.song_id) not in failed:
        return OUTSIDE
    if options.overwrite or not options.skip_existing:
        return COMPUTE
    try:
        attrs = store.song_attrs(group, file.song_id)
    except TransientStoreError:
        return COMPUTE
    cached = (attrs is not None and attrs.get("complete") is True and attrs.get("fingerprint") == ext.fingerprint
              and attrs.get("dtype", "float32") == options.dtype
              and source_unchanged(file, attrs.get("source"), options.hash_sources))
    return CACHED if cached else COMPUTE


@dataclass(frozen=True)
class SongWork:
    """One song with something to compute: the models (by name) it needs, and the cached results of the others."""

    file: AudioFile
    todo: tuple[str, ...]
    cached: tuple[Result, ...] = ()


def sort_out(store: FeatureStore, file: AudioFile, extractors: Sequence[Extractor], options: RunOptions,
             failed: frozenset[tuple[str, str]]) -> tuple[list[Extractor], list[Result]]:
    """The models ``file`` still needs, and a "cached" result for each of the others in the run."""
    todo, cached = [], []
    for ext in extractors:
        action = decide(store, file, ext, options, failed)
        if action == COMPUTE:
            todo.append(ext)
        elif action == CACHED:
            cached.append(Result(file.song_id, options.group(ext), "cached", path=file.relative))
    return todo, cached


@dataclass(frozen=True)
class Plan:
    """A run's work before it starts, per group: the pairs to compute and the cached ones."""

    compute: dict[str, int]
    cached: dict[str, int]
    songs: dict[str, list[tuple[str, str]]] = field(default_factory=dict, compare=False)  # group -> (song, action)
    work: tuple[SongWork, ...] = field(default=(), compare=False)  # songs with something to compute, in order
    done: tuple[SongWork, ...] = field(default=(), compare=False)  # songs with nothing to compute (cached results)

    @property
    def songs_to_compute(self) -> int:
        return len(self.work)


def plan(store: FeatureStore | None, files: Sequence[AudioFile], extractors: Sequence[Extractor],
         options: RunOptions = RunOptions()) -> Plan:
    """Sort out every (song, model) before a run: one attribute read per pair; nothing is written.

    ``store=None`` stands for a store that does not exist yet: everything is to compute.
    """
    failed = recorded_failures(store, options) if store is not None else frozenset()
    groups = [options.group(e) for e in extractors]
    compute, cached = dict.fromkeys(groups, 0), dict.fromkeys(groups, 0)
    songs: dict[str, list[tuple[str, str]]] = {g: [] for g in groups}
    work, done = [], []
    for file in files:
        todo, hits = sort_out(store, file, extractors, options, failed) if store is not None else (list(extractors), [])
        for ext in todo:
            compute[options.group(ext)] += 1
            songs[options.group(ext)].append((file.song_id, COMPUTE))
        for r in hits:
            cached[r.model] += 1
            songs[r.model].append((file.song_id, CACHED))
        (work if todo else done).append(SongWork(file, tuple(e.name for e in todo), tuple(hits)))
    return Plan(compute, cached, songs, tuple(work), tuple(done))
