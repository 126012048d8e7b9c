"""Registry of extractors by name, imported lazily.

Listing names or reading a class's metadata never imports torch, transformers or
onnxruntime: each entry is a ``"module:Class"`` string imported on first use, and the
model modules themselves import their heavy dependencies only in ``_load``. Third-party
extractors register through the ``fstore.extractors`` entry-point group, or at run time
with :func:`register` (a class, or a ``"module:Class"`` string that worker processes can
import too).
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
#: run-time registrations (name -> class or "module:Class"); None hides a built-in or plugin
_registered: dict[str, type[Extractor] | str | None] = {}


def _targets() -> dict[str, type[Extractor] | str]:
    targets: dict[str, type[Extractor] | str] = dict(BUILTIN)
    for ep in entry_points(group="fstore.extractors"):
        targets.setdefault(ep.name, ep.value)
    for name, target in _registered.items():
        if target is None:
            targets.pop(name, None)
        else:
            targets[name] = target
    return targets


def register(name: str, target: type[Extractor] | str) -> None:
    """Make ``target`` (an Extractor class or ``"module:Class"``) the model called ``name``.

    Replaces a built-in or plugin of the same name for this process. A class registered here
    is not seen by spawned worker processes; a ``"module:Class"`` string is, if they register it too.
    """
    _registered[name] = target
    _classes.pop(name, None)


def unregister(name: str) -> None:
    """Remove ``name`` from the registry of this process (built-ins and plugins included)."""
    _registered.pop(name, None)
    if name in _targets():
        _registered[name] = None
    _classes.pop(name, None)


def reset() -> None:
    """Forget every :func:`register` / :func:`unregister` of this process."""
    _registered.clear()
    _classes.clear()


def names() -> list[str]:
    """Every registered model name, built-ins first."""
    return list(_targets())


def get(name: str) -> type[Extractor]:
    """The extractor class registered as ``name`` (imports its module, not its heavy deps)."""
    if name not in _classes:
        targets = _targets()
        if name not in targets:
            raise KeyError(f"unknown model {name!r}; valid models: {', '.join(targets)}")
        target = targets[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
        else:
            cls = target
        if not (isinstance(cls, type) and issubclass(cls, Extractor)) or cls.name != name:
            raise TypeError(f"{target} is not an Extractor named {name!r}")
        _classes[name] = cls
    return _classes[name]


def create(name: str, **options: Any) -> Extractor:
    """A new, unloaded extractor; ``options`` are fields of its ``Config``."""
    return get(name)(**options)
