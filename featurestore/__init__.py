"""fstore: a time-aligned audio feature store.

    import featurestore as fs
    summary = fs.extract("audio_files", store="features.zarr", models=["madmom"])   # fstore extract
    store = fs.open_store("features.zarr")
    da = store.load("song1", "madmom")        # xr.DataArray, time coordinate in seconds

Importing this package is cheap: no torch, transformers or onnxruntime until a model is loaded.
The architecture (which module owns what) is described in docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

if TYPE_CHECKING:
    from .read import StoreReader, decode_attrs, open_store
    from .run import extract

__all__ = ["StoreReader", "__version__", "decode_attrs", "extract", "open_store"]

_LAZY = {"open_store": "read", "StoreReader": "read", "decode_attrs": "read", "extract": "run"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
