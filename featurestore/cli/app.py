"""The ``fstore`` Typer app and what its commands share: the consoles, the store argument and option,
error printing, and name lists."""

from __future__ import annotations

import re
import signal
from typing import Annotated, Any, NoReturn, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="fstore",
    help="Time-aligned audio features (OpenL3, CREPE, madmom, MERT) for a folder of songs, in one Zarr store.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
#: messages, progress and summaries go to standard error; results (tables, --json) to standard output
console = Console(stderr=True)
out = Console()

DEFAULT_STORE = "features.zarr"
StoreArgument = Annotated[Optional[str], typer.Argument(
    help="The store (local path, fsspec URL, or an exported HDF5 file). Default: features.zarr.", show_default=False)]
StoreOption = Annotated[Optional[str], typer.Option(
    "--store", help="The store (local path, fsspec URL, or an exported HDF5 file). Default: features.zarr.",
    show_default=False)]


def store_url(positional: str | None = None, option: str | None = None) -> str:
    """Every command takes the store as ``--store``, and those without another argument also as ``STORE``."""
    if positional and option and positional != option:
        raise typer.BadParameter(f"two stores given: {positional} and --store {option}")
    return positional or option or DEFAULT_STORE


def fail(error: Exception | str, code: int = 1) -> NoReturn:
    """Print an error in red (its text escaped: paths may hold rich markup) and exit with ``code``."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    console.print(f"[red]{escape(str(message))}[/]")
    raise typer.Exit(code)


def split_names(values: Sequence[str] | None) -> list[str] | None:
    """Names from repeated, comma- or space-separated option values (``--models a,b c``); None if none."""
    names = [n for v in values or [] for n in re.split(r"[,\s]+", v) if n]
    return list(dict.fromkeys(names)) or None


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM (a scheduler ending the job, ``kill``) stop a command as Ctrl-C does, so that it ends
    the same way: finished work kept, temporary files removed, exit code 130."""
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
