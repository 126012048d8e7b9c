"""Decode and resample the next songs in a background thread while the current one computes.

A run in one process computes songs in order; without this, the models (on a GPU above all)
wait while each song is decoded and resampled. :class:`Prefetcher` walks the same list a
little ahead: at most ``depth`` songs, and past the first of them no more than
``budget_bytes`` of audio, so memory stays bounded whatever the songs' lengths. Decoding
runs in C (libsndfile, FFmpeg, soxr) with the GIL released, so it overlaps the models'
compute. The songs are the plan's (each with something to compute), so the prefetcher never
asks the store anything; a decode failure is kept in its :class:`~featurestore.audio.SongAudio`
for the task to report as usual.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from ..audio import SongAudio
from .planning import SongWork

#: songs decoded ahead of the one being computed
DEPTH = 2
#: audio held ahead (decoded + resampled), beyond the first song ahead: 1 GiB
BUDGET_BYTES = 1 << 30


class Prefetcher:
    """``songs`` decoded and resampled ahead, handed out in order by :meth:`take`.

    ``rates(song)`` says which sample rates a song will be needed at. It runs in the prefetch thread.
    """

    def __init__(self, songs: Sequence[SongWork], rates: Callable[[SongWork], Sequence[int]],
                 depth: int = DEPTH, budget_bytes: int = BUDGET_BYTES) -> None:
        self._songs = list(songs)
        self._rates = rates
        self._depth, self._budget = depth, budget_bytes
        self._ready: dict[int, SongAudio | None] = {}
        self._taken = 0  # index of the next song the consumer takes
        self._held = 0  # bytes of audio prepared and not taken yet
        self._closed = False
        self._finished = False
        self._failure: BaseException | None = None
        self._cond = threading.Condition()
        #: set while the thread waits for the consumer to take songs (it is as far ahead as it may be), and once
        #: it has nothing left to do
        self.waiting = threading.Event()
        self._thread = threading.Thread(target=self._work, name="fstore-prefetch", daemon=True)
        self._thread.start()

    def _room(self, index: int) -> bool:
        ahead = index - self._taken
        return self._closed or ahead < 1 or (ahead < self._depth and self._held < self._budget)

    def _work(self) -> None:
        try:
            for index, song in enumerate(self._songs):
                with self._cond:
                    while not self._room(index):
                        self.waiting.set()
                        self._cond.wait()
                    if self._closed:
                        return
                audio = SongAudio(song.file.path)
                audio.prepare(self._rates(song))
                with self._cond:
                    self._ready[index] = audio
                    self._held += audio.nbytes
                    self._cond.notify_all()
        except Exception as e:  # unexpected: the consumer decodes (and meets the error) on its own
            with self._cond:
                self._failure = e
                self._cond.notify_all()
        finally:
            with self._cond:
                self._finished = True
                self.waiting.set()

    def take(self, song: SongWork) -> SongAudio | None:
        """The prepared audio of ``song`` if it is the next song in order, else None (decode it yourself).

        None also when prefetching stopped.
        """
        with self._cond:
            index = self._taken
            if index >= len(self._songs) or self._songs[index] is not song:
                return None
            self._cond.wait_for(lambda: index in self._ready or self._failure is not None or self._closed)
            self._taken += 1
            audio = self._ready.pop(index, None)
            self._held -= audio.nbytes if audio is not None else 0
            if not self._finished:
                self.waiting.clear()  # there is room again: the thread goes on
            self._cond.notify_all()
            return audio

    def close(self) -> None:
        """Stop the thread (it finishes the song it is decoding) and drop what was prepared."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
