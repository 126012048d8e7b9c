"""Where a task's computed outcomes go: each (song, model) array is stored (or its failure recorded)
in the writer's threads, and its :class:`~.results.Result` handed on once the write has ended.

A store that cannot be written (read-only, disk full) raises :class:`StoreError`, which stops the
run; anything else that goes wrong writing one song fails that song only: an id that collides with
another song's folder, or a network or server failure past the client's retries
(:class:`TransientStoreError`, see :mod:`featurestore.store.remote`). Such a failure is recorded in the
store when the store takes the record, and is in the summary in any case.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..discover import AudioFile
from ..errors import FstoreError, StoreError, TransientStoreError
from ..export import write_npy
from ..extractors.base import Extractor
from ..store import FeatureStore
from ..store.attributes import array_attributes, group_attributes
from .options import RunOptions
from .results import Result
from .writer import Writer


@dataclass(frozen=True)
class Failed:
    """Why a (song, model) could not be computed."""

    reason: str
    error_type: str


@dataclass(frozen=True)
class Described:
    """What a stored array records of its song besides the features: the samples the model saw, the
    song's duration and its source file (None when the file could not be read at all)."""

    n_samples: int = 0
    duration_s: float | None = None
    source: dict[str, Any] | None = None


class Sink:
    """A task's outcomes, stored in ``writer``'s threads; ``on_result`` gets each Result once stored."""

    def __init__(self, store: FeatureStore, options: RunOptions, writer: Writer,
                 on_result: Callable[[Result], None]) -> None:
        self.store, self.options, self.writer, self.on_result = store, options, writer, on_result
        self.writes: list[Future] = []
        self._lock = threading.Lock()  # the threads of CPU-only models beside a GPU put too

    def put(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | Failed, seconds: float,
            described: Described) -> None:
        """Queue the write of ``outcome`` (the array, or the failure to record); ``seconds`` it took to compute.

        Raises the StoreError of an earlier write, so a store that cannot be written stops the task
        before more is computed.
        """
        nbytes = outcome.nbytes if isinstance(outcome, np.ndarray) else 0
        future = self.writer.submit(nbytes, self._store, file, ext, outcome, seconds, described)
        with self._lock:
            self.writes.append(future)

    def _store(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | Failed, seconds: float,
               described: Described) -> None:
        self.on_result(store_outcome(self.store, self.options, file, ext, outcome, seconds, described))


def store_outcome(store: FeatureStore, options: RunOptions, file: AudioFile, ext: Extractor,
                  outcome: np.ndarray | Failed, seconds: float, described: Described) -> Result:
    """Write one (song, model)'s array (and its .npy copy), or record its failure; its result.

    A StoreError propagates: the store cannot be written, so the run stops. A TransientStoreError fails
    this song: its failure is recorded if the store takes it, and reported in any case.
    """
    group = options.group(ext)
    t = time.perf_counter()
    if isinstance(outcome, Failed):
        error = outcome.reason
        try:
            store.record_failure(group, file.song_id, outcome.reason, outcome.error_type, described.source)
        except TransientStoreError as e:
            error = f"{outcome.reason}; not recorded in the store ({e})"
        return Result(file.song_id, group, "failed", seconds, error=error, path=file.relative)
    try:
        description = ext.describe()
        # under the song's lease: a group replaced meanwhile with another configuration never gets this array
        store.check_configuration(group, group_attributes(description, group, options.dtype))
        attrs = array_attributes(description, ext.dims, outcome.shape, described.n_samples,
                                 described.duration_s or 0.0, described.source or {}, options.dtype)
        # an earlier failure is forgotten first: should the write then fail, that failure is recorded instead,
        # and a complete array never stands beside a failure record
        store.clear_failure(group, file.song_id)
        store.write(group, file.song_id, outcome, attrs)
    except (FstoreError, OSError, ValueError) as e:
        if isinstance(e, StoreError) and not isinstance(e, TransientStoreError):
            raise  # the store cannot be written: the run stops
        failed = Failed(str(e), type(e).__name__)  # this song only, also when the network or the server failed
        return store_outcome(store, options, file, ext, failed, seconds + time.perf_counter() - t, described)
    seconds += time.perf_counter() - t
    result = Result(file.song_id, group, "done", seconds, outcome.shape, described.duration_s, path=file.relative,
                    frame_rate_hz=ext.time_axis.frame_rate_hz)
    if options.output_base is not None:
        try:
            write_npy(options.output_base, group, file.song_id, outcome)
        except OSError as e:  # the store holds the result: only the copy failed
            return replace(result, status="failed", error=f"stored, but the .npy export failed: {e}")
    return result
