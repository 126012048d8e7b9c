"""Names every unit of a store shares: which song ids are valid paths, the top-level nodes that
are not model groups, and the timestamps written into attributes."""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata

from .errors import InvalidSongId
from .leases import LEASES

#: where failures are recorded (:mod:`.failures`); named here because no song id may take it
FAILURES = "_failures"

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def validate_song_id(song_id: str) -> str:
    """Return ``song_id`` (NFC-normalised) if it is a safe relative Zarr path, else raise InvalidSongId.

    Rejected: empty ids, absolute paths, ``.``/``..``/empty components, backslashes, control
    characters, and components Zarr reserves (starting with ``__``) or that fstore uses (``_failures``).
    """
    if not isinstance(song_id, str) or not song_id:
        raise InvalidSongId(f"invalid song id {song_id!r}: empty")
    sid = unicodedata.normalize("NFC", song_id)
    if sid.startswith("/") or re.match(r"^[A-Za-z]:", sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: absolute paths are not allowed")
    if _FORBIDDEN_CHARS.search(sid):
        raise InvalidSongId(f"invalid song id {song_id!r}: backslashes and control characters are not allowed")
    for part in sid.split("/"):
        if part in ("", ".", ".."):
            raise InvalidSongId(f"invalid song id {song_id!r}: empty, '.' or '..' path components are not allowed")
        if part.startswith("__") or part in (FAILURES, LEASES, "zarr.json"):
            raise InvalidSongId(f"invalid song id {song_id!r}: component {part!r} is reserved")
    return sid
