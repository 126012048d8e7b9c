"""Files that appear whole or not at all: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once at import (changing the umask is process-wide, so not while threads write files)
_UMASK = _read_umask()
#: what mkstemp adds to the prefix: 8 random characters, then the suffix
_SUFFIX = ".partial"
_RANDOM = 8
#: the longest file name where the file system does not say (ext4, XFS, Btrfs, APFS, NTFS: 255 bytes or characters)
_NAME_MAX = 255


def _temp_prefix(dest: Path) -> str:
    """``.<name>.``, with ``name`` cut (whole UTF-8 characters) so that the temporary name, prefix + 8
    random characters + ``.partial``, fits the file system's name limit: a target whose own name is
    legal, however long, gets a legal temporary name."""
    try:
        limit = os.pathconf(dest.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = _NAME_MAX
    room = limit - len(_SUFFIX) - _RANDOM - 2
    name = dest.name.encode()[:room].decode("utf-8", "ignore")
    return f".{name}."


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success it is flushed to disk and renamed to
    ``dest`` (readers see the old file or the new one, never half of one); on error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=_SUFFIX, dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it private; the result gets the usual permissions
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
