"""Reading Keras HDF5 weights files (the format of the original OpenL3 and CREPE weights), with h5py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_weighted_layers(path: str | Path) -> list[tuple[str, list[np.ndarray]]]:
    """The layers of a Keras weights file that hold weights, in the file's ``layer_names`` order.

    Keras loads such files topologically, and the dataset names inside a layer group differ
    between published files (``conv1/kernel:0`` in one, ``conv1_3/kernel:0`` in another), so
    each layer's arrays are looked up through its group's ``weight_names`` attribute.

    Returns
    -------
    list of (str, list of np.ndarray)
        Layer name and its arrays (float32) in ``weight_names`` order, e.g. (kernel, bias) or
        (gamma, beta, moving_mean, moving_variance).

    Raises
    ------
    ValueError
        When the file is not a Keras weights file, or a listed layer or variable is missing
        (names the file and the layer).
    """
    import h5py

    layers: list[tuple[str, list[np.ndarray]]] = []
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: not a Keras weights file (no 'layer_names' attribute)")
        for name in (_text(n) for n in root.attrs["layer_names"]):
            if name not in root:
                raise ValueError(f"{path}: layer {name!r} is listed in layer_names but missing from the file")
            group = root[name]
            names = [_text(n) for n in group.attrs.get("weight_names", [])]
            lacking = [n for n in names if n not in group]
            if lacking:
                raise ValueError(f"{path}: layer {name!r} lacks its variables {', '.join(lacking)}")
            if names:
                layers.append((name, [np.asarray(group[n], dtype=np.float32) for n in names]))
    return layers
