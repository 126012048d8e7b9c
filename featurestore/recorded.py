"""The extractor a store group's recorded attributes describe, rebuilt with this installation's code.

A group records its model, its fingerprinted options (``config``) and the weights it was computed with
(sha256 and source). Options that do not change the output (a local weights path: its file's digest is
fingerprinted instead) are not recorded as options, so a group computed with local weights is rebuilt
with the file its ``weights`` record names. ``fstore validate`` rebuilds a group's extractor to compare
fingerprints; ``fstore verify`` to recompute its songs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from .errors import FstoreError
from .extractors.base import Extractor


def extractor_for(model_attrs: Mapping[str, Any]) -> Extractor | None:
    """The extractor (unloaded) that the group's config describes, or None if it is not installed here."""
    from .extractors import registry

    try:
        return registry.get(model_attrs["model"])(**(model_attrs.get("config") or {}))
    except (KeyError, ImportError, TypeError, ValueError):  # not installed here, or options it no longer takes
        return None


def is_local(source: Any) -> bool:
    """Whether a recorded weights source is a file or folder (a user's ``--openl3-weights PATH``), not a
    download URL or package: an absolute path, or any path that exists here."""
    return isinstance(source, str) and (Path(source).is_absolute() or Path(source).exists())


def with_local_weights(ext: Extractor | None, model_attrs: Mapping[str, Any]) -> tuple[Extractor | None, str | None]:
    """``ext`` rebuilt with the local weights the group was computed with, when it was (the path options
    are not fingerprinted, so the group's config alone would pick the official or cached weights).

    Returns (extractor or None, why the recorded weights cannot be had, or None): a group whose weights
    are gone or changed cannot be rebuilt as it was computed."""
    local = sorted({w["source"] for w in model_attrs.get("weights") or [] if is_local(w.get("source"))})
    if ext is None or not local:
        return ext, None
    paths = [f.name for f in dataclasses.fields(ext.config) if not f.metadata.get("fingerprint", True)]
    if len(local) != 1 or len(paths) != 1:
        return None, f"computed with local weights {', '.join(local)}, which no single option of the extractor names"
    if not Path(local[0]).exists():
        return None, f"computed with local weights {local[0]}, which are not here"
    try:
        rebuilt = type(ext)(dataclasses.replace(ext.config, **{paths[0]: local[0]}))
        digests = [w.sha256 for w in rebuilt.weights()]
    except FstoreError as e:
        return None, f"computed with local weights {local[0]}, which cannot be read now ({e})"
    if digests != [w.get("sha256") for w in model_attrs.get("weights") or []]:
        return None, (f"computed with local weights {local[0]}, which have changed since (sha256 "
                      f"{digests[0][:12]}, recorded {str(model_attrs['weights'][0].get('sha256'))[:12]})")
    return rebuilt, None
