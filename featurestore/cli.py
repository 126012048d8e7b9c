"""The ``fstore`` command line: extract, export-npy, info, models, validate.

Exit codes: 0 everything succeeded, 1 something failed (a file, a model's weights, the
store), 2 usage error, 3 songs left to another live run on the same store (run again once
it ends, or free its leases with ``fstore leases --release-stale`` if it died), 130
interrupted (Ctrl-C; finished songs are kept).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from enum import Enum
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, NoReturn, Optional, Sequence

import typer
from rich.console import Console
from rich import box
from rich.markup import escape
from rich.table import Table

from .errors import ConfigurationMismatch, FstoreError, StoreError, WeightsUnavailable
from .options import PANEL as MODEL_PANEL, model_configs, with_model_flags
from .reporting import LineReporter, RichReporter, print_summary, summary_dict
from .store import validate_song_id

app = typer.Typer(
    name="fstore",
    help="Time-aligned audio features (OpenL3, CREPE, madmom, MERT) for a folder of songs, in one Zarr store.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out = Console()


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"fstore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Time-aligned audio features (OpenL3, CREPE, madmom, MERT) for a folder of songs, in one Zarr store."""


StoreArgument = Annotated[Optional[str], typer.Argument(help="The store (local path, fsspec URL, or an exported .h5). Default: features.zarr.", show_default=False)]
StoreOption = Annotated[Optional[str], typer.Option("--store", help="The store, as an option (the same as the argument).", show_default=False)]


def _store_url(positional: str | None, option: str | None) -> str:
    """Every command takes the store the same way: as an argument or as --store (default features.zarr)."""
    if positional and option and positional != option:
        raise typer.BadParameter(f"two stores given: {positional} and --store {option}")
    return positional or option or "features.zarr"


# -- helpers ---------------------------------------------------------------------------------------
def fail(error: Exception, code: int = 1) -> NoReturn:
    """Print an error in red (its text escaped: paths may hold rich markup) and exit with ``code``."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    console.print(f"[red]{escape(str(message))}[/]")
    raise typer.Exit(code)


def split_names(values: Sequence[str] | None) -> list[str] | None:
    """Names from repeated, comma- or space-separated option values (``--models a,b c``); None if none."""
    names = [n for v in values or [] for n in re.split(r"[,\s]+", v) if n]
    return list(dict.fromkeys(names)) or None


def parse_models(values: Sequence[str] | None, extra: Sequence[str] = ()) -> list[str] | None:
    """Model names from repeated, comma- or space-separated ``--models`` values; None means all."""
    from .extractors import registry

    names = split_names(list(values or []) + list(extra))
    if not names:
        return None
    valid = registry.names()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise typer.BadParameter(f"unknown model(s): {', '.join(unknown)}; valid models: {', '.join(valid)}", param_hint="--models")
    return names


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class StorageDtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


def _open_for_writing(url: str, dry_run: bool):
    """The store a run writes to, checked before any scanning (None for a dry run on a store not made yet)."""
    from .store import FeatureStore, location

    local = "://" not in url
    if local and Path(url).is_file():
        raise typer.BadParameter(f"{url} is a file, not a store folder", param_hint="--store")
    try:
        if dry_run:
            return None if location(url, None) == "absent" else FeatureStore(url, mode="r")
        if local:
            existing = Path(url) if Path(url).exists() else Path(url).absolute().parent
            if not os.access(existing, os.W_OK):
                raise StoreError(f"{url}: not writable by this user ({existing} is read-only)")
        return FeatureStore(url, mode="a")
    except StoreError as e:
        fail(e)


def _print_plan(work, found, unavailable: dict[str, str], as_json: bool) -> None:
    """What --dry-run found: per (song, model) whether it would be computed or is cached."""
    rows = [{"song_id": song, "model": group, "action": action}
            for group, songs in work.songs.items() for song, action in songs]
    if as_json:
        print(json.dumps({"pairs": rows, "compute": work.compute, "cached": work.cached,
                          "unusable_inputs": [{"path": p, "error": e} for p, e in found.errors],
                          "unavailable_models": unavailable}, indent=2))
        return
    for row in rows:
        out.print(f"{row['action']:<8} {row['model']:<8} {row['song_id']}", markup=False, highlight=False)
    for path, reason in found.errors:
        out.print(f"unusable {path}: {reason}", markup=False, highlight=False)
    for model, message in unavailable.items():
        out.print(f"unavailable {model}: {message}", markup=False, highlight=False)


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


@contextmanager
def make_executor(workers: int, dask_scheduler: str | None) -> Iterator[Executor | None]:
    """None (work in this process), a local process pool, or a Dask cluster's executor."""
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise typer.BadParameter("needs the 'distributed' package: pip install 'fstore-audio[dask]'", param_hint="--dask-scheduler") from e
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

    from .devices import usable_cores

    threads = str(max(1, usable_cores() // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads


# -- commands --------------------------------------------------------------------------------------
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
    del skip_existing  # accepted for old scripts: caching is the default
    from . import pipeline
    from .discover import gather, read_file_list
    from .devices import check_precision_supported, resolve_device, resolve_precision
    from .extractors import registry
    from .extractors.base import config_fields

    # `--models openl3 mert DIR`: names after --models arrive as positional values; an existing path wins
    paths = list(paths or [])
    valid = set(registry.names())
    extra = [p for p in paths if models and p in valid and not Path(p).exists()]
    paths = [p for p in paths if p not in extra]
    named = parse_models(models, extra)
    try:
        device = resolve_device(device)
        precision = resolve_precision(precision.value, device)
        check_precision_supported(precision, device)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--device / --precision") from e
    processes = parse_workers(workers)
    dtype = dtype.value
    target = _open_for_writing(store, dry_run)
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
    try:
        configs = model_configs(selected, model_flags, option or [], {"precision": precision})
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e

    extractors, unavailable = [], {}
    for name in selected:
        try:
            ext = registry.get(name)(configs[name])
            ext.weights()
        except WeightsUnavailable as e:
            unavailable[name] = str(e)
            console.print(f"[yellow]{name}: left out of this run[/] — {e}")
            continue
        except (ValueError, TypeError, FstoreError) as e:
            raise typer.BadParameter(f"{name}: {e}") from e
        extractors.append(ext)

    with_precision = [e.name for e in extractors if "precision" in config_fields(type(e).Config)]
    console.print(
        f"{len(found.files)} audio files in {', '.join(inputs + ([files_from] if files_from else []))} "
        f"({found.skipped_non_audio} non-audio and "
        f"{found.skipped_hidden} hidden skipped); models: {', '.join(e.name for e in extractors) or 'none'}; "
        f"device {device}" + (f", precision {precision} ({', '.join(with_precision)})" if with_precision else "")
    )
    for note in found.notes:
        console.print(f"[cyan]note[/]: {note}")
    if not extractors and not dry_run:
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
    run_options = pipeline.RunOptions(retry_failed=retry_failed, output_base=output_base, device=device,
                                      overwrite=overwrite, dtype=dtype, groups=groups,
                                      batch_songs=batch_songs or (1 if device == "cpu" else 16))
    try:
        if not overwrite and target is not None:
            for ext in extractors:
                target.check_model(run_options.group(ext), pipeline.group_attrs(ext, run_options))
        work = pipeline.plan(target, found.files, extractors, run_options)
    except ConfigurationMismatch as e:
        fail(e, 2)
    except StoreError as e:
        fail(e)
    console.print(
        f"{sum(work.compute.values())} (song, model) pairs to compute, {sum(work.cached.values())} cached"
        + (" (--overwrite: the groups are replaced)" if overwrite else "") + ": "
        + ", ".join(f"{g} {work.compute[g]}/{work.cached[g]}" for g in work.compute)
    )
    if processes is None:  # --workers auto
        from .devices import auto_workers, usable_cores

        songs = len({song for pairs in work.songs.values() for song, action in pairs if action == "compute"})
        processes = auto_workers(device, songs)
        threads = usable_cores() // max(1, processes)
        console.print(f"--workers auto: {f'{processes} processes' if processes else 'this process'}, "
                      f"{threads} thread{'s' if threads != 1 else ''} each, on {device}")
    if dry_run:
        _print_plan(work, found, unavailable, as_json)
        raise typer.Exit(0 if not found.errors and not (unavailable and named) else 1)
    summary = None
    reporter = (RichReporter if console.is_terminal else LineReporter)(console, verbose=verbose, quiet=quiet)
    code = 0
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        with make_executor(processes, dask_scheduler) as executor:
            summary = pipeline.run(target, found.files, extractors, run_options, reporter, executor=executor)
    except KeyboardInterrupt:
        code = 130
    except StoreError as e:
        console.print(f"[red]stopped: {escape(str(e))}[/]")
        code = 1
    summary = summary or reporter.summary
    summary.scan_errors.extend(found.errors)
    if as_json:
        print(json.dumps(summary_dict(summary, unavailable), indent=2))
    else:
        print_summary(console, summary, unavailable)
    if code == 0 and (not summary.ok or (unavailable and named)):
        code = 1
    if code == 0 and any(t.skipped for t in summary.totals.values()):
        code = 3  # not all done: another run holds some songs
    raise typer.Exit(code)


@app.command("export-npy")
def export_npy(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    output_base: Annotated[Path, typer.Option("--output-base", "--output_base", help="Folder of the classic layout.")] = Path("output/embeddings"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing .npy files.")] = False,
) -> None:
    """Write <output-base>/<model>/<song>.npy (float32; (T,512), (T,2), (T,), (T,768)) for every complete song."""
    from .export import export_npy as do_export
    from .store import FeatureStore

    store = _store_url(store_arg, store)
    try:
        report = do_export(FeatureStore(store, mode="r"), output_base, parse_models(models), overwrite=overwrite)
    except (StoreError, KeyError) as e:
        fail(e)
    for model, n in report.written.items():
        kept = report.kept[model]
        out.print(f"{model}: {n} written to {output_base / model}" + (f", {kept} kept (use --overwrite)" if kept else ""))


@app.command("export-hdf5")
def export_hdf5(
    out_file: Annotated[Path, typer.Argument(help="HDF5 file to write, e.g. features.h5.")],
    store: Annotated[str, typer.Option("--store", help="The store to export.")] = "features.zarr",
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models (groups) to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_FILE if it exists.")] = False,
) -> None:
    """Write the store into one HDF5 file with the same layout (a group per model, a dataset per song, every
    attribute, the failures), atomically. Read it back with fs.open_store("features.h5")."""
    import time

    from .hdf5 import export_hdf5 as do_export
    from .store import FeatureStore

    names = split_names(models)
    start = time.perf_counter()
    try:
        written = do_export(FeatureStore(store, mode="r"), out_file, names, overwrite=overwrite)
    except (StoreError, KeyError, FileExistsError) as e:
        fail(e)
    out.print(f"{out_file}: " + ", ".join(f"{m} {n} songs" for m, n in written.items())
              + f" in {time.perf_counter() - start:.1f} s")


@app.command()
def info(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON on standard output.")] = False,
) -> None:
    """Groups, songs, frame rates, completeness, size on disk and failures of a store."""
    from .read import open_store

    store = _store_url(store_arg, store)
    try:
        reader = open_store(store)
    except StoreError as e:
        fail(e)
    summary = reader.info()
    if as_json:
        print(json.dumps({**summary, "failures": reader.failures()}, indent=2, default=str))
        return
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


@app.command()
def leases(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    release_stale: Annotated[bool, typer.Option("--release-stale", help="Free the leases of runs that stopped beating (or whose process died on this host).")] = False,
    release: Annotated[Optional[str], typer.Option("--release", help="Free every lease of this run id (a run you know has ended).", show_default=False)] = None,
) -> None:
    """Which runs hold which songs of a store; free the leases of dead runs."""
    from .store import FeatureStore

    store = _store_url(store_arg, store)
    try:
        store_leases = FeatureStore(store, mode="r+" if release_stale or release is not None else "r").leases
        held = store_leases.held()
    except StoreError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    now = time.time()
    for lease in held:
        freed = (release_stale and lease["stale"]) or (release is not None and lease["run"] == release)
        if freed:
            store_leases.force_release(lease["song_id"])
        state = "freed" if freed else "stale" if lease["stale"] else "live"
        print(f"{lease['song_id']}\t{lease['run']}\t{lease.get('host')}:{lease.get('pid')}\t"
              f"{now - float(lease.get('time', 0)):.0f} s ago\t{state}")  # tab-separated, for scripts
    if not held:
        out.print("no leases: no run is working on this store", markup=False, highlight=False)


@app.command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON on standard output.")] = False,
) -> None:
    """Every model: rates, output dims, licences, where its weights come from and whether they are here."""
    from .extractors import registry

    rows = []
    for name in registry.names():
        try:
            cls = registry.get(name)
            ext = cls()
            ax = ext.time_axis
            info_ = cls.weights_info()
            rows.append({
                "model": name, "description": cls.description, "sample_rate": ax.sample_rate,
                "frame_rate_hz": ax.frame_rate_hz, "t0_s": ax.t0_s,
                "output": ["T" if d == "time" else ext.dim_size(d) for d in ext.dims], "dims": list(ext.dims),
                "code_license": cls.code_license, "weights_license": cls.weights_license,
                "weights": info_.description, "available": info_.available, "location": info_.location,
                "how_to_provide": None if info_.available else info_.how_to_provide,
            })
        except Exception as e:  # a broken third-party extractor must not hide the others
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}", "available": False})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="models", show_lines=True)
    for col in ("model", "rates", "output", "licences", "weights", "here"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["model"], "-", "-", "-", f"[red]{r['error']}[/]", "no")
            continue
        where = r["weights"] + (f"\n{r['location']}" if r["location"] else "") + (f"\n{r['how_to_provide']}" if r["how_to_provide"] else "")
        table.add_row(r["model"], f"in {r['sample_rate']} Hz\nout {r['frame_rate_hz']:g} Hz\nt0 {r['t0_s']:.4g} s",
                      "(" + ", ".join(map(str, r["output"])) + ")",
                      f"code: {r['code_license']}\nweights: {r['weights_license']}", where,
                      "[green]yes[/]" if r["available"] else "[yellow]no[/]")
    out.print(table)


@app.command()
def validate(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    fix: Annotated[bool, typer.Option("--fix", help="Remove incomplete arrays (nothing else is touched).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on standard output.")] = False,
) -> None:
    """Check a store: schemas, completeness, shapes against each model's time formula, NaN/inf, fingerprints."""
    from .store import FeatureStore
    from .validate import validate_store

    store = _store_url(store_arg, store)
    try:
        target = FeatureStore(store, mode="r+" if fix else "r")
    except StoreError as e:
        fail(e)
    report = validate_store(target, fix=fix)
    if as_json:
        print(json.dumps({"ok": report.ok, "checked": report.checked, "fixed": report.fixed,
                          "problems": [vars(p) for p in report.problems], "notes": report.notes}, indent=2))
        raise typer.Exit(0 if report.ok else 1)
    for problem in report.problems:
        out.print(f"[red]{problem.kind}[/] {problem.where}: {problem.message}")
    for where in report.fixed:
        out.print(f"[green]removed[/] {where}")
    for note in report.notes:
        out.print(f"[yellow]not checked[/] {note}")
    out.print(f"{report.checked} arrays checked, {len(report.problems)} problems" + (f", {len(report.fixed)} removed" if fix else ""))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def plot(
    song: Annotated[str, typer.Argument(help="Song id, e.g. rock/song1 (see fstore info / fs.open_store(...).songs()).")],
    store: Annotated[str, typer.Option("--store", help="The store (or an exported .h5).")] = "features.zarr",
    output: Annotated[Path, typer.Option("--output", "-o", help="Picture to write (PNG, SVG or PDF by its extension).")] = Path("fstore-plot.png"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Groups to draw, in this order (default: all the song has).")] = None,
    start: Annotated[Optional[float], typer.Option("--start", help="First second to draw.")] = None,
    end: Annotated[Optional[float], typer.Option("--end", help="Last second to draw.")] = None,
) -> None:
    """Draw one song's features, one panel per model on a shared time axis (needs the [plot] extra)."""
    from .plot import PlotUnavailable, plot_song
    from .read import open_store

    names = split_names(models)
    try:
        fig = plot_song(open_store(store), song, names, start=start, end=end)
    except (PlotUnavailable, StoreError, KeyError) as e:
        fail(e)
    fig.savefig(output, dpi=110)
    out.print(f"{output}: {len(fig.axes)} panels")


@app.command()
def show(
    song: Annotated[str, typer.Argument(help="Song id, e.g. rock/song1.")],
    store: Annotated[str, typer.Option("--store", help="The store (or an exported .h5).")] = "features.zarr",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on standard output.")] = False,
) -> None:
    """Per model: frames, frame rate, duration, value ranges and fingerprint of one song."""
    from .plot import describe_song, format_rows
    from .read import open_store

    try:
        rows = describe_song(open_store(store), song)
    except (StoreError, KeyError) as e:
        fail(e)
    print(json.dumps(rows, indent=2) if as_json else format_rows(rows))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
