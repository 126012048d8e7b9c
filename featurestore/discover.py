"""Which input files are songs, under which ids, and whether a file changed since.

Inputs are folders (walked once: sorted, hidden entries skipped, symlink loops reported),
files, and lists of files. Every audio file gets a song id: its path relative to its folder
without the extension (a file given directly: its stem), unless two files would share it.
The source record (path, size, mtime, sha256) is what caching compares against the store.
"""

from __future__ import annotations

import csv
import mimetypes
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

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


#: files a music folder holds beside the audio whose MIME types say ``audio/*`` although they hold no
#: sound: playlists and cue sheets (lists of other files) and MIDI (notes, not samples)
NOT_AUDIO_EXTENSIONS = frozenset(".m3u .m3u8 .pls .cue .xspf .wpl .asx .mid .midi .kar .rmi".split())


def is_audio_name(name: str) -> bool:
    """Whether a file name looks like audio (a known extension, or an ``audio/*`` MIME type but for
    :data:`NOT_AUDIO_EXTENSIONS`)."""
    ext = os.path.splitext(name)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in NOT_AUDIO_EXTENSIONS:
        return False
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
    return gather([root])


def gather(paths: Sequence[str | os.PathLike[str]], listed: Sequence[tuple[str, str | None]] = ()) -> Discovery:
    """The songs of any mix of folders (searched as :func:`discover` does), files, and ``listed``
    (path, song id or None) pairs from a list file.

    A file given directly (or listed without an id) is stored under its stem; a folder's files
    under their path relative to that folder. Ids that would clash keep their extension; an id
    still taken by an earlier input is an error for that file, as is a path that does not exist.
    """
    found = Discovery()
    candidates: list[tuple[int, Path, str, str | None]] = []  # (input number, path, relative name, explicit id)
    for n, given in enumerate(paths):
        path = Path(given)
        if path.is_dir():
            candidates += [(n, p, rel, None) for p, rel in _walk(path, found)]
        elif path.is_file():
            candidates.append((n, path, path.name, None))
        else:
            found.errors.append((str(path), "no such file or folder"))
    for given, song_id in listed:
        path = Path(given)
        if path.is_file():
            candidates.append((-1, path, str(given).replace(os.sep, "/") if song_id else path.name, song_id))
        else:
            found.errors.append((str(path), "no such file" if not path.is_dir() else "a folder, not a file (list files only)"))

    stems: dict[tuple[int, str], list[str]] = defaultdict(list)  # the extension rule applies within one input
    for n, _, rel, explicit in candidates:
        if explicit is None:
            stems[n, os.path.splitext(rel)[0]].append(rel)
    taken: dict[str, Path] = {}
    for n, path, rel, explicit in candidates:
        stem = os.path.splitext(rel)[0]
        song_id = explicit or (rel if len(stems[n, stem]) > 1 else stem)
        try:
            song_id = validate_song_id(song_id)
        except InvalidSongId as e:
            found.errors.append((str(path), str(e)))
            continue
        if song_id in taken:
            found.errors.append((str(path), f"song id {song_id!r} is already taken by {taken[song_id]}; "
                                            "give it another id in a --files-from list (path,song_id)"))
            continue
        taken[song_id] = path
        found.files.append(AudioFile(path, rel, song_id))
    for (_, stem), rels in sorted(stems.items()):
        if len(rels) > 1:
            found.notes.append(f"{', '.join(rels)} share the name {stem!r}: their ids keep the extension")
    return found


def read_file_list(source: str | os.PathLike[str] | TextIO) -> list[tuple[str, str | None]]:
    """(path, song id or None) pairs from a list: one path per line, or a CSV whose header is
    ``path`` or ``path,song_id``. Blank lines and lines starting with ``#`` are ignored; relative
    paths are relative to the current folder. A leading UTF-8 byte order mark (Excel's "CSV UTF-8")
    is dropped, from a file or a stream."""
    text = source.read() if hasattr(source, "read") else Path(source).read_text()
    text = text.removeprefix("\ufeff")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and [c.strip() for c in lines[0].split(",")][:1] == ["path"]:
        rows = list(csv.DictReader(lines))
        return [(row["path"].strip(), (row.get("song_id") or "").strip() or None) for row in rows if row.get("path")]
    return [(line.strip(), None) for line in lines]


def _walk(root: Path, found: Discovery) -> list[tuple[Path, str]]:
    """Audio files under ``root`` as (path, path relative to root), sorted; problems go to ``found``."""
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
    return candidates


def source_info(file: AudioFile) -> dict[str, Any]:
    """What identifies the input file: relative path, size, mtime and sha256, and its absolute location
    (the relative path alone cannot be found again by ``fstore verify``)."""
    st = file.path.stat()
    return {"path": file.relative, "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256_file(file.path),
            "location": os.path.abspath(file.path)}


def source_unchanged(file: AudioFile, stored: dict[str, Any] | None, hash_sources: bool = False) -> bool:
    """Whether ``file`` is still the file its stored source record (size, mtime, sha256) describes.

    By default the cheap check decides: the same size and mtime is unchanged; when only the mtime moved
    (a touched or copied file), the sha256 decides, so such a file is not recomputed. A file rewritten
    with its size and mtime kept (a tag editor that restores the mtime, ``cp -p`` of other content)
    passes that check; ``hash_sources`` compares the sha256 of every file of the same size instead
    (``--hash-sources``: it reads every input file once per run).
    """
    if not stored:
        return False
    try:
        st = file.path.stat()
    except OSError:
        return False
    if st.st_size != stored.get("size"):
        return False
    if st.st_mtime == stored.get("mtime") and not hash_sources:
        return True
    return sha256_file(file.path) == stored.get("sha256")
