"""madmom extractor: the shared contract, and parity with madmom's own reference activations."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore.extractors.madmom import MadmomBeats
from featurestore.testing import ExtractorContract

from .conftest import requires_shared, shared_path


class TestMadmomContract(ExtractorContract):
    def make_extractor(self, **options):
        return MadmomBeats(**options)


@requires_shared
def test_parity_with_madmom_reference_activations():
    import soundfile as sf

    folder = shared_path("parity", "madmom")
    wave, rate = sf.read(folder / "sample.wav", dtype="float32")
    assert rate == 44100 and wave.ndim == 1
    reference = np.load(folder / "sample.beats_blstm.npz")["activations"]
    ext = MadmomBeats()
    ext.load("cpu")
    got = ext.extract(wave)
    assert got.shape == reference.shape == (281,)
    assert np.abs(got - reference).max() <= 1e-5


def test_single_frame_keeps_its_time_axis():
    ext = MadmomBeats()
    ext.load("cpu")
    assert ext.extract(np.full(441, 0.1, dtype=np.float32)).shape == (1,)


def test_blockwise_features_equal_one_pass(monkeypatch):
    """Blocks with context reproduce madmom's one-pass output, also at the signal's ends (FFT rounding only)."""
    from madmom.audio.signal import Signal

    import featurestore.extractors.madmom as module
    from featurestore.testing import test_signal

    ext = MadmomBeats()
    ext.load("cpu")
    wave = test_signal(44100 * 7 + 123, 44100)
    one_pass = np.asarray(ext._processor(Signal(wave, sample_rate=44100)), dtype=np.float32)
    monkeypatch.setattr(module, "BLOCK_FRAMES", 97)  # many blocks, block edges everywhere
    np.testing.assert_allclose(ext.extract(wave), one_pass, rtol=0, atol=1e-6)


def test_network_sessions_release_their_memory_after_each_song():
    """onnxruntime's arena would keep each of the eight sessions' peak (2 GB after 20 minutes)."""
    ext = MadmomBeats()
    ext.load("cpu")
    _, ensemble = ext._processor.processors
    (parallel, _) = ensemble.processors
    runtimes = [network._runtime for network in parallel.processors]
    assert len(runtimes) == 8
    assert all(r.session_options.enable_cpu_mem_arena is False for r in runtimes)
