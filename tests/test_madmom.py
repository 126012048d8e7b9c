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
