"""``fstore verify``: recompute a sample of stored songs with this installation and say whether the numbers
still agree (see :mod:`featurestore.verify`); its exit code says so to scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..errors import StoreError, UsageError
from .app import DEFAULT_STORE, StoreOption, app, console, fail, out, split_names

#: how a verdict is shown: what agrees green, what differs red, what could not be verified yellow
_STYLE = {"ok": "green", "drift": "red", "unverified": "yellow"}


def _style(verdict: str) -> str:
    from ..verify import DIFFERS

    return _STYLE.get(verdict, "red" if verdict in DIFFERS else "yellow")


def _store_and_songs(args: list[str], store: str | None, songs: list[str] | None) -> tuple[str, list[str] | None]:
    """``fstore verify [STORE] --songs a b``: the values after ``--songs`` arrive as positional arguments
    after the store. The first positional is the store unless ``--store`` names it, or it is not a path
    while ``--songs`` is given (``fstore verify --songs a b``)."""
    rest = list(args)
    if store is None and rest and (songs is None or "://" in rest[0] or Path(rest[0]).exists()):
        store = rest.pop(0)
    if rest and songs is None:
        raise typer.BadParameter(f"one store only ({', '.join(rest)} given besides); song ids go after --songs")
    return store or DEFAULT_STORE, (list(songs) + rest) if songs is not None else None


def _fmt(value: float | None, digits: str) -> str:
    return "—" if value is None else format(value, digits)


@app.command()
def verify(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[STORE] [ID]...", show_default=False, help=(
        "The store (default: features.zarr); after --songs, more song ids."))] = None,
    store: StoreOption = None,
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Groups to check: repeat, or separate by commas/spaces. Default: every group.")] = None,
    songs: Annotated[Optional[list[str]], typer.Option("--songs", help="Check these song ids (in every group that holds them) instead of a sample; more ids may follow.")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1, help="Songs per group, chosen at random by --seed. Default: 3.", show_default=False)] = None,
    all_songs: Annotated[bool, typer.Option("--all", help="Check every song of every group checked.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random choice of songs; the same seed chooses the same songs.")] = 0,
    audio_dir: Annotated[Optional[list[Path]], typer.Option("--audio-dir", help="A folder the recorded relative source paths are looked up in, before the recorded absolute location (repeatable, tried in order).")] = None,
    device: Annotated[str, typer.Option("--device", metavar="[cpu|cuda|cuda:N|auto]", help="Where the torch models compute.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on standard output.")] = False,
) -> None:
    """Recompute a sample of stored songs from their source files with this installation, and compare them
    with what is stored, within each model's tolerance. Run it after upgrading torch or moving to a new CPU.
    Exit code 0: every song agrees; 1: some song differs (drift); 4: none differs, but some could not be
    verified (source missing or changed, weights missing); 2: usage error."""
    from ..devices import resolve_device
    from ..store import open_backend
    from ..verify import DEFAULT_SAMPLE, SongCheck, verify_store

    url, song_ids = _store_and_songs(args or [], store, songs)
    if sum([song_ids is not None, sample is not None, all_songs]) > 1:
        raise typer.BadParameter("choose the songs one way: --songs, --sample or --all")
    try:
        where = resolve_device(device)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--device") from e
    try:
        backend = open_backend(url)
    except StoreError as e:
        fail(e)
    per_group = None if all_songs else sample or DEFAULT_SAMPLE
    how = (f"songs {', '.join(song_ids)}" if song_ids is not None else "every song" if per_group is None
           else f"{per_group} songs per group chosen with --seed {seed}")
    console.print(f"verify {escape(url)}: {escape(how)}, device {where}", highlight=False)

    def progress(group: str, check: SongCheck) -> None:
        if not as_json:
            console.print(f"  {escape(group)} {escape(check.song_id)}: [{_style(check.verdict)}]{check.verdict}[/] "
                          f"({check.seconds:.1f} s)", highlight=False)

    try:
        report = verify_store(backend, split_names(models), song_ids, per_group, seed, audio_dir or (), where, progress)
    except UsageError as e:
        raise typer.BadParameter(str(e), param_hint=e.option) from e
    except StoreError as e:
        fail(e)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        raise typer.Exit(report.exit_code)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("group", "model", "checked", "max |diff|", "min cosine", "verdict"):
        table.add_column(col, no_wrap=True)
    for g in report.groups:
        table.add_row(g.group, g.model, f"{len(g.compared)}/{len(g.songs)}", _fmt(g.max_abs, ".3g"),
                      _fmt(g.min_cosine, ".6f"), f"[{_style(g.verdict)}]{g.verdict}[/]")
    out.print(table)
    for g in report.groups:
        if g.tolerance is not None:
            out.print(f"{escape(g.group)} ({escape(g.variant)}): {escape(g.tolerance.describe())}", highlight=False)
        for note in g.notes:
            out.print(f"[yellow]note[/] {escape(g.group)}: {escape(note)}", highlight=False)
        for s in g.songs:
            if s.verdict != "ok":
                out.print(f"[{_style(s.verdict)}]{s.verdict}[/] {escape(g.group)}/{escape(s.song_id)}: "
                          f"{escape(s.message)}", highlight=False)
    songs_total = sum(len(g.songs) for g in report.groups)
    seed_used = f" (seed {report.seed})" if report.sample is not None else ""
    out.print(f"{sum(len(g.compared) for g in report.groups)} of {songs_total} songs compared in "
              f"{report.seconds:.1f} s{seed_used}", highlight=False)
    raise typer.Exit(report.exit_code)
