"""fstore: a time-aligned audio feature store.

    import featurestore as fs
    store = fs.open_store("features.zarr")
    da = store.load("song1", "madmom")        # xr.DataArray, time coordinate in seconds

Importing this package is cheap: no torch, transformers or onnxruntime until a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from .read import StoreReader, decode_attrs, open_store

__all__ = ["StoreReader", "__version__", "decode_attrs", "open_store"]


def __getattr__(name: str) -> Any:
    if name in ("open_store", "StoreReader", "decode_attrs"):
        from . import read

        return getattr(read, name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
