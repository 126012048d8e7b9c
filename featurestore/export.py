"""Exports of a store: the classic per-model ``.npy`` layout, and one HDF5 file.

``.npy``: ``<output_base>/<model>/<song_id>.npy``, shapes as stored: OpenL3 (T, 512), CREPE (T, 2),
madmom (T,), MERT (T, 768) (or (L, T, 768) when several MERT layers were stored). Nested song ids
become folders. Beside the files, ``<output_base>/<model>/index.csv`` keeps each song's clock (frame
``i`` is at ``t0_s + i * hop_s`` seconds), source file and fingerprint, which bare arrays cannot carry.

HDF5: the store's layout in one file (a group per model with its attributes, one chunked,
compressed dataset per song with its attributes, the failures), read back by
``fs.open_store("x.h5")`` (:class:`~featurestore.store.H5Store`). Attributes go through the store's
one codec (:mod:`featurestore.store.attributes`).

Both read any :class:`~featurestore.store.ReadBackend` and write each file atomically.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._atomic import atomic_path
from .errors import CorruptArray, SongRewritten, StoreError
from .store import FAILURES, ReadBackend
from .store.backend import songs_and_damage
from .store.attributes import encode
from .store.failures import failure_node

#: songs exported at once
EXPORT_THREADS = 8


def write_npy(output_base: str | Path, model: str, song_id: str, data: np.ndarray) -> Path:
    """Write ``<output_base>/<model>/<song_id>.npy`` as float32, atomically (temp file + rename)."""
    dest = Path(output_base) / model / f"{song_id}.npy"
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(data, dtype=np.float32))
    return dest


@dataclass
class ExportReport:
    written: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # already there, not overwritten
    damaged: list[CorruptArray] = field(default_factory=list)  # left out: no file is written for them
    rewritten: list[SongRewritten] = field(default_factory=list)  # another run rewrote them meanwhile: left out

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.rewritten

    def leave_out(self, error: StoreError) -> None:
        (self.damaged if isinstance(error, CorruptArray) else self.rewritten).append(error)  # type: ignore[arg-type]


def _read_listed(store: ReadBackend, model: str, song_id: str) -> Any:
    """A listed song's array to export, read whole before any file is opened (so a damaged or rewritten song
    leaves nothing behind); raises CorruptArray, or SongRewritten when it is incomplete now."""
    arr = store.array(model, song_id)
    if arr is None:  # listed complete a moment ago: another run is rewriting it
        raise SongRewritten(store.url, model, song_id)
    return arr, arr[...]


def export_npy(store: ReadBackend, output_base: str | Path, models: Sequence[str] | None = None,
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

        def one(song_id: str, model: str = model) -> tuple[dict[str, Any], bool] | StoreError:
            """Export one song: (its index row, whether a file was written), or why it is left out."""
            try:
                if (output_base / model / f"{song_id}.npy").exists() and not overwrite:
                    arr = store.array(model, song_id)
                    if arr is None:
                        raise SongRewritten(store.url, model, song_id)
                    return index_row(song_id, arr.attrs, arr.shape), False
                arr, data = _read_listed(store, model, song_id)
                write_npy(output_base, model, song_id, data)
            except (CorruptArray, SongRewritten) as e:
                return e
            return index_row(song_id, arr.attrs, arr.shape), True

        songs, listed_damage = songs_and_damage(store, model)
        # songs overlap their reads (store round trips) and fsyncs; the work per song is small
        with ThreadPoolExecutor(EXPORT_THREADS) as pool:
            done = list(pool.map(one, songs))
        for error in listed_damage + [d for d in done if isinstance(d, StoreError)]:
            report.leave_out(error)
        exported = [d for d in done if not isinstance(d, StoreError)]
        report.written[model] = sum(written for _, written in exported)
        report.kept[model] = len(exported) - report.written[model]
        write_index(output_base / model / INDEX, [row for row, _ in exported])
    return report


INDEX = "index.csv"
INDEX_COLUMNS = ("song_id", "source_path", "n_frames", "t0_s", "hop_s", "frame_rate_hz", "sample_rate",
                 "duration_s", "fingerprint")


def index_row(song_id: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """One line of ``index.csv``: where the song came from and its frame clock."""
    return {
        "song_id": song_id,
        "source_path": (attrs.get("source") or {}).get("path", ""),
        "n_frames": shape[list(attrs["dims"]).index("time")],
        **{k: attrs.get(k) for k in ("t0_s", "hop_s", "frame_rate_hz", "sample_rate", "duration_s", "fingerprint")},
    }


def write_index(dest: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``index.csv`` (a header, then one row per song, sorted by id) atomically."""
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["song_id"]))


#: gzip is the compression every HDF5 reader has; level 4 and byte shuffle as for the Zarr store; Fletcher-32
#: checksums every chunk, as crc32c does in the Zarr store
_DATASET_OPTIONS = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}


def _put_attrs(node: Any, attrs: Mapping[str, Any]) -> None:
    for key, value in encode(attrs).items():
        node.attrs[key] = value


def export_hdf5(store: ReadBackend, out: str | os.PathLike[str], models: Sequence[str] | None = None,
                overwrite: bool = False) -> ExportReport:
    """Write the complete arrays of ``models`` (default: all), their group attributes and the
    recorded failures into one HDF5 file, atomically (a temporary file renamed at the end).

    Every dataset carries HDF5's Fletcher-32 checksum. A damaged song is left out of the file and named
    in the report. Refuses to replace ``out`` unless ``overwrite``.
    """
    import h5py

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; use --overwrite to replace it")
    available = store.models()
    unknown = [m for m in models or [] if m not in available]
    if unknown:
        raise KeyError(f"model(s) {', '.join(unknown)} not in {store.url}; it has: {', '.join(available) or 'none'}")
    report = ExportReport()
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        _put_attrs(h5, store.root_attrs())
        for model in models or available:
            group = h5.create_group(model)
            _put_attrs(group, store.model_attrs(model))
            report.written[model] = 0
            songs, damaged = songs_and_damage(store, model)
            report.damaged += damaged
            for song in songs:
                try:
                    arr, data = _read_listed(store, model, song)
                except (CorruptArray, SongRewritten) as e:
                    report.leave_out(e)
                    continue
                ds = group.create_dataset(song, data=data, chunks=arr.chunks, **_DATASET_OPTIONS)
                _put_attrs(ds, arr.attrs)
                report.written[model] += 1
            for failure in store.failures(model):
                _put_attrs(h5.require_group(f"{FAILURES}/{model}/{failure_node(failure['song_id'])}"), failure)
    return report
