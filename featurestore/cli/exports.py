"""``export-npy`` and ``export-hdf5``: a store into the classic ``.npy`` layout, or into one HDF5 file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import StoreError
from rich.markup import escape

from .app import StoreArgument, StoreOption, app, console, fail, out, split_names, store_url


@app.command("export-npy")
def export_npy(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    output_base: Annotated[Path, typer.Option("--output-base", "--output_base", help="Folder of the classic layout.")] = Path("output/embeddings"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Models (groups) to export (default: all in the store).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing .npy files.")] = False,
) -> None:
    """Write <output-base>/<model>/<song>.npy (float32; (T,512), (T,2), (T,), (T,768)) for every complete song."""
    from ..export import export_npy as do_export
    from ..store import open_backend

    store = store_url(store_arg, store)
    try:
        report = do_export(open_backend(store), output_base, split_names(models), overwrite=overwrite)
    except (StoreError, KeyError) as e:
        fail(e)
    for model, n in report.written.items():
        kept = report.kept[model]
        out.print(f"{model}: {n} written to {output_base / model}" + (f", {kept} kept (use --overwrite)" if kept else ""))
    _name_damaged(report)


def _name_damaged(report) -> None:
    """Each song left out, and the exit code that says why: 1 when one is damaged, 3 when songs were being
    rewritten by another run (export again once it ends); the others were exported."""
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
    """Write the store into one HDF5 file with the same layout (a group per model, a dataset per song, every
    attribute, the failures), atomically. Read it back with fs.open_store("features.h5")."""
    from ..export import export_hdf5 as do_export
    from ..store import open_backend

    start = time.perf_counter()
    try:
        report = do_export(open_backend(store_url(None, store)), out_file, split_names(models), overwrite=overwrite)
    except (StoreError, KeyError, FileExistsError) as e:
        fail(e)
    out.print(f"{out_file}: " + ", ".join(f"{m} {n} songs" for m, n in report.written.items())
              + f" in {time.perf_counter() - start:.1f} s")
    _name_damaged(report)
