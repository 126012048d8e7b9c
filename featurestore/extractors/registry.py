"""Registry of extractors by name, imported lazily.

Listing names or reading a class's metadata never imports torch, transformers or
onnxruntime: each entry is a ``"module:Class"`` string imported on first use, and the
model modules themselves import their heavy dependencies only in ``_load``. Third-party
extractors register through the ``fstore.extractors`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .base import Extractor

#: the built-in models, in the order runs process them
BUILTIN: dict[str, str] = {
    "openl3": "featurestore.extractors.openl3:OpenL3",
    "crepe": "featurestore.extractors.crepe:Crepe",
    "madmom": "featurestore.extractors.madmom:MadmomBeats",
    "mert": "featurestore.extractors.mert:Mert",
}

_classes: dict[str, type[Extractor]] = {}


def _targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    for ep in entry_points(group="fstore.extractors"):
        targets.setdefault(ep.name, ep.value)
    return targets


def names() -> list[str]:
    """Every registered model name, built-ins first."""
    return list(_targets())


def get(name: str) -> type[Extractor]:
    """The extractor class registered as ``name`` (imports its module, not its heavy deps)."""
    if name not in _classes:
        targets = _targets()
        if name not in targets:
            raise KeyError(f"unknown model {name!r}; valid models: {', '.join(targets)}")
        module, _, attr = targets[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Extractor)) or cls.name != name:
            raise TypeError(f"{targets[name]} is not an Extractor named {name!r}")
        _classes[name] = cls
    return _classes[name]


def create(name: str, **options: Any) -> Extractor:
    """A new, unloaded extractor; ``options`` are fields of its ``Config``."""
    return get(name)(**options)
