"""The attributes a store records, built in one place, and the one codec for formats that hold only
strings and numbers.

A model group's attributes are the extractor's description (``Extractor.describe()``: clock, dims,
feature names, weights, fingerprint, ...) plus how the group stores it (its name and dtype). A song's
array carries what a reader needs without the group: the clock again, the song's duration and sample
count, its source file and the fingerprint, plus ``dims`` and the write time (:func:`array_attributes`);
``complete: true`` is the write protocol's last step and is added by the writer alone.

netCDF, HDF5 and xarray's writers accept attributes that are strings or numbers. :func:`encode`
keeps those and writes every other value (dicts, lists, booleans, None) as JSON text, listing the
names of those attributes under :data:`JSON_KEYS`, so :func:`decode` gives back exactly what was
encoded. Attributes encoded before that list existed are decoded by their look.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from .layout import now_iso

#: the attribute that lists which other attributes hold JSON text
JSON_KEYS = "_json"

#: the description keys a song's array repeats (a reader of one array needs no group)
_ARRAY_KEYS = ("model", "sample_rate", "hop_samples", "t0_samples", "hop_s", "t0_s", "frame_rate_hz", "fingerprint")


def group_attributes(description: Mapping[str, Any], group: str, dtype: str) -> dict[str, Any]:
    """A model group's attributes: the extractor's ``description`` plus the group's name and storage dtype."""
    return {**description, "group": group, "dtype": dtype}


def array_attributes(description: Mapping[str, Any], dims: Sequence[str], shape: Sequence[int], n_samples: int,
                     duration_s: float, source: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """One song's array attributes (all but ``complete``): its clock, what computed it, from what, when, and its
    ``shape`` again (schema 3), so that metadata whose shape was changed is told from the data."""
    attrs: dict[str, Any] = {k: description[k] for k in _ARRAY_KEYS if k in description}
    attrs.update(dtype=dtype, duration_s=duration_s, n_samples=n_samples, source=dict(source), dims=list(dims),
                 shape=[int(n) for n in shape])
    if description.get("feature_names") is not None:
        attrs["feature_names"] = list(description["feature_names"])
    if description.get("coords"):
        attrs["coords"] = description["coords"]
    attrs["written"] = now_iso()
    return attrs


def dim_labels(attrs: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The values along an array's dims other than time, where its attributes record them: the feature names
    (CREPE's frequency and confidence) and ``coords`` (MERT's layer indices). Readers give them as coordinates,
    the HDF5 export as netCDF coordinate variables."""
    labels: dict[str, list[Any]] = {}
    if "feature" in attrs["dims"] and attrs.get("feature_names"):
        labels["feature"] = list(attrs["feature_names"])
    for dim, values in (attrs.get("coords") or {}).items():
        labels[dim] = list(values)
    return labels


def configuration_key(group_attrs: Mapping[str, Any]) -> tuple[str, str]:
    """What a group's arrays were computed and stored with: (extractor fingerprint, storage dtype)."""
    return str(group_attrs.get("fingerprint")), str(group_attrs.get("dtype", "float32"))


def configuration_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(what, old value, new value) for each option, weights file or storage setting that differs."""
    diffs: list[tuple[str, Any, Any]] = []
    if old.get("model") != new.get("model"):
        diffs.append(("model", old.get("model"), new.get("model")))
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            diffs.append((key, old_cfg.get(key, "(unset)"), new_cfg.get(key, "(unset)")))
    old_w = [(w.get("source"), w.get("sha256")) for w in old.get("weights") or []]
    new_w = [(w.get("source"), w.get("sha256")) for w in new.get("weights") or []]
    if [sha for _, sha in old_w] != [sha for _, sha in new_w]:
        diffs.append(("weights", ", ".join(f"{src} ({sha[:12]})" for src, sha in old_w),
                      ", ".join(f"{src} ({sha[:12]})" for src, sha in new_w)))
    if old.get("dtype", "float32") != new.get("dtype", "float32"):
        diffs.append(("dtype", old.get("dtype", "float32"), new.get("dtype", "float32")))
    if not diffs and old.get("fingerprint") != new.get("fingerprint"):
        diffs.append(("implementation", f"fingerprint {str(old.get('fingerprint'))[:12]}",
                      f"fingerprint {str(new.get('fingerprint'))[:12]} (the installed code computes something else)"))
    return diffs


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def encode(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes any netCDF/Zarr/HDF5 writer accepts: str, int and float kept; anything else as JSON text,
    its name listed under :data:`JSON_KEYS`."""
    out = {k: v if _plain(v) else json.dumps(v) for k, v in attrs.items() if k != JSON_KEYS}
    encoded = sorted(k for k, v in attrs.items() if k != JSON_KEYS and not _plain(v))
    if encoded:
        out[JSON_KEYS] = json.dumps(encoded)
    return out


def decode(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode`. Without a :data:`JSON_KEYS` list (attributes encoded by an earlier
    version), text that looks like a JSON object, list, boolean or null is decoded."""
    listed = attrs.get(JSON_KEYS)
    if isinstance(listed, np.ndarray) and listed.shape == (1,):
        listed = listed[0]
    names = set(json.loads(_text(listed))) if listed is not None else None
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key == JSON_KEYS:
            continue
        if isinstance(value, np.ndarray) and value.shape == (1,):
            value = value[0]  # netCDF tools (nccopy) rewrite each attribute as a one-element array
        value = _text(value) if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value
        if isinstance(value, str) and (key in names if names is not None else _looks_like_json(value)):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _looks_like_json(text: str) -> bool:
    return text[:1] in ("{", "[") or text in ("true", "false", "null")
