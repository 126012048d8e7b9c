"""Setting up a run, the same for ``fstore extract`` and for Python: a :class:`RunRequest` (what was
asked) becomes a :class:`PreparedRun` (what will be done) in :func:`prepare_run`, which :func:`execute`
runs. :func:`extract` does both.

``prepare_run`` resolves the device and precision, opens and checks the store, finds the inputs, builds
each model's configuration, checks its weights, sorts out the work (what is cached, what to compute)
and chooses the workers and songs per task. Nothing is computed or written before :func:`execute`
but the store itself, which a run creates where nothing is.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from ..discover import AudioFile, Discovery, gather, read_file_list
from ..errors import ConfigurationMismatch, ExportTarget, FstoreError, StoreError, UsageError, WeightsUnavailable
from ..export import refuse_the_store
from ..extractors.base import Extractor
from ..store import FeatureStore, location, validate_song_id
from ..store.attributes import group_attributes
from .coordinator import run
from .execution import execution
from .options import RunOptions, songs_per_task
from .planning import Plan, plan
from .results import Reporter, Result, SilentReporter, Summary

#: what ``fstore extract`` reads when given no input
DEFAULT_INPUT = "audio_files"


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked to do, as ``fstore extract`` takes it (see its options in the README)."""

    paths: tuple[str, ...] = ()  # audio files and folders; none (and no files_from): audio_files/
    files_from: str | TextIO | None = None  # a list file (one path per line, or CSV path[,song_id]) or an open stream
    store: str = "features.zarr"
    models: tuple[str, ...] | None = None  # None: every registered model, those without weights left out
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model -> field -> value
    option_texts: tuple[str, ...] = ()  # "MODEL.FIELD=VALUE" as given to --option
    device: str = "auto"
    precision: str = "auto"
    dtype: str = "float32"
    overwrite: bool = False
    as_group: str | None = None
    retry_failed: bool = False
    output_base: Path | None = None
    batch_songs: int | None = None
    workers: int | None = 0  # None: auto
    dask_scheduler: str | None = None
    dry_run: bool = False
    hash_sources: bool = False  # decide "unchanged" by each file's sha256, not its size and mtime


@dataclass(frozen=True)
class PreparedRun:
    """A run ready to go: its store (None for a dry run on a store not made yet), inputs, models and plan."""

    request: RunRequest
    device: str
    precision: str
    store: FeatureStore | None
    inputs: tuple[str, ...]
    found: Discovery
    extractors: tuple[Extractor, ...]
    unavailable: dict[str, str]  # model left out -> why its weights cannot be had
    options: RunOptions
    plan: Plan
    workers: int

    @property
    def unavailable_named(self) -> tuple[str, ...]:
        """Models the request named whose weights cannot be had: the run fails for them."""
        return tuple(m for m in self.unavailable if self.request.models and m in self.request.models)


def prepare_run(request: RunRequest) -> PreparedRun:
    """Check and sort out everything a run needs before it computes anything.

    Raises :class:`UsageError` (a request that cannot run: unknown model, option or device, missing
    input, an ``output_base`` in the store), :class:`~featurestore.errors.ConfigurationMismatch` (a group
    computed with another configuration) and :class:`StoreError` (the store cannot be opened or written).
    """
    from ..devices import auto_workers, check_precision_supported, resolve_device, resolve_precision
    from ..extractors import registry
    from ..options import model_configs

    try:
        device = resolve_device(request.device)
        precision = resolve_precision(request.precision, device)
        check_precision_supported(precision, device)
    except ValueError as e:
        raise UsageError(str(e), "--device / --precision") from e
    if request.output_base is not None:
        try:
            refuse_the_store(request.store, request.output_base, "--output-base")
        except ExportTarget as e:
            raise UsageError(str(e), "--output-base") from e
    store = _open_store(request.store, request.dry_run)
    inputs = tuple(request.paths) or ((DEFAULT_INPUT,) if request.files_from is None else ())
    if len(inputs) == 1 and request.files_from is None and not Path(inputs[0]).exists():
        raise UsageError(f"{inputs[0]} does not exist", "PATH / --audio-dir")
    try:
        listed = read_file_list(request.files_from) if request.files_from is not None else []
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {request.files_from}: {e}", "--files-from") from e
    found = gather(inputs, listed)

    valid = registry.names()
    unknown = [m for m in request.models or () if m not in valid]
    if unknown:
        raise UsageError(f"unknown model(s): {', '.join(unknown)}; valid models: {', '.join(valid)}", "--models")
    selected = list(request.models or valid)
    try:
        configs = model_configs(selected, request.model_options, request.option_texts, {"precision": precision})
    except ValueError as e:
        raise UsageError(str(e), "--option") from e
    extractors, unavailable = [], {}
    for name in selected:
        try:
            ext = registry.get(name)(configs[name])
            ext.weights()
        except WeightsUnavailable as e:
            unavailable[name] = str(e)
            continue
        except (ValueError, TypeError, FstoreError) as e:
            raise UsageError(f"{name}: {e}") from e
        extractors.append(ext)

    options = RunOptions(retry_failed=request.retry_failed, output_base=request.output_base, device=device,
                         overwrite=request.overwrite, dtype=request.dtype, groups=_groups(request.as_group, extractors),
                         batch_songs=request.batch_songs or songs_per_task(device), hash_sources=request.hash_sources)
    if store is not None and not request.overwrite:
        for ext in extractors:
            group = options.group(ext)
            store.check_model(group, group_attributes(ext.describe(), group, options.dtype))
    work = plan(store, found.files, extractors, options)
    workers = request.workers if request.workers is not None else auto_workers(device, work.songs_to_compute)
    return PreparedRun(request, device, precision, store, inputs, found, tuple(extractors), unavailable, options, work,
                       workers)


def _open_store(url: str, dry_run: bool) -> FeatureStore | None:
    """The store a run writes to, checked before any scanning (None for a dry run on a store not made yet)."""
    if "://" not in url and Path(url).is_file():
        raise UsageError(f"{url} is a file, not a store folder", "--store")
    if dry_run:
        return None if location(url) == "absent" else FeatureStore(url, mode="r")
    if "://" not in url:
        existing = Path(url) if Path(url).exists() else Path(url).absolute().parent
        if not os.access(existing, os.W_OK):
            raise StoreError(f"{url}: not writable by this user ({existing} is read-only)")
    return FeatureStore(url, mode="a")


def _groups(as_group: str | None, extractors: Sequence[Extractor]) -> tuple[tuple[str, str], ...]:
    """``--as NAME``: the one selected model's group name."""
    if as_group is None:
        return ()
    if len(extractors) != 1:
        raise UsageError("--as names the group of one model: select exactly one with --models", "--as")
    if "/" in as_group:
        raise UsageError("a group name has no '/'", "--as")
    try:
        return ((extractors[0].name, validate_song_id(as_group)),)
    except ValueError as e:
        raise UsageError(str(e), "--as") from e


def execute(prepared: PreparedRun, reporter: Reporter | None = None) -> Summary:
    """Run a prepared run; its summary also says what was left out (inputs, models) and why it stopped.

    A store that cannot be written, or a model that cannot be loaded (a missing package), stops the run:
    the summary says so (``stopped``). KeyboardInterrupt (also during the models' imports) propagates
    once what was computed is stored; the reporter has the summary (``interrupted``).
    """
    if prepared.store is None:
        raise UsageError("a dry run is not executed")
    kept = _Kept(reporter or SilentReporter())
    try:
        with ExitStack() as stack:
            try:
                where = stack.enter_context(execution(prepared.workers, prepared.request.dask_scheduler))
            except ImportError as e:  # the cluster's client is not installed
                raise UsageError(str(e), "--dask-scheduler") from e
            run(prepared.store, prepared.found.files, prepared.extractors, prepared.options, kept, where, prepared.plan)
    except ImportError as e:  # a model's load needs a package that is missing or broken
        kept.summary.stopped = f"a model could not be loaded: {e}"
    except StoreError as e:
        kept.summary.stopped = str(e)
        kept.summary.mismatch = isinstance(e, ConfigurationMismatch)
    finally:  # also on an interrupt: the reporter's summary says what was left out
        kept.summary.scan_errors.extend(prepared.found.errors)
        kept.summary.unavailable.update(prepared.unavailable)
        kept.summary.unavailable_named = prepared.unavailable_named
    return kept.summary


class _Kept:
    """A reporter passing everything on to ``inner``, keeping the summary the run ends with."""

    def __init__(self, inner: Reporter) -> None:
        self.inner, self.summary = inner, Summary()

    def start(self, n_songs: int, models: Sequence[str]) -> None:
        self.inner.start(n_songs, models)

    def song_done(self, file: AudioFile) -> None:
        self.inner.song_done(file)

    def result(self, result: Result) -> None:
        self.inner.result(result)

    def end(self, summary: Summary) -> None:
        self.summary = summary
        self.inner.end(summary)


def extract(*paths: str | os.PathLike[str], store: str = "features.zarr", models: Sequence[str] | None = None,
            reporter: Reporter | None = None, **options: Any) -> Summary:
    """Extract features of audio files and folders into ``store``: ``fstore extract`` from Python.

    ``options`` are the fields of :class:`RunRequest` (``device``, ``precision``, ``overwrite``,
    ``workers``, ``files_from``, ``model_options={"crepe": {"capacity": "tiny"}}``, ...). Returns the
    :class:`Summary` (``summary.exit_code`` is what ``fstore extract`` would exit with).
    """
    request = RunRequest(paths=tuple(str(p) for p in paths), store=str(store),
                         models=tuple(models) if models is not None else None, **options)
    return execute(prepare_run(request), reporter)
