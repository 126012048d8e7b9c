"""The conformance suites shipped with fstore (like zarr-python's ``StoreTests``): one for extractors,
one for store backends.

A model's test module subclasses :class:`ExtractorContract` and implements
:meth:`~ExtractorContract.make_extractor`; pytest then runs every ``test_*`` below
against it. Signals are generated here, so the suite needs no data files.

    class TestCrepeContract(ExtractorContract):
        alternative_options = {"viterbi": False}
        def make_extractor(self, **options):
            return Crepe(capacity="tiny", **options)

A backend's test module subclasses :class:`BackendContract`, writes the reference content
(:func:`write_reference`) through the store's write API and opens it (or its export) as the backend:

    class TestLocalZarr(BackendContract):
        expected_capabilities = Capabilities(writable=False, exclusive_create=True)
        def make_backend(self, workdir, storage_options):
            write_reference(FeatureStore(str(workdir / "s.zarr"), mode="a"))
            return FeatureStore(str(workdir / "s.zarr"), mode="r")
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from .agreement import Tolerance, compare
from .clock import TimeAxis
from .errors import AudioTooShort, InvalidSongId
from .extractors import registry
from .extractors.base import Extractor, config_fields
from .read import POOL_STATS, StoreReader, decode_attrs
from .store import SCHEMA_VERSION, Capabilities, FeatureStore, ReadBackend, StoredArray
from .store.attributes import array_attributes, group_attributes
from .store.layout import time_chunk

#: modules an extractor module must not import at import time
HEAVY_MODULES = ("torch", "transformers", "onnxruntime", "madmom", "h5py")


def test_signal(n_samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic music-like test signal: two harmonic tones, clicks and a little noise (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    x = 0.4 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 330.0 * t * (1 + 0.1 * t))
    x[:: max(1, sample_rate // 2)] += 0.8  # a click every 0.5 s
    x += 0.01 * rng.standard_normal(n_samples)
    return x.astype(np.float32)


test_signal.__test__ = False  # a helper, not a pytest test


class ExtractorContract:
    """Shared tests; subclasses provide :meth:`make_extractor` and may tune the class attributes."""

    #: input durations (seconds) whose output shape and dtype are checked
    durations_s: ClassVar[tuple[float, ...]] = (0.25, 1.0, 2.37)
    #: options that must change the fingerprint (empty: not tested)
    alternative_options: ClassVar[dict[str, Any]] = {}
    #: max |n_frames(N) - N / hop| for the "frame count follows the duration" check
    frame_count_slack: ClassVar[float] = 2.0
    device: ClassVar[str] = "cpu"

    def make_extractor(self, **options: Any) -> Extractor:
        """A new, unloaded extractor with test-sized settings plus ``options``."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def extractor(cls) -> Extractor:
        ext = cls().make_extractor()
        ext.load(cls.device)
        return ext

    def _samples(self, ext: Extractor, seconds: float) -> np.ndarray:
        return test_signal(max(1, round(seconds * ext.time_axis.sample_rate)), ext.time_axis.sample_rate)

    # -- description -----------------------------------------------------------------------------
    def test_licences_are_declared(self, extractor: Extractor) -> None:
        """Users must be able to see whether the features may be used commercially."""
        assert extractor.licenses.code and extractor.licenses.weights
        assert extractor.describe()["weights_license"] == extractor.licenses.weights

    def test_registered_under_its_name(self, extractor: Extractor) -> None:
        assert registry.get(extractor.name) is type(extractor)

    def test_time_axis_is_exact(self, extractor: Extractor) -> None:
        ax = extractor.time_axis
        assert ax.hop == Fraction(ax.hop_samples, ax.sample_rate) and ax.hop > 0
        assert ax.t0 == Fraction(ax.t0_samples, ax.sample_rate) and ax.t0 >= 0
        assert ax.frame_rate_hz == pytest.approx(ax.sample_rate / ax.hop_samples)
        times = ax.times(5)
        np.testing.assert_allclose(times, [float(ax.t0 + i * ax.hop) for i in range(5)], rtol=0, atol=1e-12)

    def test_time_axis_survives_the_store_attrs(self, extractor: Extractor) -> None:
        ax = extractor.time_axis
        stored = json.loads(json.dumps(ax.as_attrs()))
        assert TimeAxis.from_attrs(stored) == ax
        np.testing.assert_array_equal(TimeAxis.from_attrs(stored).times(7), ax.times(7))

    def test_register_under_another_name(self, extractor: Extractor) -> None:
        probe = type(type(extractor).__name__, (type(extractor),), {"name": f"{extractor.name}-contract-probe"})
        registry.register(probe.name, probe)
        try:
            assert registry.get(probe.name) is probe and probe.name in registry.names()
            assert registry.get(probe.name)(extractor.config).dims == extractor.dims
        finally:
            registry.unregister(probe.name)
        assert probe.name not in registry.names()

    def test_config_fields_declare_their_help(self, extractor: Extractor) -> None:
        """Every option reaches the CLI (``--option MODEL.FIELD=VALUE``) with a help line and a default."""
        config_type = type(extractor.config)
        for f in dataclasses.fields(config_type):
            assert f.metadata.get("help"), f"{config_type.__name__}.{f.name}: declare it with option(..., help)"
            assert f.default is not dataclasses.MISSING, f"{config_type.__name__}.{f.name} needs a default"
        assert config_type() == config_type(**{f.name: getattr(config_type(), f.name) for f in dataclasses.fields(config_type)})

    def test_an_unknown_precision_is_refused(self, extractor: Extractor) -> None:
        if "precision" not in config_fields(type(extractor).Config):
            return
        with pytest.raises(ValueError, match="precision"):
            self.make_extractor(precision="fp64")

    def test_dims_and_names_agree(self, extractor: Extractor) -> None:
        dims = extractor.dims
        assert "time" in dims and len(set(dims)) == len(dims)
        shape = extractor.output_shape(extractor.time_axis.sample_rate)
        assert len(shape) == len(dims)
        for i, d in enumerate(dims):
            if d != "time":
                assert extractor.dim_size(d) == shape[i] >= 1
        if extractor.feature_names is not None:
            assert "feature" in dims
            assert shape[dims.index("feature")] == len(extractor.feature_names)
        units = extractor.output.units
        if not isinstance(units, str):
            assert extractor.feature_names is not None and set(units) == set(extractor.feature_names)

    def test_declaration_reads_without_loading(self) -> None:
        """What runs, stores and ``fstore models`` read of a model needs no loading: no network built, no device."""
        ext = self.make_extractor()
        out = ext.output
        assert ext.name and ext.description and ext.licenses.code and ext.licenses.weights
        assert "cpu" in ext.devices and set(ext.devices) <= {"cpu", "cuda"}, ext.devices
        assert out.clock.sample_rate > 0 and out.min_samples >= 1 and ext.n_frames(out.clock.sample_rate) >= 1
        assert ext.output_shape(out.clock.sample_rate) == ext.output_shape(out.clock.sample_rate)
        assert not ext.is_loaded

    def test_description_is_json(self, extractor: Extractor) -> None:
        attrs = extractor.describe()
        assert json.loads(json.dumps(attrs)) == attrs
        assert attrs["fingerprint"] == extractor.fingerprint

    # -- output ----------------------------------------------------------------------------------
    def test_shape_dtype_and_frame_formula(self, extractor: Extractor) -> None:
        for seconds in self.durations_s:
            x = self._samples(extractor, seconds)
            if x.shape[0] < extractor.min_samples:
                continue
            y = extractor.extract(x)
            assert y.dtype == np.float32
            assert y.shape == extractor.output_shape(x.shape[0])
            assert np.isfinite(y).all(), f"non-finite output for {seconds} s"

    def test_frame_count_follows_duration(self, extractor: Extractor) -> None:
        hop = extractor.time_axis.hop_samples
        for n in (10 * hop + 7, 1000 * hop, 1000 * hop + hop - 1, 123457):
            assert abs(extractor.n_frames(n) - n / hop) <= self.frame_count_slack, n
        # one more hop of input gives exactly one more frame
        n = 50 * hop + 3
        assert extractor.n_frames(n + hop) == extractor.n_frames(n) + 1

    def test_deterministic(self, extractor: Extractor) -> None:
        x = self._samples(extractor, 1.3)
        np.testing.assert_array_equal(extractor.extract(x), extractor.extract(x.copy()))

    def test_tolerance_accepts_a_recomputation(self, extractor: Extractor) -> None:
        """``fstore verify`` holds a recomputed song to the model's tolerance, which must apply to its output:
        a recomputation agrees with its own output, stored as float32 or float16."""
        tolerance = extractor.tolerance()
        assert isinstance(tolerance, Tolerance)
        y = extractor.extract(self._samples(extractor, 1.3))
        for stored in (y, y.astype(np.float16)):
            agreement = compare(stored, y, tolerance, extractor.dims, extractor.feature_names)
            assert agreement.ok and agreement.max_abs == 0.0, agreement.failures

    def test_silence_gives_finite_output(self, extractor: Extractor) -> None:
        y = extractor.extract(np.zeros(extractor.time_axis.sample_rate, dtype=np.float32))
        assert np.isfinite(y).all()

    def test_shortest_input(self, extractor: Extractor) -> None:
        n = extractor.min_samples
        y = extractor.extract(self._samples(extractor, 1.0)[:n])
        assert y.shape == extractor.output_shape(n) and y.shape[extractor.dims.index("time")] >= 1
        if n > 1:
            with pytest.raises(AudioTooShort):
                extractor.extract(np.zeros(n - 1, dtype=np.float32))

    def test_batch_equals_single(self, extractor: Extractor) -> None:
        """extract_batch's contract: each song's output is its extract() output, whatever shares its batch."""
        waves = [self._samples(extractor, s) for s in (0.7, 1.1)]
        waves.append(self._samples(extractor, 1.0)[: extractor.min_samples])
        got = extractor.extract_batch(waves)
        assert len(got) == len(waves)
        for out, wave in zip(got, waves):
            np.testing.assert_allclose(out, extractor.extract(wave), rtol=1e-5, atol=1e-5)

    def test_batch_rejects_an_invalid_song(self, extractor: Extractor) -> None:
        with pytest.raises(ValueError):
            extractor.extract_batch([self._samples(extractor, 1.0), np.zeros((2, 100), dtype=np.float32)])

    def test_rejects_multichannel_input(self, extractor: Extractor) -> None:
        with pytest.raises(ValueError):
            extractor.extract(np.zeros((2, extractor.time_axis.sample_rate), dtype=np.float32))

    def test_extract_before_load_is_an_error(self) -> None:
        with pytest.raises(RuntimeError, match="load"):
            self.make_extractor().extract(np.zeros(16000, dtype=np.float32))

    # -- identity --------------------------------------------------------------------------------
    def test_fingerprint_is_stable(self, extractor: Extractor) -> None:
        again = self.make_extractor()
        assert again.fingerprint == extractor.fingerprint
        assert len(extractor.fingerprint) == 64 and int(extractor.fingerprint, 16) >= 0

    def test_fingerprint_follows_options(self, extractor: Extractor) -> None:
        if not self.alternative_options:
            assert not extractor.config.fingerprinted(), "declare alternative_options to test them"
            return
        assert self.make_extractor(**self.alternative_options).fingerprint != extractor.fingerprint

    def test_module_import_is_light(self, extractor: Extractor) -> None:
        module, cls = type(extractor).__module__, type(extractor).__qualname__
        code = (
            "import sys, featurestore, featurestore.extractors.registry as r\n"
            f"r.register({extractor.name!r}, {f'{module}:{cls}'!r}); r.get({extractor.name!r}).weights_info()\n"
            f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"


# -- backends ------------------------------------------------------------------------------------------
#: when the reference arrays were written (fixed, so their attributes can be compared exactly)
REFERENCE_WRITTEN = "2026-01-02T03:04:05+00:00"
#: an array written without ``complete`` (a run killed mid-write), in the ``pitch`` group
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ReferenceGroup:
    """One model group of the reference content: its clock, dims, storage dtype and each song's shape."""

    clock: TimeAxis
    dims: tuple[str, ...]
    dtype: str
    shapes: dict[str, tuple[int, ...]]
    feature_names: tuple[str, ...] | None = None
    coords: dict[str, list[int]] | None = None

    @property
    def time_axis(self) -> int:
        return self.dims.index("time")


#: three groups of 1-d, 2-d and 3-d arrays on three clocks, each holding a plain song id, a nested one and one
#: that is not ASCII (NFC). ``beat``'s nested song is longer than one
#: chunk (:data:`~featurestore.store.layout.CHUNK_BYTES`), so reads cross a chunk boundary; ``embed`` is
#: stored as float16.
REFERENCE: dict[str, ReferenceGroup] = {
    "beat": ReferenceGroup(TimeAxis(44100, 441, 0), ("time",), "float32",
                           {"a": (300,), "rock/deep/c": (1_049_000,), "café ♪": (37,)}),
    "pitch": ReferenceGroup(TimeAxis(16000, 256, 0), ("time", "feature"), "float32",
                            {"a": (300, 2), "rock/deep/c": (80, 2), "café ♪": (5, 2)},
                            feature_names=("frequency", "confidence")),
    "embed": ReferenceGroup(TimeAxis(24000, 320, 200), ("layer", "time", "feature"), "float16",
                            {"a": (2, 40, 8), "rock/deep/c": (2, 17, 8), "café ♪": (2, 3, 8)},
                            coords={"layer": [4, 12]}),
}

#: the reference failures, as :meth:`~featurestore.store.FeatureStore.record_failure` takes them; the second
#: one's song id is not a valid path (a file whose name could not be stored)
REFERENCE_FAILURES: tuple[dict[str, Any], ...] = (
    {"model": "pitch", "song_id": "broken", "error": "cannot decode: not audio", "error_type": "AudioError",
     "source": {"path": "broken.wav", "size": 9, "mtime": 1700000000.25, "sha256": "0" * 64}},
    {"model": "beat", "song_id": "../escape", "error": "invalid song id", "error_type": "InvalidSongId",
     "source": None},
)


def reference_group_attrs(group: str) -> dict[str, Any]:
    """A reference group's attributes: a description as an extractor gives it, with the values text-only
    formats must encode (dicts, lists, None, booleans, floats that are not short in decimal, strings that
    look like JSON)."""
    ref = REFERENCE[group]
    description = {
        "model": group, "description": f"reference {group} (fstore's backend contract)", **ref.clock.as_attrs(),
        "dims": list(ref.dims), "feature_names": list(ref.feature_names) if ref.feature_names else None,
        "coords": ref.coords or {}, "config": {"gain": 0.1, "viterbi": True, "layers": [4, 12], "cache": None},
        "weights": [], "fingerprint": f"{group:0<64}"[:64], "units": "", "deterministic": False,
        "label": "true", "note": "[not a list]", "big": 2**53 + 1, "third": 1 / 3,
    }
    return group_attributes(description, group, ref.dtype)


def reference_array(group: str, song_id: str) -> np.ndarray:
    """A reference song's values in its storage dtype: multiples of 1/64 below 32 in size, so that float16
    and float32 hold them exactly and numpy computes the expected statistics from the same numbers."""
    ref = REFERENCE[group]
    shape = ref.shapes[song_id] if song_id != INTERRUPTED else (10, 2)
    rng = np.random.default_rng(zlib.crc32(f"{group}/{song_id}".encode()))
    return np.clip(np.round(rng.standard_normal(shape) * 64) / 64, -31, 31).astype(ref.dtype)


def reference_array_attrs(group: str, song_id: str) -> dict[str, Any]:
    """A reference song's array attributes as the writer records them (all but ``complete``)."""
    ref = REFERENCE[group]
    n_frames = reference_array(group, song_id).shape[ref.time_axis]
    n_samples = ref.clock.t0_samples + n_frames * ref.clock.hop_samples
    source = {"path": f"{song_id}.wav", "size": 1000 + n_samples, "mtime": 1700000000.5, "sha256": "f" * 64}
    shape = reference_array(group, song_id).shape
    attrs = array_attributes(reference_group_attrs(group), ref.dims, shape, n_samples,
                             n_samples / ref.clock.sample_rate, source, ref.dtype)
    return {**attrs, "written": REFERENCE_WRITTEN}


def write_reference(store: FeatureStore) -> None:
    """Write the reference content into an empty fstore Zarr store through its write API: the groups, their
    songs, an interrupted write (an array left without ``complete``, written with zarr as a killed run
    leaves it) and the failures."""
    import zarr

    for group, ref in REFERENCE.items():
        store.ensure_model(group, reference_group_attrs(group))
        for song in ref.shapes:
            store.write(group, song, reference_array(group, song), reference_array_attrs(group, song))
    root = zarr.open_group(store.url, mode="r+", storage_options=store.storage_options)
    data = reference_array("pitch", INTERRUPTED)
    arr = root.create_array(f"pitch/{INTERRUPTED}", shape=data.shape, dtype=data.dtype,
                            attributes=reference_array_attrs("pitch", INTERRUPTED), dimension_names=("time", "feature"))
    arr[...] = data
    for failure in REFERENCE_FAILURES:
        store.record_failure(**failure)


def assert_identical(got: Any, want: Any, where: str = "") -> None:
    """``got == want`` with the same types at every level: 1 is not 1.0, True is not 1, a tuple is not a list."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} {got!r}, want {type(want).__name__} {want!r}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)}, want {sorted(want)}"
        for key, value in want.items():
            assert_identical(got[key], value, f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{where}: {got!r}, want {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_identical(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r}, want {want!r}"


def _frames_in(clock: TimeAxis, n_frames: int, start: float, end: float) -> np.ndarray:
    """Indices of the frames whose centres lie in ``[start, end)``."""
    times = clock.times(n_frames)
    return np.flatnonzero((times >= start) & (times < end))


class BackendContract:
    """Shared tests of a :class:`~featurestore.store.ReadBackend`; subclasses implement :meth:`make_backend`
    and declare :attr:`expected_capabilities`.

    Every check compares the backend with the reference content (:data:`REFERENCE`, numpy arrays and
    attribute dicts), never with another backend. The backend is made once per test class.
    """

    #: what the backend must declare
    expected_capabilities: ClassVar[Capabilities]
    #: whether the backend can hold an incomplete array (an interrupted write); an export cannot
    holds_incomplete: ClassVar[bool] = True

    def make_backend(self, workdir: Path, storage_options: dict[str, Any] | None) -> ReadBackend:
        """A backend holding the reference content: write it with :func:`write_reference` into a Zarr store
        (in ``workdir``, or at a URL reached with ``storage_options``), then open that store or its export."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def storage_options(cls) -> dict[str, Any] | None:
        """fsspec options :meth:`make_backend` receives; a subclass overrides this fixture (an S3 endpoint)."""
        return None

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, tmp_path_factory: pytest.TempPathFactory,
                storage_options: dict[str, Any] | None) -> Iterator[ReadBackend]:
        backend = cls().make_backend(tmp_path_factory.mktemp(cls.__name__), storage_options)
        yield backend
        backend.close()

    @pytest.fixture(scope="class")
    @classmethod
    def reader(cls, backend: ReadBackend) -> StoreReader:
        return StoreReader(backend)

    def _songs(self, group: str) -> list[str]:
        return sorted(REFERENCE[group].shapes)

    # -- what the backend declares -------------------------------------------------------------------
    def test_is_a_read_backend(self, backend: ReadBackend) -> None:
        assert isinstance(backend, ReadBackend) and isinstance(backend.url, str) and backend.url

    def test_capabilities_are_declared(self, backend: ReadBackend) -> None:
        assert backend.capabilities == self.expected_capabilities, f"declares {backend.capabilities}"

    # -- attributes ----------------------------------------------------------------------------------
    def test_root_attrs(self, backend: ReadBackend) -> None:
        attrs = backend.root_attrs()
        assert_identical(attrs["schema_version"], SCHEMA_VERSION, "schema_version")
        assert isinstance(attrs["fstore_version"], str) and isinstance(attrs["created"], str)

    def test_models_are_the_groups_in_name_order(self, backend: ReadBackend) -> None:
        assert backend.models() == sorted(REFERENCE)

    def test_group_attrs_round_trip(self, backend: ReadBackend) -> None:
        for group in REFERENCE:
            assert_identical(backend.model_attrs(group), reference_group_attrs(group), group)
        with pytest.raises(KeyError):
            backend.model_attrs("absent")

    # -- songs ---------------------------------------------------------------------------------------
    def test_songs_are_listed_sorted_nested_and_unicode(self, backend: ReadBackend) -> None:
        for group in REFERENCE:
            assert backend.songs(group) == self._songs(group), group
        assert backend.songs("absent") == [] and backend.song_states("absent") == {}

    def test_song_states(self, backend: ReadBackend) -> None:
        for group in REFERENCE:
            want = dict.fromkeys(self._songs(group), True)
            if group == "pitch" and self.holds_incomplete:
                want[INTERRUPTED] = False
            assert backend.song_states(group) == want, group

    def test_incomplete_arrays_are_invisible(self, backend: ReadBackend) -> None:
        assert INTERRUPTED not in backend.songs("pitch")
        assert backend.array("pitch", INTERRUPTED) is None
        everything = backend.songs("pitch", complete_only=False)
        assert everything == sorted([*self._songs("pitch"), *([INTERRUPTED] if self.holds_incomplete else [])])
        if self.holds_incomplete:
            arr = backend.array("pitch", INTERRUPTED, complete_only=False)
            assert arr is not None and arr.attrs.get("complete") is not True
            np.testing.assert_array_equal(arr[...], reference_array("pitch", INTERRUPTED))

    # -- arrays --------------------------------------------------------------------------------------
    def test_array_metadata(self, backend: ReadBackend) -> None:
        for group, ref in REFERENCE.items():
            for song in ref.shapes:
                arr = backend.array(group, song)
                where = f"{group}/{song}"
                assert isinstance(arr, StoredArray), where
                assert arr.shape == ref.shapes[song] and arr.ndim == len(ref.dims), where
                assert arr.dtype == np.dtype(ref.dtype), where
                assert arr.chunks == time_chunk(arr.shape, ref.time_axis, arr.dtype.itemsize), where
                assert arr.dims == ref.dims and arr.dimension_names in (None, ref.dims), where
                assert_identical(arr.attrs, {**reference_array_attrs(group, song), "complete": True}, where)

    def test_array_values_and_slices(self, backend: ReadBackend) -> None:
        for group, ref in REFERENCE.items():
            for song in ref.shapes:
                want, arr = reference_array(group, song), backend.array(group, song)
                got = arr[...]
                assert got.dtype == want.dtype and isinstance(got, np.ndarray)
                np.testing.assert_array_equal(got, want, err_msg=f"{group}/{song}")
                time_slice = tuple(slice(3, 7) if i == ref.time_axis else slice(None) for i in range(want.ndim))
                np.testing.assert_array_equal(arr[time_slice], want[time_slice], err_msg=f"{group}/{song}")
        pitch = backend.array("pitch", "a")
        np.testing.assert_array_equal(pitch[3:7, 1], reference_array("pitch", "a")[3:7, 1])
        for index in (5, np.s_[-3:], np.s_[::7], np.s_[290:400], np.s_[10:3]):
            np.testing.assert_array_equal(pitch[index], reference_array("pitch", "a")[index], err_msg=str(index))
        long, want = backend.array("beat", "rock/deep/c"), reference_array("beat", "rock/deep/c")
        assert long.chunks[0] < long.shape[0], "the long song must span several chunks"
        boundary = long.chunks[0]
        np.testing.assert_array_equal(long[boundary - 5:boundary + 5], want[boundary - 5:boundary + 5])

    def test_absent_songs_are_none(self, backend: ReadBackend) -> None:
        assert backend.array("beat", "not-there") is None
        assert backend.array("absent", "a") is None
        assert backend.array("beat", "rock") is None  # a folder of songs, not a song
        assert backend.array("beat", "rock/deep") is None

    def test_ids_that_escape_are_refused(self, backend: ReadBackend) -> None:
        for bad in ("../escape", "/abs", "rock/../a", "_failures/beat", "a\\b", ""):
            with pytest.raises(InvalidSongId):
                backend.array("beat", bad)

    def test_an_id_is_found_in_any_unicode_normal_form(self, backend: ReadBackend) -> None:
        arr = backend.array("beat", unicodedata.normalize("NFD", "café ♪"))
        assert arr is not None and arr.shape == REFERENCE["beat"].shapes["café ♪"]

    # -- failures and sizes --------------------------------------------------------------------------
    def test_failures_sorted_and_filtered(self, backend: ReadBackend) -> None:
        want = sorted(({k: v for k, v in f.items() if v is not None} for f in REFERENCE_FAILURES),
                      key=lambda f: (f["model"], f["song_id"]))
        got = backend.failures()
        assert all(isinstance(f.pop("time"), str) for f in got)
        assert_identical(got, want, "failures")
        for group in REFERENCE:
            assert [f["song_id"] for f in backend.failures(group)] == [f["song_id"] for f in want if f["model"] == group]

    def test_size_on_disk(self, backend: ReadBackend) -> None:
        for group in REFERENCE:
            assert backend.size_on_disk(group) > 0, group
        assert backend.size_on_disk("absent") == 0

    # -- through the reader --------------------------------------------------------------------------
    def test_load(self, reader: StoreReader) -> None:
        for group, ref in REFERENCE.items():
            for song in ref.shapes:
                da = reader.load(song, group)
                assert da.dims == ref.dims and da.dtype == np.float32
                np.testing.assert_array_equal(da.values, reference_array(group, song).astype(np.float32))
                n_frames = ref.shapes[song][ref.time_axis]
                np.testing.assert_array_equal(da["time"].values, ref.clock.times(n_frames))
                want_attrs = reference_array_attrs(group, song)
                assert_identical(decode_attrs(da.attrs), want_attrs, f"{group}/{song}")
        assert list(reader.load("a", "pitch")["feature"].values) == ["frequency", "confidence"]
        assert list(reader.load("a", "embed")["layer"].values) == [4, 12]
        with pytest.raises(KeyError):
            reader.load("not-there", "beat")

    def test_load_a_time_slice(self, reader: StoreReader) -> None:
        windows = {"beat": ("rock/deep/c", 10485.0, 10486.0), "pitch": ("a", 0.5, 1.25), "embed": ("a", 0.1, 0.3)}
        for group, (song, start, end) in windows.items():
            ref = REFERENCE[group]
            frames = _frames_in(ref.clock, ref.shapes[song][ref.time_axis], start, end)
            want = np.take(reference_array(group, song), frames, axis=ref.time_axis).astype(np.float32)
            for lazy in (False, True):
                da = reader.load(song, group, start=start, end=end, lazy=lazy)
                np.testing.assert_array_equal(np.asarray(da.values), want, err_msg=f"{group} lazy={lazy}")
                np.testing.assert_array_equal(da["time"].values, ref.clock.times(frames[-1] + 1)[frames])
        assert reader.load("a", "pitch", start=1e6).sizes["time"] == 0

    def test_load_song_keeps_each_clock(self, reader: StoreReader) -> None:
        ds = reader.load_song("a")
        assert set(ds.data_vars) == set(REFERENCE)
        for group, ref in REFERENCE.items():
            var = ds[group]
            assert var.dims == tuple(f"time_{group}" if d == "time" else f"{group}_{d}" for d in ref.dims)
            np.testing.assert_array_equal(var.values, reference_array(group, "a").astype(np.float32))

    def test_load_song_aligned(self, reader: StoreReader) -> None:
        """On pitch's clock, each other model takes its frame nearest in time, NaN beyond half a hop of any."""
        ds = reader.load_song("a", align="pitch")
        target = REFERENCE["pitch"].clock.times(REFERENCE["pitch"].shapes["a"][0])
        np.testing.assert_array_equal(ds["time"].values, target)
        np.testing.assert_array_equal(ds["pitch"].values, reference_array("pitch", "a"))
        for group in ("beat", "embed"):
            ref = REFERENCE[group]
            source = np.moveaxis(reference_array(group, "a").astype(np.float32), ref.time_axis, 0)
            nearest = np.round((target - ref.clock.t0_s) / ref.clock.hop_s).astype(np.int64)
            inside = (nearest >= 0) & (nearest < source.shape[0])
            want = np.full((len(target),) + source.shape[1:], np.nan, dtype=np.float32)
            want[inside] = source[nearest[inside]]
            got = np.moveaxis(ds[group].values, ds[group].dims.index("time"), 0)
            np.testing.assert_array_equal(got, want, err_msg=group)
            assert inside.any() and not inside.all(), f"{group}: the check must cover both cases"

    def test_pooled(self, reader: StoreReader) -> None:
        for group, ref in REFERENCE.items():
            for stat in POOL_STATS:
                pooled = reader.pooled(group, stat=stat)
                assert pooled.dims == ("song", *(d for d in ref.dims if d != "time")), group
                assert list(pooled["song"].values) == self._songs(group)
                assert list(pooled["n_frames"].values) == [ref.shapes[s][ref.time_axis] for s in self._songs(group)]
                want = np.stack([getattr(np, stat)(reference_array(group, s).astype(np.float64), axis=ref.time_axis)
                                 for s in self._songs(group)]).astype(np.float32)
                np.testing.assert_allclose(pooled.values, want, rtol=1e-6, atol=0, err_msg=f"{group} {stat}")

    def test_stack_pads_with_nan(self, reader: StoreReader) -> None:
        for group, ref in REFERENCE.items():
            stacked = reader.stack(group)
            lengths = [ref.shapes[s][ref.time_axis] for s in self._songs(group)]
            dims = ("song", "time", *(d for d in ref.dims if d != "time"))
            assert stacked.dims == dims and stacked.shape[1] == max(lengths), group
            assert list(stacked["length"].values) == lengths
            np.testing.assert_array_equal(stacked["time"].values, ref.clock.times(max(lengths)))
            for i, song in enumerate(self._songs(group)):
                want = np.moveaxis(reference_array(group, song).astype(np.float32), ref.time_axis, 0)
                np.testing.assert_array_equal(stacked.values[i, : lengths[i]], want)
                assert np.isnan(stacked.values[i, lengths[i]:]).all()
        assert reader.stack("pitch", songs=["café ♪"]).shape == (1, 5, 2)

    def test_info(self, reader: StoreReader) -> None:
        info = reader.info()
        assert info["failures"] == len(REFERENCE_FAILURES)
        assert sorted(info["models"]) == sorted(REFERENCE)
        for group, ref in REFERENCE.items():
            summary = info["models"][group]
            assert summary["songs"] == len(ref.shapes) and summary["dims"] == list(ref.dims)
            assert summary["incomplete"] == (1 if group == "pitch" and self.holds_incomplete else 0)
            assert summary["failed"] == sum(f["model"] == group for f in REFERENCE_FAILURES)
            assert summary["frame_rate_hz"] == ref.clock.frame_rate_hz and summary["dtype"] == ref.dtype
            assert summary["bytes"] > 0
