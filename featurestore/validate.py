"""Check a store: JSON Schemas, completeness, shapes against each model's time formula,
NaN/inf, fingerprints, and nodes that do not belong.

``fix=True`` removes incomplete arrays only (they are never results); everything else is
reported, not changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .errors import FstoreError
from .recorded import extractor_for, with_local_weights
from .store import FAILURES, FeatureStore

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
    kind: str  # schema | incomplete | shape | nonfinite | stale | orphan
    where: str
    message: str


@dataclass
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked here, and why

    @property
    def ok(self) -> bool:
        return all(p.kind == "incomplete" and p.where in self.fixed for p in self.problems)


def _current_fingerprint(ext) -> str | None:
    """The fingerprint today's code and weights give for the group's config (None: weights not here)."""
    try:
        return ext.fingerprint if type(ext).weights_info(ext.config).available else None
    except FstoreError:  # weights missing or not the published ones; other errors (disk, network) surface
        return None


def validate_store(store: FeatureStore, fix: bool = False) -> Report:
    report = Report()

    def problem(kind: str, where: str, message: str) -> None:
        report.problems.append(Problem(kind, where, message))

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
        for song in store.songs(model, complete_only=False):
            where = f"{model}/{song}"
            report.checked += 1
            arr = store.array(model, song, complete_only=False)
            if arr is None:
                problem("incomplete", where, "metadata unreadable (interrupted write)")
                continue
            attrs = arr.attrs
            if attrs.get("complete") is not True:
                problem("incomplete", where, "not marked complete (interrupted write); the next run redoes it")
                if fix:
                    store.remove(model, song)
                    report.fixed.append(where)
                continue
            for msg in schema_errors("array", attrs):
                problem("schema", where, msg)
            if list(attrs.get("dims", [])) != list(arr.dimension_names or []):
                problem("schema", where, f"dims {attrs.get('dims')} differ from dimension_names {arr.dimension_names}")
            same_config = attrs.get("fingerprint") == group_attrs.get("fingerprint")
            expected = ext.output_shape(attrs.get("n_samples", 0)) if ext is not None and same_config else None
            if expected is not None and tuple(arr.shape) != expected:
                problem("shape", where, f"shape {arr.shape}, the {model} time formula gives {expected} for {attrs.get('n_samples')} samples")
            if not np.isfinite(arr[...]).all():
                problem("nonfinite", where, "contains NaN or infinite values")
            if attrs.get("fingerprint") != group_attrs.get("fingerprint"):
                problem("stale", where, "computed with other weights/options than the group's; re-run with --overwrite to recompute the group")
    for failure in store.failures():
        for msg in schema_errors("failure", failure):
            problem("schema", f"{FAILURES}/{failure.get('model')}/{failure.get('song_id')}", msg)
    return report
