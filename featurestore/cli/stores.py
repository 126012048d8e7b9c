"""Commands about a store as a whole: ``info``, ``leases``, ``validate``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..errors import StoreError
from .app import StoreArgument, StoreOption, app, fail, human_bytes, out, store_url


@app.command()
def info(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON on standard output.")] = False,
) -> None:
    """Groups, songs, frame rates, completeness, size on disk and failures of a store."""
    from ..read import open_store

    store = store_url(store_arg, store)
    try:
        reader = open_store(store)
    except StoreError as e:
        fail(e)
    summary = reader.info()
    if as_json:
        print(json.dumps({**summary, "failures": reader.failures()}, indent=2, default=str))
        return
    table = Table(title=f"{store}", box=box.SIMPLE_HEAD, pad_edge=False)
    damage = any(m["damaged"] for m in summary["models"].values())  # a column only when there is some
    for col in ("group", "songs", "partial", *(("damaged",) if damage else ()), "failed", "rate", "dims", "stored",
                "size"):
        table.add_column(col, no_wrap=True)
    for group, m in summary["models"].items():
        table.add_row(group, str(m["songs"]), str(m["incomplete"]), *((str(m["damaged"]),) if damage else ()),
                      str(m["failed"]), f"{m['frame_rate_hz']:g} Hz",
                      "×".join(m["dims"] or []), m["dtype"], human_bytes(m["bytes"]))
    out.print(table)
    for group, m in summary["models"].items():
        origin = "" if m["model"] == group else f" (model {m['model']})"
        out.print(f"{group}{origin}: {m['variant']}")
    for f in reader.failures():
        out.print(f"[red]failed[/] {f['model']} {f['song_id']}: {f['error']}")


@app.command()
def leases(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    release_stale: Annotated[bool, typer.Option("--release-stale", help="Free the leases of runs that stopped beating (or whose process died on this host).")] = False,
    release: Annotated[Optional[str], typer.Option("--release", help="Free every lease of this run id (a run you know has ended).", show_default=False)] = None,
) -> None:
    """Which runs hold which songs of a store; free the leases of dead runs."""
    from ..store import FeatureStore

    store = store_url(store_arg, store)
    try:
        store_leases = FeatureStore(store, mode="r+" if release_stale or release is not None else "r").leases
        held = store_leases.held()
    except StoreError as e:
        fail(e)
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


@app.command()
def validate(
    store_arg: StoreArgument = None,
    store: StoreOption = None,
    fix: Annotated[bool, typer.Option("--fix", help="Remove incomplete and damaged arrays (a damaged one is recorded as a failure, so the next fstore extract recomputes it); songs a live run holds are left alone. Nothing else is touched.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Check metadata only; do not read and decode every chunk.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on standard output.")] = False,
) -> None:
    """Check a store: every chunk read and checked against its checksum, schemas, completeness, shapes against each
    model's time formula, NaN/inf, fingerprints."""
    from ..store import FeatureStore
    from ..validate import validate_store

    store = store_url(store_arg, store)
    try:
        target = FeatureStore(store, mode="r+" if fix else "r")
    except StoreError as e:
        fail(e)
    report = validate_store(target, fix=fix, quick=quick)
    if as_json:
        print(json.dumps({"ok": report.ok, "checked": report.checked, "fixed": report.fixed,
                          "in_progress": report.in_progress, "problems": [vars(p) for p in report.problems],
                          "notes": report.notes}, indent=2))
        raise typer.Exit(0 if report.ok else 1)
    for problem in report.problems:
        out.print(f"[red]{problem.kind}[/] {escape(problem.where)}: {escape(problem.message)}")
    for where in report.fixed:
        out.print(f"[green]removed[/] {escape(where)}")
    for where in report.in_progress:
        out.print(f"[yellow]in progress[/] {escape(where)}: a live run holds it; left as it is")
    for note in report.notes:
        out.print(f"[yellow]not checked[/] {note}")
    out.print(f"{report.checked} arrays checked, {len(report.problems)} problems" + (f", {len(report.fixed)} removed" if fix else ""))
    raise typer.Exit(0 if report.ok else 1)
