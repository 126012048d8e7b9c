"""The song task: one object owns the sequence claim the lease → check the work under it → decode →
compute → hand each outcome to the writer → release the lease after the writes.

A task is a few consecutive songs of the plan (see ``RunOptions.batch_songs``). A song another live run
holds is left alone and reported busy; the run comes back to it once at the end. A song whose lease
cannot be taken because the network or the server failed (:class:`TransientStoreError`) is reported
failed, and the task goes on with the others. The lease of a song is released only when its arrays are
written (also after an interrupt or a failed write), so no write outlives the lease that guards it, and
the task's future is done at that moment.
"""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

from ..audio import SongAudio
from ..errors import TransientStoreError
from ..extractors.base import Extractor
from ..store import FeatureStore
from ..store.leases import Claim
from .compute import SidePool, compute_songs
from .options import RunOptions
from .planning import SongWork, sort_out
from .results import Result, SongOutcome
from .sink import Sink
from .writer import Writer, when_done


@dataclass(frozen=True)
class SongTask:
    """What every task of a run in one process shares: its store, run id, loaded models, writer and side pool."""

    store: FeatureStore
    run_id: str
    extractors: tuple[Extractor, ...]
    options: RunOptions
    failed: frozenset[tuple[str, str]]
    writer: Writer
    side: SidePool

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups this run writes to (its leases say so, for ``--overwrite`` of another run)."""
        return tuple(self.options.group(ext) for ext in self.extractors)

    def start(self, songs: Sequence[SongWork], audios: Sequence[SongAudio | None] | None = None) -> Future:
        """Claim, check and compute ``songs`` (``audios``: decoded ahead, or None) and queue their writes.

        Returns while the last arrays may still be written: the future of the songs'
        :class:`SongOutcome`\\ s is done once every write has ended and every lease is released; a
        StoreError from a write is its exception.
        """
        audios = list(audios or [None] * len(songs))
        results: list[list[Result]] = [[] for _ in songs]
        position = {work.file.song_id: i for i, work in enumerate(songs)}
        sink = Sink(self.store, self.options, self.writer, lambda r: results[position[r.song_id]].append(r))
        by_name = {ext.name: ext for ext in self.extractors}
        claims: list[Claim | None] = [None] * len(songs)
        seconds = [0.0] * len(songs)
        with ExitStack() as held:
            try:
                work = []
                for i, song in enumerate(songs):
                    try:
                        claim = claims[i] = held.enter_context(self.store.leases.claim(song.file.song_id, self.run_id,
                                                                                       self.groups))
                    except TransientStoreError as e:  # no lease, so nothing may be written for it: reported only
                        results[i].extend(Result(song.file.song_id, self.options.group(by_name[name]), "failed",
                                                 error=str(e), path=song.file.relative) for name in song.todo)
                        continue
                    if not claim.held:
                        continue
                    # decided again under the lease: another run may have finished the song since the plan
                    todo, cached = sort_out(self.store, song.file, [by_name[n] for n in song.todo], self.options,
                                            self.failed)
                    results[i].extend(song.cached + tuple(cached))
                    if todo:
                        work.append((i, todo))
                spent = compute_songs(sink, [(songs[i].file, todo, audios[i]) for i, todo in work], self.side,
                                      self.options.device)
                for (i, _), s in zip(work, spent):
                    seconds[i] = s
            finally:  # also when interrupted or the store failed: each lease goes once the queued writes end
                for claim in claims:
                    if claim is not None:
                        claim.release_after(list(sink.writes))

        def outcomes() -> list[SongOutcome]:
            for future in sink.writes:
                future.result()  # a StoreError stops the run
            return [SongOutcome(tuple(r), s, claim is not None and not claim.held)
                    for r, s, claim in zip(results, seconds, claims)]

        return when_done(list(sink.writes), outcomes)
