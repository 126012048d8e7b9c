"""Check a store: JSON Schemas, completeness, every chunk decoded against its checksum, shapes against
each model's time formula, NaN/inf, fingerprints, and nodes that do not belong.

``fix=True`` removes incomplete and damaged arrays (they are never results; a damaged one is recorded as a
failure, so the next run recomputes it), except those a live run holds; everything else is reported, not
changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

import numpy as np

from .errors import CorruptArray, FstoreError
from .recorded import extractor_for, with_local_weights
from .store import FAILURES, FeatureStore
from .store.backend import COMPLETE, DAMAGED, INCOMPLETE

SCHEMAS = ("root", "time", "group", "array", "failure")


@lru_cache(maxsize=None)
def _validators() -> dict[str, Any]:
    import jsonschema
    from referencing import Registry, Resource

    docs = {name: json.loads(resources.files("featurestore").joinpath("schemas", f"{name}.json").read_text()) for name in SCHEMAS}
    registry = Registry().with_resources((doc["$id"], Resource.from_contents(doc)) for doc in docs.values())
    return {
        name: jsonschema.Draft202012Validator(doc, registry=registry, format_checker=jsonschema.FormatChecker())
        for name, doc in docs.items()
    }


def schema_errors(kind: str, attrs: Any) -> list[str]:
    """Messages of every violation of schema ``kind`` (root, group, array, failure) by ``attrs``."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in _validators()[kind].iter_errors(attrs)]


@dataclass(frozen=True)
class Problem:
    kind: str  # schema | incomplete | corrupt | shape | nonfinite | stale | orphan
    where: str
    message: str


@dataclass
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked here, and why
    in_progress: list[str] = field(default_factory=list)  # arrays a live run holds: left as they are

    @property
    def ok(self) -> bool:
        return all(p.kind == "incomplete" and p.where in self.fixed for p in self.problems)


def _current_fingerprint(ext) -> str | None:
    """The fingerprint today's code and weights give for the group's config (None: weights not here)."""
    try:
        return ext.fingerprint if type(ext).weights_info(ext.config).available else None
    except FstoreError:  # weights missing or not the published ones; other errors (disk, network) surface
        return None


def validate_store(store: FeatureStore, fix: bool = False, quick: bool = False) -> Report:
    """Check every array of ``store``, and with ``fix`` remove the incomplete and damaged ones.

    Every chunk of every complete array is read and decoded (``quick``: metadata only), chunk by chunk
    along time, so memory holds one chunk; damage (a missing chunk, a checksum mismatch, bytes that do
    not decode, unreadable metadata, a shape that disagrees with the stored chunks) is a ``corrupt``
    problem naming its cause, and the check goes on with the next array. ``fix`` leaves alone every song
    a live run holds a lease on (reported in ``in_progress``): its array may be being written.
    """
    report = Report()

    def problem(kind: str, where: str, message: str) -> None:
        report.problems.append(Problem(kind, where, message))

    live = {lease["song_id"] for lease in store.leases.held() if not lease["stale"]}
    for msg in schema_errors("root", store.root_attrs()):
        problem("schema", "/", msg)
    for name in store.unexpected_nodes():
        problem("orphan", name, "array at the store root (songs live in model groups)")
    for model in store.models():
        group_attrs = store.model_attrs(model)
        for msg in schema_errors("group", group_attrs):
            problem("schema", model, msg)
        ext = extractor_for(group_attrs)
        checked, why_not = with_local_weights(ext, group_attrs)
        if why_not is not None:
            report.notes.append(f"{model}: {why_not}: the fingerprint cannot be checked")
        current = _current_fingerprint(checked) if checked is not None else None
        if current is not None and current != group_attrs.get("fingerprint"):
            problem("stale", model, "the installed extractor (code or weights) now computes something else; "
                    "re-run with --overwrite to recompute the group")
        causes = store.damaged(model)
        for song, state in sorted(store.states(model).items()):
            where = f"{model}/{song}"
            report.checked += 1
            if song in live and state != COMPLETE:
                report.in_progress.append(where)  # a live run is writing it
                continue
            if state == INCOMPLETE:
                found = Problem("incomplete", where, "not marked complete (interrupted write); the next run redoes it")
            elif state == DAMAGED:
                found = Problem("corrupt", where, causes.get(song, "unreadable metadata"))
            else:
                found = _check_array(store, model, song, group_attrs, ext, quick, problem)
            if found is None:
                continue
            report.problems.append(found)
            if fix and song in live:
                report.in_progress.append(where)
            elif fix:
                _remove(store, model, song, found)
                report.fixed.append(where)
    for failure in store.failures():
        for msg in schema_errors("failure", failure):
            problem("schema", f"{FAILURES}/{failure.get('model')}/{failure.get('song_id')}", msg)
    return report


def _check_array(store: FeatureStore, model: str, song: str, group_attrs: dict[str, Any], ext: Any, quick: bool,
                 problem: Any) -> Problem | None:
    """The checks of one complete array: what is wrong but leaves the array usable goes to ``problem``;
    damage found while reading it is returned, as the ``corrupt`` problem that ``--fix`` acts on."""
    where = f"{model}/{song}"
    try:
        arr = store.array(model, song, complete_only=False)
        attrs = arr.attrs
        for msg in schema_errors("array", attrs):
            problem("schema", where, msg)
        if list(attrs.get("dims", [])) != list(arr.dimension_names or []):
            problem("schema", where, f"dims {attrs.get('dims')} differ from dimension_names {arr.dimension_names}")
        same_config = attrs.get("fingerprint") == group_attrs.get("fingerprint")
        expected = ext.output_shape(attrs.get("n_samples", 0)) if ext is not None and same_config else None
        if expected is not None and tuple(arr.shape) != expected:
            problem("shape", where, f"shape {arr.shape}, the {model} time formula gives {expected} for "
                                    f"{attrs.get('n_samples')} samples")
        if not same_config:
            problem("stale", where, "computed with other weights/options than the group's; re-run with --overwrite "
                                    "to recompute the group")
        if quick:
            return None
        extra = store.chunks_beyond_shape(model, song)
        if extra:
            raise CorruptArray(store.url, model, song, "shape mismatch", extra[0],
                               f"{len(extra)} chunks lie beyond the shape {arr.shape} its metadata gives")
        finite = all([np.isfinite(block).all() for block in _blocks(arr)])  # every chunk read, even after a NaN
        if not finite:
            problem("nonfinite", where, "contains NaN or infinite values")
    except CorruptArray as e:
        return Problem("corrupt", where, e.what)
    return None


def _blocks(arr: Any) -> Iterator[np.ndarray]:
    """The array's values one time chunk at a time (every chunk is read and decoded; memory holds one)."""
    axis = list(arr.dims).index("time")
    step = arr.chunks[axis]
    for start in range(0, max(arr.shape[axis], 1), step):
        yield arr[tuple(slice(start, start + step) if i == axis else slice(None) for i in range(arr.ndim))]


def _remove(store: FeatureStore, model: str, song: str, found: Problem) -> None:
    """Remove an incomplete or damaged array; a damaged one is recorded as a failure, so ``fstore info`` shows
    it and ``fstore extract`` (or ``--retry-failed``) recomputes it."""
    store.remove(model, song)
    if found.kind == "corrupt":
        store.record_failure(model, song, f"damaged ({found.message}); removed by fstore validate --fix",
                             "CorruptArray", None)
