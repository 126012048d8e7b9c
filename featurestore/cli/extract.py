"""``fstore extract``: options to a :class:`~featurestore.run.RunRequest`, the prepared run and its summary
to what is printed, and the summary's exit code."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import ConfigurationMismatch, StoreError, UsageError
from ..options import PANEL as MODEL_PANEL, with_model_flags
from .app import app, console, fail, out, split_names, stop_on_sigterm
from .reporting import LineReporter, RichReporter, print_summary, summary_dict


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class StorageDtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


def parse_workers(value: str) -> int | None:
    """``--workers``: a count of local processes, or None for ``auto`` (decided once the songs to compute are known)."""
    if value.strip().lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise typer.BadParameter(f"{value!r}: use a number of processes (0: this process) or auto", param_hint="--workers")
    return count


def _print_plan(prepared: Any, as_json: bool) -> None:
    """What --dry-run found: per (song, model) whether it would be computed or is cached."""
    work, found = prepared.plan, prepared.found
    rows = [{"song_id": song, "model": group, "action": action}
            for group, songs in work.songs.items() for song, action in songs]
    if as_json:
        print(json.dumps({"pairs": rows, "compute": work.compute, "cached": work.cached,
                          "unusable_inputs": [{"path": p, "error": e} for p, e in found.errors],
                          "unavailable_models": prepared.unavailable}, indent=2))
        return
    for row in rows:
        out.print(f"{row['action']:<8} {row['model']:<8} {row['song_id']}", markup=False, highlight=False)
    for path, reason in found.errors:
        out.print(f"unusable {path}: {reason}", markup=False, highlight=False)
    for model, message in prepared.unavailable.items():
        out.print(f"unavailable {model}: {message}", markup=False, highlight=False)


def _describe(prepared: Any) -> None:
    """The lines a run starts with: inputs, models, device, and the work it found."""
    from ..devices import usable_cores
    from ..extractors.base import config_fields

    found, extractors, request = prepared.found, prepared.extractors, prepared.request
    for model, message in prepared.unavailable.items():
        console.print(f"[yellow]{model}: left out of this run[/] — {message}")
    with_precision = [e.name for e in extractors if "precision" in config_fields(type(e).Config)]
    sources = list(prepared.inputs) + ([str(request.files_from)] if request.files_from is not None else [])
    console.print(
        f"{len(found.files)} audio files in {', '.join(sources)} ({found.skipped_non_audio} non-audio and "
        f"{found.skipped_hidden} hidden skipped); models: {', '.join(e.name for e in extractors) or 'none'}; "
        f"device {prepared.device}" + (f", precision {prepared.precision} ({', '.join(with_precision)})"
                                       if with_precision else ""))
    for note in found.notes:
        console.print(f"[cyan]note[/]: {note}")
    work = prepared.plan
    console.print(
        f"{sum(work.compute.values())} (song, model) pairs to compute, {sum(work.cached.values())} cached"
        + (" (--overwrite: the groups are replaced)" if request.overwrite else "") + ": "
        + ", ".join(f"{g} {work.compute[g]}/{work.cached[g]}" for g in work.compute))
    if request.workers is None:  # --workers auto
        threads = usable_cores() // max(1, prepared.workers)
        console.print(f"--workers auto: {f'{prepared.workers} processes' if prepared.workers else 'this process'}, "
                      f"{threads} thread{'s' if threads != 1 else ''} each, on {prepared.device}")


@app.command()
@with_model_flags
def extract(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Audio files and folders (folders are searched recursively). Default: audio_files/.", show_default=False)] = None,
    audio_dir: Annotated[Optional[Path], typer.Option("--audio-dir", "--audio_dir", help="A folder of audio files, searched recursively (the same as giving it as PATH).")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="A list of files: one path per line, or a CSV with a header 'path' or 'path,song_id'; '-' reads standard input.")] = None,
    store: Annotated[str, typer.Option("--store", help="Zarr store to write (local path or fsspec URL).")] = "features.zarr",
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models to run: repeat, or separate by commas/spaces. Default: all (openl3, crepe, madmom, mert).")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", "--skip_existing", help="The default, kept for old scripts: a (song, model) already complete with the same configuration and an unchanged source file is not recomputed.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace each selected model's group (its arrays and recorded failures) and recompute every song; also the way to change a group's configuration.")] = False,
    as_group: Annotated[Optional[str], typer.Option("--as", help="Store the (single) selected model under this group name instead of its own, to keep two configurations side by side, e.g. --models crepe --crepe-capacity tiny --as crepe_tiny.")] = None,
    dtype: Annotated[StorageDtype, typer.Option("--dtype", help="How arrays are stored: float16 is half the size (part of the group's configuration).")] = StorageDtype.float32,
    hash_sources: Annotated[bool, typer.Option("--hash-sources", help="Decide whether an input file changed by its sha256 instead of its size and mtime (reads every file; catches a file rewritten with its size and mtime kept).")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Only redo the (song, model) pairs whose failure is recorded in the store.")] = False,
    output_base: Annotated[Optional[Path], typer.Option("--output-base", "--output_base", help="Also write <output-base>/<model>/<song>.npy as songs finish.")] = None,
    device: Annotated[str, typer.Option("--device", metavar="[auto|cpu|cuda|cuda:N]", help="Where the torch models run; auto takes CUDA when available.")] = "auto",
    precision: Annotated[Precision, typer.Option("--precision", help="For the models that have one: auto is fp32 on CPU (exact), bf16 on CUDA.")] = Precision.auto,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Any model's option as MODEL.FIELD=VALUE (repeatable), e.g. -o mert.window_s=10 (the fields of each model are listed in the README).", rich_help_panel=MODEL_PANEL)] = None,
    batch_songs: Annotated[Optional[int], typer.Option("--batch-songs", min=1, help="Songs per task; those up to 60 s share model calls, which fills a GPU with short clips. Default: 16 on a GPU, 1 on a CPU (where batches gain little).", show_default=False)] = None,
    workers: Annotated[str, typer.Option("--workers", help="Worker processes on this machine, each with its own models: N, 0 (work in this process) or auto (on a CPU one per core and 3 GiB of free memory, the fastest choice for many songs; 0 on a GPU).")] = "0",
    dask_scheduler: Annotated[Optional[str], typer.Option("--dask-scheduler", help="Address of a Dask scheduler (tcp://host:8786): every song becomes a task on its workers, which must see --audio-dir and --store.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="A line per file and model: shape, time, rate.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary (or the --dry-run plan) as JSON on standard output.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which (song, model) pairs would be computed or are cached, and which models are available; write nothing.")] = False,
    *,
    model_flags: dict[str, dict[str, Any]],
) -> None:
    """Extract features of audio files and folders (default: audio_files/) into --store."""
    from ..extractors import registry
    from ..run import RunRequest, execute, prepare_run

    del skip_existing  # accepted for old scripts: caching is the default
    # `--models openl3 mert DIR`: names after --models arrive as positional values; an existing path wins
    paths = list(paths or [])
    valid = set(registry.names())
    extra = [p for p in paths if models and p in valid and not Path(p).exists()]
    paths = [p for p in paths if p not in extra] + ([str(audio_dir)] if audio_dir is not None else [])
    named = split_names(list(models or []) + extra)
    request = RunRequest(
        paths=tuple(paths), files_from=sys.stdin if files_from == "-" else files_from, store=store,
        models=tuple(named) if named else None, model_options=model_flags, option_texts=tuple(option or ()),
        device=device, precision=precision.value, dtype=dtype.value, overwrite=overwrite, as_group=as_group,
        retry_failed=retry_failed, output_base=output_base, batch_songs=batch_songs, workers=parse_workers(workers),
        dask_scheduler=dask_scheduler, dry_run=dry_run, hash_sources=hash_sources)
    try:
        prepared = prepare_run(request)
    except UsageError as e:
        raise typer.BadParameter(str(e), param_hint=e.option) from e
    except ConfigurationMismatch as e:
        fail(e, 2)
    except StoreError as e:
        fail(e)
    _describe(prepared)
    if dry_run:
        _print_plan(prepared, as_json)
        raise typer.Exit(1 if prepared.found.errors or prepared.unavailable_named else 0)
    if not prepared.extractors:
        console.print("[red]no model can run[/]")
        raise typer.Exit(1)
    reporter = (RichReporter if console.is_terminal else LineReporter)(console, verbose=verbose, quiet=quiet)
    stop_on_sigterm()  # finished songs stay complete
    try:
        summary = execute(prepared, reporter)
    except KeyboardInterrupt:
        from ..run import Summary

        summary = reporter.summary or Summary(interrupted=True)
    except UsageError as e:
        raise typer.BadParameter(str(e), param_hint=e.option) from e
    if as_json:
        print(json.dumps(summary_dict(summary), indent=2))
    else:
        print_summary(console, summary)
    raise typer.Exit(summary.exit_code)
