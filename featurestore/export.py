"""Exports of a store: the classic per-model ``.npy`` layout, and one HDF5 file.

``.npy``: ``<output_base>/<model>/<song_id>.npy``, shapes as stored: OpenL3 (T, 512), CREPE (T, 2),
madmom (T,), MERT (T, 768) (or (L, T, 768) when several MERT layers were stored). Nested song ids
become folders. Beside the files, ``<output_base>/<model>/index.csv`` describes each file on disk: the
song's clock (frame ``i`` is at ``t0_s + i * hop_s`` seconds), source file, fingerprint and the
store's write time, which bare arrays cannot carry, and whether the file is ``stale`` (kept without
``overwrite`` though the store now holds another array).

HDF5: the store in one file that netCDF-4 readers read too (a group per model with its attributes, a netCDF
group per song: its array, chunked, compressed and Fletcher-32 checksummed, with its attributes and a ``time``
coordinate in seconds; the failures; :mod:`featurestore.store.hdf5_layout`), read back by
``fs.open_store("x.h5")`` (:class:`~featurestore.store.H5Store`). Attributes go through the store's
one codec (:mod:`featurestore.store.attributes`).

Both read any :class:`~featurestore.store.ReadBackend`, check their target before any work
(:class:`~featurestore.errors.ExportTarget`) and write each file atomically: an interrupted export
leaves whole files and no temporary ones. A damaged song (:class:`~featurestore.errors.CorruptArray`), or
one another run rewrites meanwhile (:class:`~featurestore.errors.SongRewritten`), is left out and named in
the report: no partial or zero-filled file is ever written for it.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._atomic import atomic_path
from .errors import CorruptArray, ExportTarget, SongRewritten, StoreError
from .store import FAILURES, ReadBackend
from .store.attributes import encode
from .store.backend import songs_and_damage
from .store.failures import failure_node
from .store.hdf5_layout import LAYOUT, LAYOUT_ATTR, node_path, require_groups, write_song

#: songs exported at once
EXPORT_THREADS = 8
#: what a song's file is after an export: written now, kept as it was (the same array as the store's),
#: or kept as it was although the store now holds another array
WRITTEN, KEPT, STALE = "written", "kept", "stale"


def write_npy(output_base: str | Path, model: str, song_id: str, data: np.ndarray) -> Path:
    """Write ``<output_base>/<model>/<song_id>.npy`` as float32, atomically (temp file + rename)."""
    dest = Path(output_base) / model / f"{song_id}.npy"
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(data, dtype=np.float32))
    return dest


@dataclass
class ExportReport:
    written: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # already there, the same array as the store's
    stale: dict[str, list[str]] = field(default_factory=dict)  # already there, kept, but the store's array differs
    damaged: list[CorruptArray] = field(default_factory=list)  # left out: no file is written for them
    rewritten: list[SongRewritten] = field(default_factory=list)  # another run rewrote them meanwhile: left out

    def leave_out(self, error: StoreError) -> None:
        (self.damaged if isinstance(error, CorruptArray) else self.rewritten).append(error)  # type: ignore[arg-type]


def _listed(store: ReadBackend, model: str, song_id: str) -> Any:
    """A listed song's array; SongRewritten when it is incomplete now (another run is rewriting it)."""
    arr = store.array(model, song_id)
    if arr is None:
        raise SongRewritten(store.url, model, song_id)
    return arr


def _models(store: ReadBackend, models: Sequence[str] | None) -> list[str]:
    """The groups to export: ``models``, or every group of the store; KeyError names unknown ones."""
    available = store.models()
    unknown = [m for m in models or [] if m not in available]
    if unknown:
        raise KeyError(f"model(s) {', '.join(unknown)} not in {store.url}; it has: {', '.join(available) or 'none'}")
    return list(models or available)


def _local_path(url: str) -> Path | None:
    """Where a store lies on this machine's disk (None for a remote or in-memory one)."""
    url = url.removeprefix("file://")
    return None if "://" in url else Path(url).resolve()


def refuse_the_store(store_url: str, target: str | Path, option: str) -> None:
    """An export never writes into a store: ``target`` may be neither the store at ``store_url`` nor inside
    it (:class:`ExportTarget` ``"store"``; ``option`` names what to change)."""
    location, resolved = _local_path(store_url), Path(target).resolve()
    if location is not None and (resolved == location or location in resolved.parents):
        raise ExportTarget(f"{target}: {'is' if resolved == location else 'lies inside'} the store {store_url}; "
                           f"exports never go into a store: choose another {option}", "store")


def _refuse_unwritable(target: Path, folder: Path) -> None:
    """``target`` goes into ``folder``, which (or, where it does not exist yet, the nearest folder above
    it) must be writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ExportTarget(f"{existing}: a file, not a folder, where {folder} should be", "file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportTarget(f"{target}: cannot be written ({existing} is read-only for this user)", "read-only")


def check_npy_target(store: ReadBackend, output_base: str | Path, models: Sequence[str]) -> None:
    """Refuse, before any work, an ``output_base`` that cannot take the ``.npy`` files of ``models``
    (:class:`ExportTarget`): the store itself or a folder inside it, a file, a read-only folder."""
    output_base = Path(output_base)
    refuse_the_store(store.url, output_base, "--output-base")
    for folder in (output_base, *(output_base / m for m in models)):
        if folder.exists() and not folder.is_dir():
            raise ExportTarget(f"{folder}: a file, not a folder; choose another --output-base", "file")
        _refuse_unwritable(folder, folder)


def check_hdf5_target(store: ReadBackend, out: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, an HDF5 target that cannot be written (:class:`ExportTarget`): the store
    itself or a file inside it, a folder, an existing file without ``overwrite``, a read-only folder."""
    out = Path(out)
    refuse_the_store(store.url, out, "file name")
    if out.is_dir():
        raise ExportTarget(f"{out}: a folder; export-hdf5 writes one file, e.g. {out / 'features.h5'}", "folder")
    if out.exists() and not overwrite:
        raise ExportTarget(f"{out} exists; use --overwrite to replace it", "file")
    _refuse_unwritable(out, out.parent)


def export_npy(store: ReadBackend, output_base: str | Path, models: Sequence[str] | None = None,
               overwrite: bool = False) -> ExportReport:
    """Write every complete array of ``models`` (default: all) as float32 ``.npy`` files, and each
    model's ``index.csv``.

    Existing files are kept unless ``overwrite``: a kept file whose shape (from its header) or
    array differs from the store's is reported stale, and its row in ``index.csv`` keeps describing
    the file (the row of the export that wrote it, else what its header says). The target is checked
    first (:func:`check_npy_target`); each file is written atomically; an interrupted export finishes
    the files it is writing, starts no other, and writes the index of the files on disk.
    """
    output_base = Path(output_base)
    chosen = _models(store, models)
    check_npy_target(store, output_base, chosen)
    report = ExportReport()
    for model in chosen:
        statuses = _export_model(store, output_base / model, model, overwrite, report)
        report.written[model] = sum(s == WRITTEN for s in statuses.values())
        report.kept[model] = sum(s == KEPT for s in statuses.values())
        report.stale[model] = sorted(song for song, s in statuses.items() if s == STALE)
    return report


def _export_model(store: ReadBackend, folder: Path, model: str, overwrite: bool,
                  report: ExportReport) -> dict[str, str]:
    """Export one group into ``folder`` and write its index; song id -> :data:`WRITTEN`, :data:`KEPT` or
    :data:`STALE`. A damaged or rewritten song goes to ``report`` (its file, if any, is left as it is)."""
    previous = _read_index(folder / INDEX)
    songs, damaged = songs_and_damage(store, model)
    for error in damaged:
        report.leave_out(error)

    def one(song_id: str) -> tuple[dict[str, Any], str] | StoreError:
        """Export one song: (the index row of its file, what became of the file), or why it is left out."""
        try:
            arr = _listed(store, model, song_id)
            row = {**index_row(song_id, arr.attrs, arr.shape), "stale": "false"}
            dest = folder / f"{song_id}.npy"
            if overwrite or not dest.exists():
                write_npy(folder.parent, model, song_id, arr[...])  # read whole before the file is opened
                return row, WRITTEN
            if _same_as_stored(dest, arr, row, previous.get(song_id)):
                return row, KEPT
            return _stale_row(dest, song_id, arr, previous.get(song_id)), STALE
        except (CorruptArray, SongRewritten) as e:
            return e

    done: dict[str, tuple[dict[str, Any], str]] = {}
    # songs overlap their reads (store round trips) and fsyncs; the work per song is small
    pool = ThreadPoolExecutor(EXPORT_THREADS)
    futures: list[tuple[str, Future]] = []
    try:
        for song in songs:
            futures.append((song, pool.submit(one, song)))
        for song, future in futures:
            outcome = future.result()
            if isinstance(outcome, StoreError):
                report.leave_out(outcome)
            else:
                done[song] = outcome
    finally:  # interrupted or failed: the files being written are finished, no other is started
        pool.shutdown(wait=True, cancel_futures=True)
        for song, future in futures:
            if song not in done and future.done() and not future.cancelled() and future.exception() is None \
                    and not isinstance(future.result(), StoreError):
                done[song] = future.result()
        untouched = [previous[s] for s in songs if s not in done and s in previous and (folder / f"{s}.npy").exists()]
        write_index(folder / INDEX, [row for row, _ in done.values()] + untouched)
    return {song: status for song, (_, status) in done.items()}


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from a ``.npy`` file's header, without reading its data; None if it is not one."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                return None
            shape, _, dtype = read[version](f)
    except (OSError, ValueError):
        return None
    return tuple(shape), np.dtype(dtype)


def _same_as_stored(dest: Path, arr: Any, row: dict[str, Any], previous: dict[str, str] | None) -> bool:
    """Whether the file at ``dest`` holds the store's array: its header's shape first; then the row of the
    export that wrote it, equal to the store's (write time, source checksum, fingerprint, ...); only
    without such a row, the arrays themselves."""
    if _npy_header(dest) != (tuple(arr.shape), np.dtype(np.float32)):
        return False
    if previous is not None and all(previous.get(k) == _text(row[k]) for k in INDEX_COLUMNS if k != "stale"):
        return True
    try:
        on_disk = np.load(dest)
    except (OSError, ValueError):
        return False
    return bool(np.array_equal(on_disk, np.asarray(arr[...], dtype=np.float32), equal_nan=True))


def _stale_row(dest: Path, song_id: str, arr: Any, previous: dict[str, str] | None) -> dict[str, Any]:
    """The index row of a kept file that differs from the store's array: the row of the export that wrote it
    (when its frame count matches the file's header), else the song id and the frames its header says."""
    header = _npy_header(dest)
    axis = list(arr.attrs["dims"]).index("time")
    frames = str(header[0][axis]) if header is not None and len(header[0]) == len(arr.shape) else ""
    if previous is not None and previous.get("n_frames") == frames:
        return {**previous, "stale": "true"}
    return {**dict.fromkeys(INDEX_COLUMNS, ""), "song_id": song_id, "n_frames": frames, "stale": "true"}


INDEX = "index.csv"
INDEX_COLUMNS = ("song_id", "source_path", "n_frames", "t0_s", "hop_s", "frame_rate_hz", "sample_rate",
                 "duration_s", "fingerprint", "source_sha256", "written", "stale")


def index_row(song_id: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """One line of ``index.csv`` for the store's array: where the song came from, its frame clock, and
    when the store wrote it (``stale`` is the export's to say)."""
    source = attrs.get("source") or {}
    return {
        "song_id": song_id,
        "source_path": source.get("path", ""),
        "n_frames": shape[list(attrs["dims"]).index("time")],
        **{k: attrs.get(k) for k in ("t0_s", "hop_s", "frame_rate_hz", "sample_rate", "duration_s", "fingerprint")},
        "source_sha256": source.get("sha256", ""),
        "written": attrs.get("written", ""),
    }


def _text(value: Any) -> str:
    """A value as ``csv`` writes it."""
    return "" if value is None else str(value)


def _read_index(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an existing ``index.csv`` by song id (empty when there is none, or it cannot be read)."""
    try:
        with open(path, newline="") as f:
            return {row["song_id"]: row for row in csv.DictReader(f) if row.get("song_id")}
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}


def write_index(dest: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``index.csv`` (a header, then one row per song, sorted by id) atomically."""
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, INDEX_COLUMNS, extrasaction="ignore")
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
    recorded failures into one HDF5 file, atomically (a temporary file renamed at the end), each song as a
    netCDF-4 group with its ``time`` coordinate (:mod:`~featurestore.store.hdf5_layout`, whose layout number
    the root records).

    Every song's values and times carry HDF5's Fletcher-32 checksum. The target is checked first
    (:func:`check_hdf5_target`: an existing file is replaced only with ``overwrite``); an interrupted
    export removes its temporary file; a damaged or rewritten song is left out and named in the report.
    """
    import h5py

    out = Path(out)
    chosen = _models(store, models)
    check_hdf5_target(store, out, overwrite)
    report = ExportReport()
    with atomic_path(out) as tmp, h5py.File(tmp, "w", track_order=True) as h5:
        _put_attrs(h5, {**store.root_attrs(), LAYOUT_ATTR: LAYOUT})
        for model in chosen:
            group = require_groups(h5, node_path(model))
            _put_attrs(group, store.model_attrs(model))
            report.written[model] = 0
            songs, damaged = songs_and_damage(store, model)
            for error in damaged:
                report.leave_out(error)
            for song in songs:
                try:
                    arr = _listed(store, model, song)
                    data = arr[...]  # read whole before its dataset exists: a damaged song leaves nothing
                except (CorruptArray, SongRewritten) as e:
                    report.leave_out(e)
                    continue
                write_song(group, song, data, arr.chunks, arr.attrs, _DATASET_OPTIONS)
                report.written[model] += 1
        for model in chosen:  # after the models: netCDF tools list groups in the order they were made
            for failure in store.failures(model):
                _put_attrs(require_groups(h5, node_path(f"{FAILURES}/{model}/{failure_node(failure['song_id'])}")),
                           failure)
    return report
