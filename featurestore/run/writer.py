"""Write songs' arrays behind compute, in threads, so the models do not wait while outputs are stored.

On a CPU a 30-s clip spends ~25 s in the models and ~0.1 s storing their outputs; on a GPU
the models take a fraction of a second and storing is as long again (compressing MERT's
2250 x 768 floats alone takes ~0.08 s; all 13 of its layers ~0.7 s). A :class:`Writer` runs the
store writes in its own threads while the next models compute. Every job says how many bytes it
holds; :meth:`Writer.submit` waits while more than ``budget_bytes`` are queued (one job is always
let in), so memory stays bounded whatever the songs' lengths. Compression (zstd) and file I/O
release the GIL, so the writes overlap the compute.

A :class:`~featurestore.errors.StoreError` (disk full, store unwritable) ends the writing: the
jobs after it do not run and fail with the same error, and later submits raise it, as a run
that writes in line stops at its first failed write.

:func:`when_done` runs a function once given jobs have ended: the pipeline releases a song's
lease there, so no write outlives the lease that guards it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..errors import StoreError

#: output bytes queued for writing before a submit waits: 1 GiB
BUDGET_BYTES = 1 << 30


def writer_threads(cores: int | None = None) -> int:
    """Threads that write: one per 8 cores, 1 to 4 (one keeps up with a GPU's default outputs)."""
    from ..devices import usable_cores

    cores = usable_cores() if cores is None else cores
    return max(1, min(4, cores // 8))


class Writer:
    """Threads that run store writes in the background; use as a context manager (exit waits for every job)."""

    def __init__(self, threads: int | None = None, budget_bytes: int = BUDGET_BYTES) -> None:
        self._pool = ThreadPoolExecutor(threads or writer_threads(), thread_name_prefix="fstore-writer")
        self._budget = budget_bytes
        self._queued = 0  # bytes held by jobs not finished yet
        self._cond = threading.Condition()
        self._failed: StoreError | None = None  # the store failed: no later job runs

    def submit(self, nbytes: int, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in a writer thread; waits first while more than the budget is queued.

        ``nbytes``: the memory the job holds until it ends (the array it writes). Raises the
        StoreError of an earlier job: the store cannot be written, so nothing more is computed for it.
        """
        if self._failed is not None:
            raise self._failed
        with self._cond:
            self._cond.wait_for(lambda: self._queued == 0 or self._queued + nbytes <= self._budget)
            self._queued += nbytes
        try:
            return self._pool.submit(self._job, nbytes, fn, *args)
        except BaseException:
            self._release(nbytes)
            raise

    def _job(self, nbytes: int, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            if self._failed is not None:
                raise self._failed
            return fn(*args)
        except StoreError as e:
            self._failed = e
            raise
        finally:
            self._release(nbytes)

    def _release(self, nbytes: int) -> None:
        with self._cond:
            self._queued -= nbytes
            self._cond.notify_all()

    @property
    def queued_bytes(self) -> int:
        """Bytes held by jobs not finished yet."""
        with self._cond:
            return self._queued

    def close(self) -> None:
        """Wait for every job submitted (also after an interrupt: what was computed is stored)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def when_done(futures: Sequence[Future], fn: Callable[[], Any]) -> Future:
    """A future of ``fn()``, called once every one of ``futures`` is done (at once if there are none).

    ``fn`` runs in the thread that finished the last of them, and it runs even if the returned
    future was cancelled meanwhile (it releases leases: that must happen whatever the caller does).
    """
    result: Future = Future()
    remaining = len(futures)
    lock = threading.Lock()

    def finish() -> None:
        try:
            value = fn()
        except Exception as e:
            _settle(result.set_exception, e)
        else:
            _settle(result.set_result, value)

    def one_done(_: Future) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            last = remaining == 0
        if last:
            finish()

    if not futures:
        finish()
    for future in futures:
        future.add_done_callback(one_done)
    return result


def _settle(setter: Callable[[Any], None], value: Any) -> None:
    """Set a future's outcome unless it was cancelled (nobody waits for it then)."""
    try:
        setter(value)
    except InvalidStateError:
        pass


__all__ = ["BUDGET_BYTES", "Writer", "when_done", "writer_threads"]
