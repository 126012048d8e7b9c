"""What a run reports: one :class:`Result` per (song, model), the :class:`Summary` of the run, and the
:class:`Reporter` callbacks through which a run shows itself (the CLI draws progress with them; tests
collect events). The run never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ..discover import AudioFile

#: exit codes of a run, also those of ``fstore extract``
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LEFT_TO_ANOTHER_RUN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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


@dataclass(frozen=True)
class SongOutcome:
    """What one task did with one song (picklable, for worker processes)."""

    results: tuple[Result, ...]
    decode_seconds: float = 0.0
    busy: bool = False  # another live run holds the song


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

    run_id: str = ""  # the id its leases carry (``fstore leases --release RUN_ID`` frees them)
    totals: dict[str, ModelTotals] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    scan_errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) from discovery
    unavailable: dict[str, str] = field(default_factory=dict)  # model left out -> why its weights cannot be had
    unavailable_named: tuple[str, ...] = ()  # those of them the run was asked for by name: a failure
    decode_seconds: float = 0.0
    load_seconds: float = 0.0  # loading the models in this process (workers load their own)
    wall_seconds: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped early (the store could not be written, a model not loaded)
    mismatch: bool = False  # it stopped because its group has another configuration (replaced meanwhile)
    replaced: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> (arrays, failures) removed

    def add(self, r: Result) -> None:
        t = self.totals.setdefault(r.model, ModelTotals())
        setattr(t, r.status, getattr(t, r.status) + 1)
        t.seconds += r.seconds
        if r.status == "failed":
            self.failures.append(r)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.scan_errors and not self.interrupted and self.stopped is None

    @property
    def exit_code(self) -> int:
        """0 all done; 1 a file, a model's weights or the store failed; 2 its group has another configuration
        (another run replaced it meanwhile); 3 songs left to another live run (run again once it ends);
        130 interrupted."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.mismatch:
            return EXIT_USAGE
        if not self.ok or self.unavailable_named:
            return EXIT_FAILED
        if any(t.skipped for t in self.totals.values()):
            return EXIT_LEFT_TO_ANOTHER_RUN
        return EXIT_OK


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
