"""The ``fstore`` command line: it maps options to the library's calls, and outcomes to what it prints
and its exit code; the work itself is the library's (:mod:`featurestore.run`, :mod:`featurestore.read`,
:mod:`featurestore.export`, :mod:`featurestore.validate`, :mod:`featurestore.verify`).

Exit codes: 0 everything succeeded, 1 something failed (a file, a model's weights, the store), 2 usage
error, 3 songs left to another live run on the same store (run again once it ends, or free its leases
with ``fstore leases --release-stale`` if it died), 4 (``fstore verify``) no song differs but some could not be
verified, 130 interrupted (Ctrl-C; finished songs are kept). The exports add codes for a target refused before any
work (:mod:`.exports`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import exports, extract, songs, stores, verify  # noqa: F401  (each registers its commands)
from .app import app


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"fstore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Time-aligned audio features (OpenL3, CREPE, madmom, MERT) for a folder of songs, in one Zarr store."""


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
