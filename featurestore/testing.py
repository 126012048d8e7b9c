"""The conformance suite every extractor passes (like zarr-python's ``StoreTests``).

A model's test module subclasses :class:`ExtractorContract` and implements
:meth:`~ExtractorContract.make_extractor`; pytest then runs every ``test_*`` below
against it. Signals are generated here, so the suite needs no data files.

    class TestCrepeContract(ExtractorContract):
        alternative_options = {"viterbi": False}
        def make_extractor(self, **options):
            return Crepe(capacity="tiny", **options)
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import pytest

from .agreement import Tolerance, compare
from .errors import AudioTooShort
from .extractors import registry
from .extractors.base import Extractor, TimeAxis, config_fields

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
