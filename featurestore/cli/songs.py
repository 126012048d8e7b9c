"""Commands about songs and models: ``show`` and ``plot`` one song, the songs ``similar`` to one, the ``models``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..errors import StoreError
from .app import StoreOption, app, fail, out, split_names, store_url


@app.command()
def plot(
    song: Annotated[str, typer.Argument(help="Song id, e.g. rock/song1 (see fstore info / fs.open_store(...).songs()).")],
    store: StoreOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Picture to write (PNG, SVG or PDF by its extension).")] = Path("fstore-plot.png"),
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Groups to draw, in this order (default: all the song has).")] = None,
    start: Annotated[Optional[float], typer.Option("--start", help="First second to draw.")] = None,
    end: Annotated[Optional[float], typer.Option("--end", help="Last second to draw.")] = None,
) -> None:
    """Draw one song's features, one panel per model on a shared time axis (needs the [plot] extra)."""
    from ..plot import PlotUnavailable, plot_song
    from ..read import check_time_range, open_store

    try:
        check_time_range(start, end)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--start / --end") from e
    if not output.parent.is_dir():
        fail(f"{output}: cannot write the picture: {output.parent} is not a folder")
    try:
        fig = plot_song(open_store(store_url(None, store)), song, split_names(models), start=start, end=end)
    except (PlotUnavailable, StoreError, KeyError) as e:
        fail(e)
    try:
        fig.savefig(output, dpi=110)
    except ValueError as e:  # matplotlib's answer to an extension it cannot write
        raise typer.BadParameter(f"{output}: {e}", param_hint="--output") from e
    except OSError as e:
        fail(f"{output}: cannot write the picture ({e.strerror or e})")
    out.print(f"{output}: {len(fig.axes)} panels")


@app.command()
def show(
    song: Annotated[str, typer.Argument(help="Song id, e.g. rock/song1.")],
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on standard output.")] = False,
) -> None:
    """Per model: frames, frame rate, duration, value ranges and fingerprint of one song."""
    from ..plot import describe_song, format_rows
    from ..read import open_store

    try:
        rows = describe_song(open_store(store_url(None, store)), song)
    except (StoreError, KeyError) as e:
        fail(e)
    print(json.dumps(rows, indent=2) if as_json else format_rows(rows))


class PoolStat(str, Enum):
    mean = "mean"
    std = "std"
    min = "min"
    max = "max"


@app.command()
def similar(
    song: Annotated[str, typer.Argument(help="Song id, e.g. rock/song1 (see fstore info / fs.open_store(...).songs()).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Group whose pooled vectors are compared, e.g. openl3 or mert.")],
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many songs to list.")] = 10,
    stat: Annotated[PoolStat, typer.Option("--stat", help="How each song's frames are pooled into one vector.")] = PoolStat.mean,
    layer: Annotated[Optional[int], typer.Option("--layer", help="The layer to compare, for a group that stores several (MERT).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print [{"song_id": ..., "score": ...}, ...] as JSON on standard output.')] = False,
) -> None:
    """The K songs most like SONG: cosine similarity of their pooled embeddings, searched exactly. Pools the whole
    group first, which reads every song's features of that group."""
    import math

    from ..read import open_store

    try:
        result = open_store(store_url(None, store)).similar(song, model, k=k, stat=stat.value, layer=layer)
    except (StoreError, KeyError, ValueError) as e:
        fail(e)
    rows = [{"song_id": str(s), "score": None if math.isnan(v) else round(float(v), 6)}
            for s, v in zip(result["song"].values, result.values)]  # NaN: a zero vector, cosine undefined
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out.print(f"like {escape(song)} ({model}, {stat.value}" + (f", layer {layer}" if layer is not None else "") + ")",
              highlight=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("rank", "song", "cosine"):
        table.add_column(col, no_wrap=True, justify="right" if col != "song" else "left")
    for rank, row in enumerate(rows, 1):
        table.add_row(str(rank), escape(row["song_id"]), "n/a" if row["score"] is None else f"{row['score']:.4f}")
    out.print(table)


@app.command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON on standard output.")] = False,
) -> None:
    """Every model: rates, output dims, licences, where its weights come from and whether they are here."""
    from ..extractors import registry

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
                "devices": list(cls.devices), "code_license": cls.licenses.code, "weights_license": cls.licenses.weights,
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
