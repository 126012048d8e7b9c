"""The names and shapes every unit of a store shares: the schema version, which song ids are valid
paths, the top-level nodes that are not model groups, how arrays are chunked and compressed, and the
timestamps written into attributes."""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata

import numpy as np

from ..errors import InvalidSongId

#: 2 added the group's ``dtype`` (float32 or float16 storage) and ``group`` name (``--as``); 3 gives every new
#: array a crc32c checksum per chunk, NaN as fill value (a missing chunk never reads as zeros) and every chunk
#: written (none is left out for equalling the fill value). Stores of older schemas are read as they are and
#: upgraded in place (root attributes only; their arrays stay as written) the first time a run writes to them
SCHEMA_VERSION = 3
READABLE_SCHEMAS = (1, 2, 3)

#: where failures are recorded (:mod:`.failures`) and leases taken (:mod:`.leases`); no song id may take them
FAILURES = "_failures"
LEASES = "_leases"
#: top-level nodes that are not model groups
RESERVED = (FAILURES, LEASES)

#: how arrays may be stored; float16 halves the size (part of the group's configuration)
STORAGE_DTYPES = ("float32", "float16")
#: target bytes per chunk along time: one chunk for a typical song; for long ones, measured on a 20-min MERT
#: array: 4 MiB (18 s of MERT) reads whole songs and 10-s slices as fast as any size from 0.5 to 16 MiB
CHUNK_BYTES = 4 << 20
#: chunk compression: Blosc's zstd at level 5 behind a byte shuffle, the smallest of the settings measured on
#: the four models' outputs (zstd 0/1/3/9 alone, Blosc zstd 3/5 with byte or bit shuffle, lz4) at a write cost
#: far below any model's compute (README, "Storage size")
COMPRESSORS = ({"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}},)
#: after compression, a crc32c checksum of each chunk's bytes (Zarr v3's crc32c codec): damage is detected on read
CHECKSUM = {"name": "crc32c"}

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
#: the longest name of one path component on the usual file systems (ext4, XFS, Btrfs, ZFS, APFS: 255 bytes)
MAX_NAME_BYTES = 255
#: what the song's ``.npy`` export adds to the last component of its id
EXPORT_SUFFIX = ".npy"


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def validate_song_id(song_id: str) -> str:
    """Return ``song_id`` (NFC-normalised) if it is a safe relative Zarr path, else raise InvalidSongId.

    Rejected: empty ids, absolute paths, ``.``/``..``/empty components, backslashes, control
    characters, components Zarr reserves (starting with ``__``) or that fstore uses (``_failures``), and
    components longer than a file name may be (:data:`MAX_NAME_BYTES` in UTF-8; the last one 4 bytes
    less, for its ``.npy`` export): the store's node, the song's lease and failure record are named
    by them, and would fail only when written.
    """
    if not isinstance(song_id, str) or not song_id:
        raise InvalidSongId(f"invalid song id {song_id!r}: empty")
    sid = unicodedata.normalize("NFC", song_id)
    if sid.startswith("/") or re.match(r"^[A-Za-z]:", sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: absolute paths are not allowed")
    if _FORBIDDEN_CHARS.search(sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: backslashes and control characters are not allowed")
    parts = sid.split("/")
    for i, part in enumerate(parts):
        if part in ("", ".", ".."):
            raise InvalidSongId(f"invalid song id {song_id!r}: empty, '.' or '..' path components are not allowed")
        if part.startswith("__") or part in (*RESERVED, "zarr.json"):
            raise InvalidSongId(f"invalid song id {song_id!r}: component {part!r} is reserved")
        limit = MAX_NAME_BYTES - (len(EXPORT_SUFFIX) if i == len(parts) - 1 else 0)
        if len(part.encode()) > limit:
            raise InvalidSongId(f"invalid song id {sid[:40]!r}…: a component of {len(part.encode())} bytes, longer "
                                f"than a file name may be ({limit} bytes in UTF-8 for this one)")
    return sid


def time_chunk(shape: tuple[int, ...], time_axis: int, itemsize: int = 4) -> tuple[int, ...]:
    """Chunk shape: whole along every dim but time, about :data:`CHUNK_BYTES` along time."""
    per_step = itemsize * int(np.prod([s for i, s in enumerate(shape) if i != time_axis], dtype=np.int64))
    steps = max(1, min(shape[time_axis], CHUNK_BYTES // max(per_step, 1)))
    return tuple(steps if i == time_axis else max(1, s) for i, s in enumerate(shape))
