"""Computing a task's songs: decode each once, run every model it needs, put each outcome in the sink.

Songs up to :data:`BATCH_SONG_MAX_S` share model calls (:meth:`Extractor.extract_batch`); a longer song
runs alone as soon as it is decoded, so a task holds the audio of one long song at a time. Models that
cannot run on the run's device (CPU-only ones, such as madmom, while the torch models use a GPU) run
beside the others in a :class:`SidePool`, one song per call, so the GPU does not wait for them.

Each outcome goes to an :class:`Outcomes`: a run's :class:`~.sink.Sink` stores it; ``fstore verify``
compares it with what is stored, having computed it exactly as a run does.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..audio import SongAudio
from ..discover import AudioFile, source_info
from ..errors import AudioError, AudioTooShort, FstoreError
from ..extractors.base import Extractor
from .sink import Described, Failed

#: songs up to this long share model calls with the other songs of their task; longer ones fill batches alone
BATCH_SONG_MAX_S = 60.0
#: what computing one song may raise that fails that song only
COMPUTE_ERRORS = (AudioError, AudioTooShort, FstoreError, OSError, ValueError, RuntimeError, MemoryError)


class Outcomes(Protocol):
    """Where computed outcomes go (a run's Sink); called from the side pool's threads too."""

    def put(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | Failed, seconds: float,
            described: Described) -> None:
        """Take the outcome of (song, model): its array or why it failed, its compute seconds, its song."""


def runs_on(ext: Extractor, device: str) -> bool:
    """Whether ``ext`` computes on ``device``: it does when the device's kind is one it declares."""
    return device.split(":")[0] in ext.devices


class SidePool:
    """Threads for the CPU-only models of songs whose other models use a GPU: half the cores, 1 to 8.

    madmom costs ~0.27 s of one core per 30-s clip, more than a GPU spends on the other three
    models, so one thread would set the pace of a GPU run. Made on first use; :meth:`shutdown` ends it.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, *args: Any) -> Any:
        if self._pool is None:
            from ..devices import usable_cores

            self._pool = ThreadPoolExecutor(max(1, min(8, usable_cores() // 2)), thread_name_prefix="fstore-cpu-models")
        return self._pool.submit(*args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass(eq=False)
class DecodedSong:
    """A decoded song of a task and the models it needs."""

    file: AudioFile
    todo: Sequence[Extractor]
    audio: SongAudio
    duration: float
    source: dict[str, Any]

    def described(self, ext: Extractor) -> Described:
        return Described(int(self.audio.at(ext.time_axis.sample_rate).shape[0]), self.duration, self.source)


def compute_songs(sink: Outcomes, songs: Sequence[tuple[AudioFile, Sequence[Extractor], SongAudio | None]],
                  side: SidePool, device: str) -> list[float]:
    """Decode each song once (``SongAudio`` decoded ahead, or None) and compute every model it needs on
    ``device``, each outcome put in ``sink``; returns each song's decode + resample seconds.

    A file that cannot be read or decoded is one failure per model that needed it.
    """
    seconds = [0.0] * len(songs)
    batch: list[tuple[int, DecodedSong]] = []
    for index, (file, todo, audio) in enumerate(songs):
        audio = audio if audio is not None else SongAudio(file.path)
        source: dict[str, Any] | None = None
        try:
            source = source_info(file)
            duration = audio.duration_s  # decodes (or raises the failure of a decode ahead)
            source["decoder"] = audio.audio.decoder
        except (AudioError, OSError) as e:
            failed = Failed(e.reason if isinstance(e, AudioError) else f"cannot read ({e})", type(e).__name__)
            for ext in todo:
                sink.put(file, ext, failed, 0.0, Described(source=source))
            seconds[index] = audio.seconds
            continue
        song = DecodedSong(file, todo, audio, duration, source)
        if len(songs) > 1 and duration <= BATCH_SONG_MAX_S:
            batch.append((index, song))
        else:  # a long song goes alone, and its audio is let go before the next is decoded
            _run_models([song], sink, side, device)
            seconds[index] = audio.seconds
    if batch:
        _run_models([song for _, song in batch], sink, side, device)
        for index, song in batch:
            seconds[index] = song.audio.seconds
    return seconds


def _run_models(songs: Sequence[DecodedSong], sink: Outcomes, side: SidePool, device: str) -> None:
    """Every model the decoded ``songs`` need, the songs of each model together."""
    models = list(dict.fromkeys(ext for song in songs for ext in song.todo))
    beside = [e for e in models if not runs_on(e, device)]
    if beside:
        for song in songs:
            for rate in {e.time_axis.sample_rate for e in song.todo}:
                song.audio.at(rate)  # resampled here, before two threads read the copies
        # one song per call, so the songs spread over the pool's threads (onnxruntime and numpy release the GIL)
        pending = [side.submit(_compute_model, ext, [song], sink) for ext in beside for song in songs if ext in song.todo]
        try:
            for ext in models:
                if ext not in beside:
                    _compute_model(ext, [song for song in songs if ext in song.todo], sink)
        finally:  # also when interrupted: every write is queued before the task ends
            wait(pending)
        for future in pending:
            future.result()
        return
    for i, ext in enumerate(models):
        _compute_model(ext, [song for song in songs if ext in song.todo], sink)
        later = {e.time_axis.sample_rate for e in models[i + 1 :]}
        if ext.time_axis.sample_rate not in later:
            for song in songs:
                song.audio.forget(ext.time_axis.sample_rate)  # long songs: hold one resampled copy at a time


def _compute_model(ext: Extractor, songs: Sequence[DecodedSong], sink: Outcomes) -> None:
    """One model on songs: several in one ``extract_batch`` call, one alone through ``extract``.

    If the shared call fails (one song too short, out of memory), each song is computed on its
    own, so the failure is recorded for the song that caused it only.
    """
    rate = ext.time_axis.sample_rate
    if len(songs) > 1:
        t = time.perf_counter()
        try:
            outputs = ext.extract_batch([song.audio.at(rate) for song in songs])
        except COMPUTE_ERRORS:
            pass  # one at a time below
        else:
            share = (time.perf_counter() - t) / len(songs)
            for song, data in zip(songs, outputs):
                sink.put(song.file, ext, data, share, song.described(ext))
            return
    for song in songs:
        t = time.perf_counter()
        outcome: np.ndarray | Failed
        try:
            outcome = ext.extract(song.audio.at(rate))
        except COMPUTE_ERRORS as e:
            outcome = Failed(e.reason if isinstance(e, AudioError) else str(e), type(e).__name__)
        sink.put(song.file, ext, outcome, time.perf_counter() - t, song.described(ext))
