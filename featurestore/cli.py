"""The ``fstore`` command line: extract, export-npy, info, models, validate.

Exit codes: 0 everything succeeded, 1 something failed (a file, a model's weights, the
store), 2 usage error, 130 interrupted (Ctrl-C; finished songs are kept).
"""

from __future__ import annotations

import re
import signal
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional, Sequence

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich import box
from rich.table import Table

from .errors import ConfigurationMismatch, FstoreError, StoreError, WeightsUnavailable
from .store import STORAGE_DTYPES, validate_song_id

app = typer.Typer(
    name="fstore",
    help="Time-aligned audio features (OpenL3, CREPE, madmom, MERT) for a folder of songs, in one Zarr store.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out = Console()


# -- helpers ---------------------------------------------------------------------------------------
def parse_models(values: Sequence[str] | None, extra: Sequence[str] = ()) -> list[str] | None:
    """Model names from repeated, comma- or space-separated ``--models`` values; None means all."""
    from .extractors import registry

    names = [n for v in list(values or []) + list(extra) for n in re.split(r"[,\s]+", v) if n]
    if not names:
        return None
    valid = registry.names()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise typer.BadParameter(f"unknown model(s): {', '.join(unknown)}; valid models: {', '.join(valid)}", param_hint="--models")
    return list(dict.fromkeys(names))


def model_options(names: Sequence[str], precision: str, **per_model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Options for each named model's Config: its own flags, plus ``precision`` for torch models."""
    from .extractors import registry
    from .extractors.base import config_fields

    options: dict[str, dict[str, Any]] = {}
    for name in names:
        fields = config_fields(registry.get(name).Config)
        opts = {k: v for k, v in per_model.get(name, {}).items() if k in fields and v is not None}
        if "precision" in fields:
            opts["precision"] = precision
        options[name] = opts
    return options


class RichReporter:
    """Progress bars (overall and per model, with elapsed time and ETA) and, if verbose, a line per result."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
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
        elif self.verbose and r.status == "done":
            self.progress.console.print(
                f"{r.model:<7} {r.path}  shape {r.shape} at {r.frame_rate_hz:g} Hz  "
                f"{r.duration_s:.2f} s audio in {r.seconds:.2f} s"
            )
        elif self.verbose and r.status == "cached":
            self.progress.console.print(f"{r.model:<7} {r.path}  cached (complete, same configuration and source)")
        elif self.verbose:
            self.progress.console.print(f"{r.model:<7} {r.path}  skipped ({r.error})")

    def end(self, summary) -> None:
        self.summary = summary
        self.progress.stop()


def print_summary(summary, unavailable: dict[str, str]) -> None:
    table = Table(title="fstore extract", show_lines=False)
    for col in ("model", "done", "cached", "skipped", "failed", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model, t in summary.totals.items():
        table.add_row(model, str(t.done), str(t.cached), str(t.skipped), f"[red]{t.failed}[/]" if t.failed else "0",
                      f"{t.seconds:.1f}")
    for model in unavailable:
        table.add_row(model, "-", "-", "-", "[yellow]weights unavailable[/]")
    console.print(table)
    console.print(f"decode + resample {summary.decode_seconds:.1f} s, wall {summary.wall_seconds:.1f} s")
    for group, (arrays, failures) in summary.replaced.items():
        if arrays or failures:
            console.print(f"--overwrite: removed {arrays} arrays and {failures} recorded failures of {group}")
    for path, reason in summary.scan_errors:
        console.print(f"[red]unusable[/] {path}: {reason}")
    if summary.failures:
        console.print(f"[red]{len(summary.failures)} failed[/]:")
        for r in summary.failures:
            console.print(f"  {r.model:<7} {r.path}: {r.error}")
    for model, message in unavailable.items():
        console.print(f"[yellow]{model} left out[/]: {message}")
    if summary.interrupted:
        console.print("[yellow]interrupted[/]: finished songs are complete; run the same command again to resume")


@contextmanager
def make_executor(workers: int, dask_scheduler: str | None) -> Iterator[Executor | None]:
    """None (work in this process), a local process pool, or a Dask cluster's executor."""
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise typer.BadParameter("needs the 'distributed' package: pip install 'fstore[dask]'", param_hint="--dask-scheduler") from e
        with Client(dask_scheduler) as client:
            yield client.get_executor()
    elif workers > 0:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_share_cores, initargs=(workers,)) as pool:
            yield pool
    else:
        yield None


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler ending the job) stops the run like Ctrl-C: finished songs stay complete."""
    raise KeyboardInterrupt


def _share_cores(workers: int) -> None:
    """Give each local worker its share of the cores, so N workers do not each start N threads."""
    import os

    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads


# -- commands --------------------------------------------------------------------------------------
@app.command()
def extract(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Audio files and folders (folders are searched recursively). Default: audio_files/.", show_default=False)] = None,
    audio_dir: Annotated[Optional[Path], typer.Option("--audio-dir", "--audio_dir", help="A folder of audio files, searched recursively (the same as giving it as PATH).")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="A list of files: one path per line, or a CSV with a header 'path' or 'path,song_id'; '-' reads standard input.")] = None,
    store: Annotated[str, typer.Option("--store", help="Zarr store to write (local path or fsspec URL).")] = "features.zarr",
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models to run: repeat, or separate by commas/spaces. Default: all (openl3, crepe, madmom, mert).")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", "--skip_existing", help="The default, kept for old scripts: a (song, model) already complete with the same configuration and an unchanged source file is not recomputed.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace each selected model's group (its arrays and recorded failures) and recompute every song; also the way to change a group's configuration.")] = False,
    as_group: Annotated[Optional[str], typer.Option("--as", help="Store the (single) selected model under this group name instead of its own, to keep two configurations side by side, e.g. --models crepe --crepe-capacity tiny --as crepe_tiny.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="How arrays are stored: float32, or float16 (half the size; part of the group's configuration).")] = "float32",
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Only redo the (song, model) pairs whose failure is recorded in the store.")] = False,
    output_base: Annotated[Optional[Path], typer.Option("--output-base", "--output_base", help="Also write <output-base>/<model>/<song>.npy as songs finish.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16, fp16 or auto (fp32 on CPU, bf16 on CUDA) for the torch models.")] = "auto",
    crepe_capacity: Annotated[str, typer.Option("--crepe-capacity", help="CREPE model size: tiny, small, medium, large, full.")] = "full",
    crepe_viterbi: Annotated[bool, typer.Option("--crepe-viterbi/--no-crepe-viterbi", help="Smooth CREPE's pitch with its Viterbi decoder.")] = True,
    openl3_weights: Annotated[Optional[Path], typer.Option("--openl3-weights", envvar="FSTORE_OPENL3_WEIGHTS", help="Local openl3_audio_mel256_music.h5 (else downloaded once into the cache).")] = None,
    mert_model: Annotated[Optional[Path], typer.Option("--mert-model", envvar="FSTORE_MERT_MODEL", help="Local MERT-v1-95M snapshot folder (else the Hugging Face cache/hub).")] = None,
    mert_layers: Annotated[str, typer.Option("--mert-layers", help="MERT hidden states to store: last, all, or indices like 6,7,8.")] = "last",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes on this machine, each with its own models (0: work in this process).")] = 0,
    dask_scheduler: Annotated[Optional[str], typer.Option("--dask-scheduler", help="Address of a Dask scheduler (tcp://host:8786): every song becomes a task on its workers, which must see --audio-dir and --store.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="A line per file and model: shape, time, rate.")] = False,
) -> None:
    """Extract features of audio files and folders (default: audio_files/) into --store."""
    del skip_existing  # accepted for old scripts: caching is the default
    from . import pipeline
    from .discover import gather, read_file_list
    from .devices import resolve_device, resolve_precision
    from .extractors import registry
    from .store import FeatureStore

    # `--models openl3 mert DIR`: names after --models arrive as positional values; an existing path wins
    paths = list(paths or [])
    valid = set(registry.names())
    extra = [p for p in paths if models and p in valid and not Path(p).exists()]
    paths = [p for p in paths if p not in extra]
    named = parse_models(models, extra)
    try:
        device = resolve_device(device)
        precision = resolve_precision(precision, device)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    inputs = paths + ([str(audio_dir)] if audio_dir is not None else [])
    if not inputs and files_from is None:
        inputs = ["audio_files"]
    if len(inputs) == 1 and files_from is None and not Path(inputs[0]).exists():
        raise typer.BadParameter(f"{inputs[0]} does not exist", param_hint="PATH / --audio-dir")
    try:
        listed = read_file_list(sys.stdin if files_from == "-" else files_from) if files_from else []
    except (OSError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"cannot read {files_from}: {e}", param_hint="--files-from") from e
    found = gather(inputs, listed)
    selected = named or registry.names()
    options = model_options(
        selected,
        precision,
        crepe={"capacity": crepe_capacity, "viterbi": crepe_viterbi},
        openl3={"weights_path": str(openl3_weights) if openl3_weights else None},
        mert={"model_path": str(mert_model) if mert_model else None, "layers": mert_layers},
    )

    extractors, unavailable = [], {}
    for name in selected:
        try:
            ext = registry.create(name, **options[name])
            ext.weights()
        except WeightsUnavailable as e:
            unavailable[name] = str(e)
            console.print(f"[yellow]{name}: left out of this run[/] — {e}")
            continue
        except (ValueError, TypeError, FstoreError) as e:
            raise typer.BadParameter(f"{name}: {e}") from e
        extractors.append(ext)

    console.print(
        f"{len(found.files)} audio files in {', '.join(inputs + ([files_from] if files_from else []))} "
        f"({found.skipped_non_audio} non-audio and "
        f"{found.skipped_hidden} hidden skipped); models: {', '.join(e.name for e in extractors) or 'none'}; "
        f"device {device}, precision {precision}"
    )
    for note in found.notes:
        console.print(f"[cyan]note[/]: {note}")
    if not extractors:
        console.print("[red]no model can run[/]")
        raise typer.Exit(1)

    groups = ()
    if as_group is not None:
        if len(extractors) != 1:
            raise typer.BadParameter("--as names the group of one model: select exactly one with --models", param_hint="--as")
        try:
            groups = ((extractors[0].name, validate_song_id(as_group)),)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--as") from e
        if "/" in as_group:
            raise typer.BadParameter("a group name has no '/'", param_hint="--as")
    if dtype not in STORAGE_DTYPES:
        raise typer.BadParameter(f"use one of {', '.join(STORAGE_DTYPES)}", param_hint="--dtype")
    run_options = pipeline.RunOptions(retry_failed=retry_failed, output_base=output_base, device=device,
                                      overwrite=overwrite, dtype=dtype, groups=groups)
    try:
        target = FeatureStore(store, mode="a")
        if not overwrite:
            for ext in extractors:
                target.check_model(run_options.group(ext), pipeline.group_attrs(ext, run_options))
        work = pipeline.plan(target, found.files, extractors, run_options)
    except ConfigurationMismatch as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2)
    except StoreError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    console.print(
        f"{sum(work.compute.values())} (song, model) pairs to compute, {sum(work.cached.values())} cached"
        + (" (--overwrite: the groups are replaced)" if overwrite else "") + ": "
        + ", ".join(f"{g} {work.compute[g]}/{work.cached[g]}" for g in work.compute)
    )
    summary = None
    reporter = RichReporter(verbose)
    code = 0
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        with make_executor(workers, dask_scheduler) as executor:
            summary = pipeline.run(target, found.files, extractors, run_options, reporter, executor=executor)
    except KeyboardInterrupt:
        code = 130
    except StoreError as e:
        console.print(f"[red]stopped: {e}[/]")
        code = 1
    summary = summary or reporter.summary
    summary.scan_errors.extend(found.errors)
    print_summary(summary, unavailable)
    if code == 0 and (not summary.ok or (unavailable and named)):
        code = 1
    raise typer.Exit(code)


@app.command("export-npy")
def export_npy(
    store: Annotated[str, typer.Option("--store", help="Store to read.")] = "features.zarr",
    output_base: Annotated[Path, typer.Option("--output-base", "--output_base", help="Folder of the classic layout.")] = Path("output/embeddings"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing .npy files.")] = False,
) -> None:
    """Write <output-base>/<model>/<song>.npy (float32; (T,512), (T,2), (T,), (T,768)) for every complete song."""
    from .export import export_npy as do_export
    from .store import FeatureStore

    try:
        report = do_export(FeatureStore(store, mode="r"), output_base, parse_models(models), overwrite=overwrite)
    except (StoreError, KeyError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    for model, n in report.written.items():
        kept = report.kept[model]
        out.print(f"{model}: {n} written to {output_base / model}" + (f", {kept} kept (use --overwrite)" if kept else ""))


@app.command("export-hdf5")
def export_hdf5(
    out_file: Annotated[Path, typer.Argument(help="HDF5 file to write, e.g. features.h5.")],
    store: Annotated[str, typer.Option("--store", help="Store to read.")] = "features.zarr",
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models (groups) to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_FILE if it exists.")] = False,
) -> None:
    """Write the store into one HDF5 file with the same layout (a group per model, a dataset per song, every
    attribute, the failures), atomically. Read it back with fs.open_store("features.h5")."""
    import time

    from .hdf5 import export_hdf5 as do_export
    from .store import FeatureStore

    names = [n for v in models or [] for n in re.split(r"[,\s]+", v) if n] or None
    start = time.perf_counter()
    try:
        written = do_export(FeatureStore(store, mode="r"), out_file, names, overwrite=overwrite)
    except (StoreError, KeyError, FileExistsError) as e:
        console.print(f"[red]{e.args[0] if isinstance(e, KeyError) else e}[/]")
        raise typer.Exit(1)
    out.print(f"{out_file}: " + ", ".join(f"{m} {n} songs" for m, n in written.items())
              + f" in {time.perf_counter() - start:.1f} s")


@app.command()
def info(store: Annotated[str, typer.Argument(help="Store to describe.")] = "features.zarr") -> None:
    """Models, songs, frame rates, completeness and failures of a store."""
    from .read import open_store

    try:
        reader = open_store(store)
    except StoreError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    summary = reader.info()
    table = Table(title=f"{store}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("group", "songs", "partial", "failed", "rate", "dims", "stored", "size"):
        table.add_column(col, no_wrap=True)
    for group, m in summary["models"].items():
        table.add_row(group, str(m["songs"]), str(m["incomplete"]), str(m["failed"]), f"{m['frame_rate_hz']:g} Hz",
                      "×".join(m["dims"] or []), m["dtype"], _human_bytes(m["bytes"]))
    out.print(table)
    for group, m in summary["models"].items():
        origin = "" if m["model"] == group else f" (model {m['model']})"
        out.print(f"{group}{origin}: {m['variant']}")
    for f in reader.failures():
        out.print(f"[red]failed[/] {f['model']} {f['song_id']}: {f['error']}")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@app.command("models")
def list_models() -> None:
    """Every model: rates, output dims, where its weights come from and whether they are here."""
    from .extractors import registry

    table = Table(title="models")
    for col in ("model", "input", "frame rate", "t0", "output", "weights", "available"):
        table.add_column(col)
    for name in registry.names():
        try:
            cls = registry.get(name)
            ext = cls()
            ax, dims = ext.time_axis, ext.dims
            shape = "(" + ", ".join("T" if d == "time" else str(ext.dim_size(d)) for d in dims) + ")"
            info_ = cls.weights_info()
        except Exception as e:  # a broken third-party extractor must not hide the others
            table.add_row(name, "-", "-", "-", "-", f"[red]{e}[/]", "no")
            continue
        where = info_.description + (f"\n{info_.location}" if info_.location else "") + (f"\n{info_.how_to_provide}" if info_.how_to_provide and not info_.available else "")
        table.add_row(name, f"{ax.sample_rate} Hz", f"{ax.frame_rate_hz:g} Hz", f"{ax.t0_s:.6g} s", shape, where,
                      "[green]yes[/]" if info_.available else "[yellow]no[/]")
    out.print(table)


@app.command()
def validate(
    store: Annotated[str, typer.Argument(help="Store to check.")] = "features.zarr",
    fix: Annotated[bool, typer.Option("--fix", help="Remove incomplete arrays (nothing else is touched).")] = False,
) -> None:
    """Check a store: schemas, completeness, shapes against each model's time formula, NaN/inf, fingerprints."""
    from .store import FeatureStore
    from .validate import validate_store

    try:
        target = FeatureStore(store, mode="a" if fix else "r")
    except StoreError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    report = validate_store(target, fix=fix)
    for problem in report.problems:
        out.print(f"[red]{problem.kind}[/] {problem.where}: {problem.message}")
    for where in report.fixed:
        out.print(f"[green]removed[/] {where}")
    out.print(f"{report.checked} arrays checked, {len(report.problems)} problems" + (f", {len(report.fixed)} removed" if fix else ""))
    raise typer.Exit(0 if report.ok else 1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
