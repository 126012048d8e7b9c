"""Export a store to the classic per-model ``.npy`` layout: ``<output_base>/<model>/<song_id>.npy``.

Shapes are the stored ones: OpenL3 (T, 512), CREPE (T, 2), madmom (T,), MERT (T, 768)
(or (L, T, 768) when several MERT layers were stored). Nested song ids become folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .store import FeatureStore


def write_npy(output_base: str | Path, model: str, song_id: str, data: np.ndarray) -> Path:
    """Write ``<output_base>/<model>/<song_id>.npy`` as float32, atomically (temp file + rename)."""
    dest = Path(output_base) / model / f"{song_id}.npy"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(data, dtype=np.float32))
    os.replace(tmp, dest)
    return dest


@dataclass
class ExportReport:
    written: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # already there, not overwritten


def export_npy(store: FeatureStore, output_base: str | Path, models: Sequence[str] | None = None,
               overwrite: bool = False) -> ExportReport:
    """Write every complete array of ``models`` (default: all) as float32 ``.npy`` files.

    Existing files are kept unless ``overwrite``; each file is written atomically.
    """
    output_base = Path(output_base)
    available = store.models()
    unknown = [m for m in models or [] if m not in available]
    if unknown:
        raise KeyError(f"model(s) {', '.join(unknown)} not in {store.url}; it has: {', '.join(available) or 'none'}")
    report = ExportReport()
    for model in models or available:
        report.written[model] = report.kept[model] = 0
        for song_id in store.songs(model):
            dest = output_base / model / f"{song_id}.npy"
            if dest.exists() and not overwrite:
                report.kept[model] += 1
                continue
            write_npy(output_base, model, song_id, store.array(model, song_id)[...])
            report.written[model] += 1
    return report
