"""Whether a store's numbers are still what this installation computes (``fstore verify``).

A store outlives the installation that filled it: a new torch, CPU kernel or decoder can move the
results. :func:`verify_store` takes a sample of each group's songs (``sample`` per group, chosen by a
seeded generator, so a run can be repeated; or the songs named), rebuilds the group's extractor from its
recorded configuration with this installation's code (:mod:`.recorded`), recomputes each song from its
recorded source file exactly as a run computes it (:func:`~.run.compute.compute_songs`: decode, resample,
``extract``), and holds the result to the model's :class:`~.agreement.Tolerance`.

Where a song's source is looked for, first found wins: the recorded relative path under each of
``audio_dirs`` in order, then the recorded absolute ``location`` (recorded since this command exists),
then the recorded path itself (relative to the current folder). A file whose sha256 differs from the
recorded one is reported as changed and not compared.

Verdicts per song: ``ok``; the installation or the store no longer gives what is stored (exit code 1):
``drift`` (beyond the tolerance), ``shape differs``, ``failed`` (the unchanged file no longer computes),
``unreadable`` (the stored array cannot be read); the song could not be recomputed as it was (exit code 4
when nothing differs): ``source changed``, ``source missing``, ``weights missing``, ``not computable``
(model not installed, or its precision not available on this device).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .agreement import Tolerance, compare
from .clock import TimeAxis
from .discover import AudioFile
from .errors import CorruptArray, FstoreError, UsageError
from .extractors.base import Extractor
from .recorded import extractor_for, with_local_weights
from .run.compute import SidePool, compute_songs, runs_on
from .run.sink import Described, Failed
from .store import ReadBackend, StoredArray
from .weights import sha256_file

#: songs recomputed per group unless told otherwise
DEFAULT_SAMPLE = 3
#: the seed of the choice unless told otherwise: the same store gives the same songs, so a run can be repeated
DEFAULT_SEED = 0

OK = "ok"
DRIFT, SHAPE_DIFFERS, FAILED, UNREADABLE = "drift", "shape differs", "failed", "unreadable"
SOURCE_CHANGED, SOURCE_MISSING = "source changed", "source missing"
WEIGHTS_MISSING, NOT_COMPUTABLE = "weights missing", "not computable"
#: the installation (or the store) no longer gives what is stored
DIFFERS = (DRIFT, SHAPE_DIFFERS, FAILED, UNREADABLE)
#: the song could not be recomputed as it was computed
UNVERIFIED = (SOURCE_CHANGED, SOURCE_MISSING, WEIGHTS_MISSING, NOT_COMPUTABLE)
#: exit codes of ``fstore verify``: every chosen song agrees; something differs; nothing differs, but some
#: song could not be verified (2 is a usage error, as for every command)
EXIT_OK, EXIT_DIFFERS, EXIT_UNVERIFIED = 0, 1, 4


@dataclass(frozen=True)
class SongCheck:
    """One song of one group: the verdict, why, and how far the recomputation lies from the stored array."""

    song_id: str
    verdict: str
    message: str = ""
    max_abs: float | None = None
    min_cosine: float | None = None
    source: str | None = None  # the file recomputed from (or found changed)
    seconds: float = 0.0  # the model's compute


@dataclass
class GroupCheck:
    """One group: its model, configuration and tolerance, and each chosen song's check."""

    group: str
    model: str
    variant: str
    tolerance: Tolerance | None
    songs: list[SongCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> list[SongCheck]:
        """The songs whose numbers were compared."""
        return [s for s in self.songs if s.max_abs is not None]

    @property
    def max_abs(self) -> float | None:
        return max((s.max_abs for s in self.compared), default=None)  # type: ignore[type-var]

    @property
    def min_cosine(self) -> float | None:
        return min((s.min_cosine for s in self.compared), default=None)  # type: ignore[type-var]

    @property
    def verdict(self) -> str:
        """``drift`` when any song differs, ``unverified`` when any could not be verified, else ``ok``."""
        verdicts = {s.verdict for s in self.songs}
        return "drift" if verdicts & set(DIFFERS) else "unverified" if verdicts & set(UNVERIFIED) else OK

    def as_dict(self) -> dict[str, Any]:
        songs = [{**vars(s), "seconds": round(s.seconds, 3)} for s in self.songs]
        return {"group": self.group, "model": self.model, "variant": self.variant,
                "tolerance": self.tolerance.as_dict() if self.tolerance is not None else None,
                "checked": len(self.compared), "songs_chosen": len(self.songs), "max_abs": self.max_abs,
                "min_cosine": self.min_cosine, "verdict": self.verdict, "notes": self.notes,
                "songs": songs}


@dataclass
class Verification:
    """What :func:`verify_store` found, group by group."""

    store: str
    device: str
    seed: int
    sample: int | None  # songs per group (None: every song, or the songs named)
    groups: list[GroupCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        verdicts = {s.verdict for g in self.groups for s in g.songs}
        return EXIT_DIFFERS if verdicts & set(DIFFERS) else EXIT_UNVERIFIED if verdicts & set(UNVERIFIED) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "device": self.device, "seed": self.seed, "sample": self.sample,
                "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "groups": [g.as_dict() for g in self.groups]}


def choose(songs: Sequence[str], sample: int | None, seed: int) -> list[str]:
    """``sample`` of ``songs`` chosen at random by ``seed`` (all of them when None or too few), sorted.

    The choice depends only on the group's songs and the seed: groups holding the same songs are checked
    on the same songs (each decoded once), whatever other groups the store has."""
    ordered = sorted(songs)
    if sample is None or sample >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, sample))


def source_candidates(source: Mapping[str, Any], audio_dirs: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """Where a song's recorded source may be, in the order they are tried (see the module's docstring)."""
    relative = source.get("path")
    found = [Path(d) / relative for d in audio_dirs] if relative else []
    if source.get("location"):
        found.append(Path(source["location"]))
    if relative:
        found.append(Path(relative))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class _Prepared:
    """A group's extractor ready to compute, or the verdict every chosen song of the group gets."""

    ext: Extractor | None
    verdict: str | None = None
    reason: str = ""


class _Collected:
    """The outcomes of one song's computation, by extractor (an :class:`~.run.compute.Outcomes`)."""

    def __init__(self) -> None:
        self.outcomes: dict[int, tuple[np.ndarray | Failed, float, Described]] = {}
        self._lock = threading.Lock()

    def put(self, file: AudioFile, ext: Extractor, outcome: np.ndarray | Failed, seconds: float,
            described: Described) -> None:
        with self._lock:
            self.outcomes[id(ext)] = (outcome, seconds, described)


def verify_store(store: ReadBackend, groups: Sequence[str] | None = None, songs: Sequence[str] | None = None,
                 sample: int | None = DEFAULT_SAMPLE, seed: int = DEFAULT_SEED,
                 audio_dirs: Sequence[str | os.PathLike[str]] = (), device: str = "cpu",
                 progress: Callable[[str, SongCheck], None] | None = None) -> Verification:
    """Recompute songs of ``store`` with this installation and compare them with what is stored.

    ``groups``: the groups to check (default: all); ``songs``: these song ids in every group that holds
    them, else ``sample`` songs per group chosen by ``seed`` (None: every song); ``audio_dirs``: folders
    the recorded relative source paths are looked up in first; ``device``: where the models compute
    (CPU-only models compute on the CPU); ``progress(group, check)`` is called as each song is checked.

    Raises :class:`UsageError` for a group or song the store does not hold.
    """
    started = time.perf_counter()
    report = Verification(store.url, device, seed, None if songs is not None else sample)
    chosen = _choose(store, groups, songs, sample, seed)
    work: dict[tuple[Path, str], list[tuple[GroupCheck, Extractor, StoredArray]]] = {}
    for group, song_ids in chosen.items():
        attrs = store.model_attrs(group)
        ready = _prepare(attrs, device)
        check = GroupCheck(group, str(attrs.get("model")), str(attrs.get("variant", "")),
                           ready.ext.tolerance() if ready.ext is not None else None)
        if ready.ext is not None and ready.ext.fingerprint != attrs.get("fingerprint"):
            check.notes.append("this installation's fingerprint for the group's configuration differs from the "
                               "recorded one (code or weights changed since): the numbers show what that changed")
        report.groups.append(check)
        for song_id in song_ids:
            if ready.verdict is not None:
                _report(check, SongCheck(song_id, ready.verdict, ready.reason), progress)
                continue
            try:
                stored = store.array(group, song_id)
            except CorruptArray as e:  # damaged: fstore validate --fix, then fstore extract
                _report(check, SongCheck(song_id, UNREADABLE, e.what), progress)
                continue
            if stored is None:  # removed or rewritten since the listing
                _report(check, SongCheck(song_id, UNREADABLE, "no complete array any more"), progress)
                continue
            found = _locate(song_id, stored.attrs.get("source") or {}, audio_dirs)
            if isinstance(found, SongCheck):
                _report(check, found, progress)
                continue
            work.setdefault((found, song_id), []).append((check, ready.ext, stored))
    side = SidePool()
    try:
        for (path, song_id), entries in work.items():
            _recompute(path, song_id, entries, device, side, progress)
    finally:
        side.shutdown()
    report.seconds = time.perf_counter() - started
    return report


def _choose(store: ReadBackend, groups: Sequence[str] | None, songs: Sequence[str] | None, sample: int | None,
            seed: int) -> dict[str, list[str]]:
    """The songs to check, by group; UsageError for a group or song the store does not hold."""
    present = store.models()
    unknown = [g for g in groups or () if g not in present]
    if unknown:
        raise UsageError(f"{store.url} has no group {', '.join(unknown)}; its groups: {', '.join(present) or 'none'}",
                         "--models")
    chosen: dict[str, list[str]] = {}
    for group in groups or present:
        stored = store.songs(group)
        held = set(stored)
        if songs is None:
            chosen[group] = choose(stored, sample, seed)
        elif picked := [s for s in dict.fromkeys(songs) if s in held]:
            chosen[group] = picked  # a group holding none of the named songs is left out
    missing = [s for s in dict.fromkeys(songs or ()) if not any(s in picked for picked in chosen.values())]
    if missing:
        raise UsageError(f"no complete array of {', '.join(missing)} in the groups checked", "--songs")
    return chosen


def _prepare(attrs: Mapping[str, Any], device: str) -> _Prepared:
    """The group's extractor rebuilt from its recorded configuration and loaded, or why it cannot be."""
    from .devices import check_precision_supported

    ext = extractor_for(attrs)
    if ext is None:
        return _Prepared(None, NOT_COMPUTABLE, f"model {attrs.get('model')!r} with options {attrs.get('config')} "
                                               "is not installed here (or no longer takes these options)")
    ext, why = with_local_weights(ext, attrs)
    if ext is None:
        return _Prepared(None, WEIGHTS_MISSING, str(why))
    where = device if runs_on(ext, device) else "cpu"
    try:
        ext.weights()
    except FstoreError as e:  # offline without the official weights, or not the published ones
        return _Prepared(None, WEIGHTS_MISSING, str(e))
    try:
        check_precision_supported(getattr(ext.config, "precision", "fp32"), where)
        ext.load(where)
    except (FstoreError, ImportError, OSError, RuntimeError, ValueError) as e:
        return _Prepared(None, NOT_COMPUTABLE, f"cannot compute on {where}: {e}")
    return _Prepared(ext)


def _locate(song_id: str, source: Mapping[str, Any], audio_dirs: Sequence[str | os.PathLike[str]]) -> Path | SongCheck:
    """The recorded source file, found here and unchanged; or the song's verdict when it is not."""
    candidates = source_candidates(source, audio_dirs)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(map(str, candidates)) or "no path recorded"
        return SongCheck(song_id, SOURCE_MISSING, f"not found (tried {tried}); give its folder with --audio-dir")
    try:
        digest = sha256_file(path)
    except OSError as e:
        return SongCheck(song_id, SOURCE_MISSING, f"{path}: cannot read ({e})", source=str(path))
    if digest != source.get("sha256"):
        return SongCheck(song_id, SOURCE_CHANGED, f"{path}: content changed since it was computed (sha256 "
                         f"{digest[:12]}, recorded {str(source.get('sha256'))[:12]}); not compared", source=str(path))
    return path


def _recompute(path: Path, song_id: str, entries: Sequence[tuple[GroupCheck, Extractor, StoredArray]], device: str,
               side: SidePool, progress: Callable[[str, SongCheck], None] | None) -> None:
    """Decode ``path`` once, compute every group's model on it as a run does, and compare each with its array."""
    collected = _Collected()
    exts = list(dict.fromkeys(ext for _, ext, _ in entries))
    relative = str(entries[0][2].attrs.get("source", {}).get("path") or path.name)
    compute_songs(collected, [(AudioFile(path, relative, song_id), exts, None)], side, device)
    for check, ext, stored in entries:
        outcome, seconds, described = collected.outcomes[id(ext)]
        _report(check, _judge(song_id, ext, stored, outcome, described, str(path), seconds), progress)


def _judge(song_id: str, ext: Extractor, stored: StoredArray, outcome: np.ndarray | Failed, described: Described,
           path: str, seconds: float) -> SongCheck:
    """The verdict on one recomputed song against its stored array."""
    recorded = stored.attrs.get("source") or {}
    decoder = (described.source or {}).get("decoder")
    changed = (f"; decoded by {decoder} now, by {recorded.get('decoder')} then"
               if decoder and recorded.get("decoder") and decoder != recorded.get("decoder") else "")
    if isinstance(outcome, Failed):
        return SongCheck(song_id, FAILED, f"{path}: no longer computes ({outcome.reason}){changed}", source=path,
                         seconds=seconds)
    try:
        data = stored[...]
    except (FstoreError, OSError) as e:  # a damaged chunk, a store that cannot be read
        return SongCheck(song_id, UNREADABLE, str(e), source=path, seconds=seconds)
    if data.shape != outcome.shape:
        return SongCheck(song_id, SHAPE_DIFFERS, f"stored {data.shape} from {stored.attrs.get('n_samples')} samples, "
                         f"computed {outcome.shape} from {described.n_samples}{changed}", source=path, seconds=seconds)
    times = TimeAxis.from_attrs(stored.attrs).times(data.shape[list(ext.dims).index("time")])
    agreement = compare(data, outcome, ext.tolerance(), ext.dims, ext.feature_names, times)
    return SongCheck(song_id, OK if agreement.ok else DRIFT, "; ".join(agreement.failures) + changed,
                     agreement.max_abs, agreement.min_cosine, path, seconds)


def _report(check: GroupCheck, song: SongCheck, progress: Callable[[str, SongCheck], None] | None) -> None:
    check.songs.append(song)
    if progress is not None:
        progress(check.group, song)
