"""How a run shows itself: progress bars on a terminal, one line per song in a log, a summary.

A run reports through the :class:`~featurestore.run.Reporter` callbacks; these are the CLI's
implementations. Everything goes to standard error except the ``--json`` summary, which goes
to standard output so that it can be piped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class RichReporter:
    """Progress bars (overall and per model, with elapsed time and ETA) and, if verbose, a line per result."""

    def __init__(self, console: Console, verbose: bool = False, quiet: bool = False) -> None:
        self.console, self.verbose, self.quiet = console, verbose, quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
            disable=quiet,
        )
        self.tasks: dict[str, Any] = {}
        self.summary = None  # set by end(), also when the run ends by an exception

    def start(self, n_songs: int, models: Sequence[str]) -> None:
        self.progress.start()
        self.tasks["songs"] = self.progress.add_task("all", total=n_songs)
        for m in models:
            self.tasks[m] = self.progress.add_task(m, total=n_songs)

    def song_done(self, file) -> None:
        self.progress.advance(self.tasks["songs"])

    def result(self, r) -> None:
        self.progress.advance(self.tasks[r.model])
        if r.status == "failed":
            self.progress.console.print(f"[red]failed[/] {r.model} {r.path}: {r.error}")
        elif self.verbose:
            self.progress.console.print(describe(r))

    def end(self, summary) -> None:
        self.summary = summary
        self.progress.stop()


class LineReporter:
    """For logs (stderr is not a terminal): one line per finished song, flushed at once, e.g.

    ``2026-11-27 01:40:31 [12/869] rock/song1: openl3 done 35.1s, crepe cached, madmom done 0.4s | ETA 8h12m``
    """

    def __init__(self, console: Console, verbose: bool = False, quiet: bool = False) -> None:
        self.console, self.verbose, self.quiet = console, verbose, quiet
        self.pending: dict[str, list[Any]] = defaultdict(list)
        self.summary = None

    def start(self, n_songs: int, models: Sequence[str]) -> None:
        self.total, self.finished, self.started = n_songs, 0, time.monotonic()
        if not self.quiet:
            self._print(f"starting: {n_songs} songs, models {', '.join(models)}")

    def result(self, r) -> None:
        self.pending[r.song_id].append(r)
        if r.status == "failed" and self.quiet:
            self._print(f"failed {r.model} {r.path}: {r.error}")
        elif self.verbose:
            self._print(describe(r))

    def song_done(self, file) -> None:
        self.finished += 1
        results = self.pending.pop(file.song_id, [])
        if self.quiet:
            return
        parts = []
        for r in results:
            part = f"{r.model} {r.status}" + (f" {r.seconds:.1f}s" if r.status == "done" else "")
            parts.append(part + (f" ({r.error})" if r.status == "failed" else ""))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.finished * (self.total - self.finished) if self.finished else 0.0
        self._print(f"[{self.finished}/{self.total}] {file.song_id}: {', '.join(parts) or 'nothing to do'}"
                    f" | ETA {format_duration(eta)}")

    def end(self, summary) -> None:
        self.summary = summary

    def _print(self, text: str) -> None:
        self.console.print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {text}", markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()


def describe(r) -> str:
    """One result as a line: what was computed, how fast, or why not."""
    if r.status == "done":
        return (f"{r.model:<7} {r.path}  shape {r.shape} at {r.frame_rate_hz:g} Hz  "
                f"{r.duration_s:.2f} s audio in {r.seconds:.2f} s")
    if r.status == "cached":
        return f"{r.model:<7} {r.path}  cached (complete, same configuration and source)"
    return f"{r.model:<7} {r.path}  {r.status} ({r.error})"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def summary_dict(summary) -> dict[str, Any]:
    """The run's summary as plain JSON-able data (``fstore extract --json``)."""
    return {
        "ok": summary.ok and not summary.unavailable,
        "exit_code": summary.exit_code,
        "run_id": summary.run_id,
        "interrupted": summary.interrupted,
        "stopped": summary.stopped,
        "wall_seconds": round(summary.wall_seconds, 3),
        "decode_seconds": round(summary.decode_seconds, 3),
        "load_seconds": round(summary.load_seconds, 3),
        "models": {m: {"done": t.done, "cached": t.cached, "skipped": t.skipped, "failed": t.failed,
                       "seconds": round(t.seconds, 3)} for m, t in summary.totals.items()},
        "replaced": {g: {"arrays": a, "failures": f} for g, (a, f) in summary.replaced.items() if a or f},
        "failures": [{"song_id": r.song_id, "model": r.model, "path": r.path, "error": r.error}
                     for r in summary.failures],
        "unusable_inputs": [{"path": p, "error": e} for p, e in summary.scan_errors],
        "unavailable_models": summary.unavailable,
    }


def print_summary(console: Console, summary) -> None:
    """The summary table, every failure with its reason, and what to do after an interruption."""
    table = Table(title="fstore extract", show_lines=False)
    for col in ("model", "done", "cached", "skipped", "failed", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model, t in summary.totals.items():
        table.add_row(model, str(t.done), str(t.cached), str(t.skipped), f"[red]{t.failed}[/]" if t.failed else "0",
                      f"{t.seconds:.1f}")
    for model in summary.unavailable:
        table.add_row(model, "-", "-", "-", "-", "[yellow]weights unavailable[/]")
    console.print(table)
    console.print(f"decode + resample {summary.decode_seconds:.1f} s, model loading {summary.load_seconds:.1f} s, "
                  f"wall {summary.wall_seconds:.1f} s")
    for group, (arrays, failures) in summary.replaced.items():
        if arrays or failures:
            console.print(f"--overwrite: removed {arrays} arrays and {failures} recorded failures of {group}")
    for path, reason in summary.scan_errors:
        console.print(f"[red]unusable[/] {path}: {reason}")
    if summary.failures:
        console.print(f"[red]{len(summary.failures)} failed[/]:")
        for r in summary.failures:
            console.print(f"  {r.model:<7} {r.path}: {r.error}")
    for model, message in summary.unavailable.items():
        console.print(f"[yellow]{model} left out[/]: {message}")
    if summary.stopped:
        console.print(f"[red]stopped: {escape(summary.stopped)}[/]")
    if summary.interrupted:
        console.print("[yellow]interrupted[/]: finished songs are complete; run the same command again to resume")
