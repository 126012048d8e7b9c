"""Which files of an audio folder are songs, under which ids, and whether a file changed since.

Discovery walks the folder once (sorted, hidden entries skipped, symlink loops reported) and
gives every audio file a song id: its relative path without the extension, unless two files
would share it. The source record (path, size, mtime, sha256) is what ``--skip-existing``
compares against the store.
"""

from __future__ import annotations

import mimetypes
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audio import AUDIO_EXTENSIONS
from .errors import InvalidSongId
from .store import validate_song_id
from .weights import sha256_file


@dataclass(frozen=True)
class AudioFile:
    """One input file: where it is, and the song id it is stored under."""

    path: Path
    relative: str  # path relative to the audio folder, with "/" separators
    song_id: str


@dataclass
class Discovery:
    files: list[AudioFile] = field(default_factory=list)
    skipped_non_audio: int = 0
    skipped_hidden: int = 0
    notes: list[str] = field(default_factory=list)  # things the user should know (id clashes, loops)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found while scanning


def is_audio_name(name: str) -> bool:
    """Whether a file name looks like audio (known extension or an ``audio/*`` MIME type)."""
    ext = os.path.splitext(name)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return True
    mime, _ = mimetypes.guess_type(name, strict=False)
    return bool(mime and mime.startswith("audio/"))


def discover(audio_dir: str | os.PathLike[str]) -> Discovery:
    """Find audio files under ``audio_dir`` recursively, in sorted order.

    Hidden files and folders (``.name``) are skipped; symlinks are followed once (loops are
    reported, not followed); directories named like audio files are not files. The song id is
    the relative path without its extension, unless two files share it (``a.wav``, ``a.mp3``):
    then both keep their extension and a note says so.
    """
    root = Path(audio_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist or is not a folder")
    found = Discovery()
    seen_dirs: set[tuple[int, int]] = set()
    candidates: list[tuple[Path, str]] = []

    def walk(folder: Path, rel: str) -> None:
        try:
            st = folder.stat()
        except OSError as e:
            found.errors.append((str(folder), f"cannot read folder ({e.strerror})"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            found.notes.append(f"{folder}: symlink loop or repeated folder, not followed")
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            found.errors.append((str(folder), f"cannot list folder ({e.strerror})"))
            return
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if entry.name.startswith("."):
                found.skipped_hidden += 1
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError as e:
                found.errors.append((entry.path, f"cannot stat ({e.strerror})"))
                continue
            if is_dir:
                walk(Path(entry.path), child_rel)
            elif is_file and is_audio_name(entry.name):
                candidates.append((Path(entry.path), child_rel))
            elif entry.is_symlink() and not is_file and not is_dir:
                found.errors.append((entry.path, "broken symlink"))
            else:
                found.skipped_non_audio += 1

    walk(root, "")
    stems: dict[str, list[str]] = defaultdict(list)
    for _, rel in candidates:
        stems[os.path.splitext(rel)[0]].append(rel)
    for path, rel in candidates:
        stem = os.path.splitext(rel)[0]
        song_id = rel if len(stems[stem]) > 1 else stem
        try:
            song_id = validate_song_id(song_id)
        except InvalidSongId as e:
            found.errors.append((str(path), str(e)))
            continue
        found.files.append(AudioFile(path, rel, song_id))
    for stem, rels in sorted(stems.items()):
        if len(rels) > 1:
            found.notes.append(f"{', '.join(rels)} share the name {stem!r}: their ids keep the extension")
    return found


def source_info(file: AudioFile) -> dict[str, Any]:
    """What identifies the input file: relative path, size, mtime and sha256."""
    st = file.path.stat()
    return {"path": file.relative, "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256_file(file.path)}


def source_unchanged(file: AudioFile, stored: dict[str, Any] | None) -> bool:
    """Cheap check first (size, mtime), then the checksum when only the mtime moved."""
    if not stored:
        return False
    try:
        st = file.path.stat()
    except OSError:
        return False
    if st.st_size != stored.get("size"):
        return False
    if st.st_mtime == stored.get("mtime"):
        return True
    return sha256_file(file.path) == stored.get("sha256")
