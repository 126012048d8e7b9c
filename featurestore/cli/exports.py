"""``export-npy`` and ``export-hdf5``: a store into the classic ``.npy`` layout, or into one HDF5 file.

Exit codes: 0 exported (kept and stale files are reported, not failures); 1 the store cannot be read,
a file could not be written during the export, or a damaged song was left out (the others are exported);
2 a usage error; 3 songs another run was rewriting were left out (export again once it ends); a target that
cannot take the export,
found before any work: 4 a file is in the way (``--output-base`` is a file, or the HDF5 file exists
without ``--overwrite``), 5 the HDF5 target is a folder, 6 the target is read-only, 7 the target is the
store being exported or lies inside it; 130 interrupted (Ctrl-C or SIGTERM: the files being written are
finished, no temporary file is left).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, NoReturn, Optional

import typer
from rich.markup import escape

from ..errors import ExportTarget, StoreError
from .app import StoreArgument, StoreOption, app, console, fail, out, split_names, stop_on_sigterm, store_url

if TYPE_CHECKING:
    from ..export import ExportReport

#: ``ExportTarget.kind`` -> exit code
TARGET_EXIT_CODES = {"file": 4, "folder": 5, "read-only": 6, "store": 7}
EXIT_INTERRUPTED = 130


def _interrupted() -> NoReturn:
    console.print("[yellow]interrupted[/]: the files written so far are whole, no temporary file is left; "
                  "run the same command again to finish")
    raise typer.Exit(EXIT_INTERRUPTED)


@app.command("export-npy")
def export_npy(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    output_base: Annotated[Path, typer.Option("--output-base", "--output_base", help="Folder of the classic layout.")] = Path("output/embeddings"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models (groups) to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing .npy files.")] = False,
) -> None:
    """Write <output-base>/<model>/<song>.npy (float32; (T,512), (T,2), (T,), (T,768)) for every complete song,
    and <model>/index.csv describing each file (its clock, source, and whether it is stale)."""
    from ..export import export_npy as do_export
    from ..store import open_backend

    store = store_url(store_arg, store)
    report = _exporting(lambda: do_export(open_backend(store), output_base, split_names(models), overwrite=overwrite))
    for model, n in report.written.items():
        kept, stale = report.kept[model], report.stale[model]
        line = escape(f"{model}: {n} written to {output_base / model}") + (f", {kept} kept" if kept else "")
        if stale:
            line += (f", [yellow]{len(stale)} stale[/] (use --overwrite): " + escape(", ".join(stale[:5]))
                     + (", …" if len(stale) > 5 else ""))
        out.print(line)
    _left_out(report)


def _exporting(export: Callable[[], ExportReport]) -> ExportReport:
    """Open the store and export (``export``), with SIGTERM acting as Ctrl-C, and turn the errors into the exit
    codes the README lists."""
    stop_on_sigterm()
    try:
        return export()
    except ExportTarget as e:
        fail(e, TARGET_EXIT_CODES[e.kind])
    except (StoreError, KeyError, OSError) as e:
        fail(e)
    except KeyboardInterrupt:
        _interrupted()


def _left_out(report) -> None:
    """Name each song left out, and exit with the code that says why: 1 when one is damaged, 3 when songs were
    being rewritten by another run; the others were exported."""
    for e in report.damaged:
        console.print(f"[red]damaged, not exported[/] {escape(str(e))}")
    for e in report.rewritten:
        console.print(f"[yellow]not exported[/] {escape(str(e))}")
    if report.damaged:
        console.print(f"[red]{len(report.damaged)} damaged song(s) left out[/]: `fstore validate --fix` removes them "
                      "and `fstore extract` recomputes them")
        raise typer.Exit(1)
    if report.rewritten:
        console.print(f"[yellow]{len(report.rewritten)} song(s) left out[/]: another run was rewriting them; export "
                      "again once it has ended")
        raise typer.Exit(3)


@app.command("export-hdf5")
def export_hdf5(
    out_file: Annotated[Path, typer.Argument(help="HDF5 file to write, e.g. features.h5.")],
    store: StoreOption = None,
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models (groups) to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_FILE if it exists.")] = False,
) -> None:
    """Write the store into one HDF5 file that netCDF-4 readers read too (a group per model, a netCDF group per
    song with its array, its time coordinate in seconds and every attribute, the failures), atomically. Read
    it back with fs.open_store("features.h5"), or a song with xarray, ncdump or MATLAB's ncread."""
    from ..export import export_hdf5 as do_export
    from ..store import open_backend

    start = time.perf_counter()
    report = _exporting(lambda: do_export(open_backend(store_url(None, store)), out_file, split_names(models),
                                          overwrite=overwrite))
    out.print(escape(f"{out_file}: " + ", ".join(f"{m} {n} songs" for m, n in report.written.items())
                     + f" in {time.perf_counter() - start:.1f} s"))
    _left_out(report)
