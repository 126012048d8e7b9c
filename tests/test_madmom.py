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


@pytest.mark.parametrize("seconds", [0.01, 0.5, 2.0, 7.3])
def test_activations_equal_rnnbeatprocessor_on_generated_signals(seconds):
    """One FFT per frame matrix gives madmom's activations within float rounding, ends included."""
    from madmom.audio.signal import Signal
    from madmom.features.beats import RNNBeatProcessor

    from featurestore.testing import test_signal

    wave = test_signal(int(44100 * seconds) + 17, 44100)
    reference = np.asarray(RNNBeatProcessor(num_threads=1)(Signal(wave, sample_rate=44100))).reshape(-1)
    ext = MadmomBeats()
    ext.load("cpu")
    got = ext.extract(wave)
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= 1e-5


def test_features_do_not_depend_on_the_fft_chunking(monkeypatch):
    """Chunks of frames only bound memory: any chunk size gives the same features (FFT rounding only)."""
    import featurestore.extractors._madmom_features as module
    from featurestore.testing import test_signal

    wave = test_signal(44100 * 7 + 123, 44100)
    one_chunk = module.beat_features(wave)
    monkeypatch.setattr(module, "CHUNK_FRAMES", 97)  # many chunks, chunk edges everywhere
    np.testing.assert_allclose(module.beat_features(wave), one_chunk, rtol=0, atol=1e-6)


def test_network_sessions_release_their_memory_after_each_song():
    """onnxruntime's arena would keep each of the eight sessions' peak (2 GB after 20 minutes)."""
    ext = MadmomBeats()
    ext.load("cpu")
    assert len(ext._sessions) == 8
    assert all(s.get_session_options().enable_cpu_mem_arena is False for s in ext._sessions)
