"""Beats from a stored activation: madmom's own DBN result, put on the stored clock."""

from __future__ import annotations

import numpy as np
import pytest

from madmom.features import beats as madmom_beats

from featurestore.beats import DBN_DEFAULTS, beat_times, tempo_bpm

from .conftest import requires_shared, shared_path


def peaks(period: int = 50, first: int = 20, n: int = 1000) -> np.ndarray:
    """A beat activation at 100 fps with a peak every ``period`` frames (50: 120 BPM) from frame ``first``."""
    act = np.full(n, 0.02, dtype=np.float32)
    for p in range(first, n, period):
        for d, v in ((2, 0.2), (1, 0.5), (0, 0.95)):
            act[max(p - d, 0): p + d + 1] = np.maximum(act[max(p - d, 0): p + d + 1], v)
    return act


def madmom_dbn(act: np.ndarray, fps: float, **options) -> np.ndarray:
    return madmom_beats.DBNBeatTrackingProcessor(fps=fps, **options)(act)


def test_synthetic_activation_gives_its_peaks():
    act = peaks()
    beats = beat_times(act, fps=100.0)
    assert beats.dtype == np.float64
    np.testing.assert_array_equal(beats, madmom_dbn(act, 100.0))
    np.testing.assert_allclose(beats, np.arange(20, 1000, 50) / 100, rtol=0, atol=1e-12)
    assert tempo_bpm(beats) == pytest.approx(120.0)


def test_t0_shifts_madmom_beats():
    act = peaks()
    np.testing.assert_array_equal(beat_times(act, fps=100.0, t0_s=0.125), madmom_dbn(act, 100.0) + 0.125)


@requires_shared
@pytest.mark.parametrize("t0_s", [0.0, 0.005])
def test_reference_activation_equals_madmom(t0_s):
    ref = np.load(shared_path("parity", "madmom", "sample.beats_blstm.npz"))
    act, fps = ref["activations"], float(ref["fps"])
    beats = beat_times(act, fps=fps, t0_s=t0_s)
    np.testing.assert_array_equal(beats, madmom_dbn(act, fps) + t0_s)
    # madmom's documented beats for its sample.wav (DBNBeatTrackingProcessor's docstring)
    np.testing.assert_allclose(beats - t0_s, [0.1, 0.45, 0.8, 1.12, 1.48, 1.8, 2.15, 2.49], rtol=0, atol=1e-9)


@requires_shared
def test_reference_options_pass_through():
    act = np.load(shared_path("parity", "madmom", "sample.beats_blstm.npz"))["activations"]
    for options in ({"max_bpm": 100.0}, {"correct": False}, {"num_tempi": 20}, {"transition_lambda": 1.0}):
        beats = beat_times(act, fps=100.0, **options)
        np.testing.assert_array_equal(beats, madmom_dbn(act, 100.0, **options))
        assert not np.array_equal(beats, beat_times(act, fps=100.0)), options


def test_tempo_range_changes_the_beats():
    act = peaks()
    slow = beat_times(act, fps=100.0, max_bpm=100.0)  # 120 BPM is out of range: every other peak
    np.testing.assert_array_equal(slow, madmom_dbn(act, 100.0, max_bpm=100.0))
    assert tempo_bpm(slow) == pytest.approx(60.0)
    fast = beat_times(act, fps=100.0, min_bpm=150.0)
    assert tempo_bpm(fast) > 150.0


def test_threshold_without_activation_above_it_gives_no_beats():
    beats = beat_times(np.full(500, 0.05, np.float32), fps=100.0, threshold=0.5)
    assert beats.shape == (0,) and beats.dtype == np.float64


def test_defaults_are_madmoms():
    cls = madmom_beats.DBNBeatTrackingProcessor
    madmom_defaults = {"min_bpm": cls.MIN_BPM, "max_bpm": cls.MAX_BPM, "num_tempi": cls.NUM_TEMPI,
                       "transition_lambda": cls.TRANSITION_LAMBDA, "observation_lambda": cls.OBSERVATION_LAMBDA,
                       "threshold": cls.THRESHOLD, "correct": cls.CORRECT}
    assert DBN_DEFAULTS == madmom_defaults


@pytest.mark.parametrize("options, error, match", [
    ({"min_bmp": 60}, TypeError, "'min_bmp'"),
    ({"online": True}, TypeError, "offline"),
    ({"min_bpm": 0}, ValueError, "min_bpm=0"),
    ({"min_bpm": 120, "max_bpm": 100}, ValueError, "max_bpm=100"),
    ({"observation_lambda": 1}, ValueError, "observation_lambda=1"),
    ({"transition_lambda": -1}, ValueError, "transition_lambda=-1"),
    ({"num_tempi": 2.5}, ValueError, "num_tempi=2.5"),
    ({"threshold": 1.0}, ValueError, "threshold=1.0"),
    ({"correct": "no"}, ValueError, "correct='no'"),
])
def test_bad_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        beat_times(peaks(), fps=100.0, **options)


def test_bad_activation_or_fps():
    with pytest.raises(ValueError, match="1-d"):
        beat_times(np.zeros((10, 2), np.float32), fps=100.0)
    with pytest.raises(ValueError, match="fps"):
        beat_times(peaks(), fps=0.0)


def test_tempo_is_the_median_interval():
    assert tempo_bpm(np.array([0.0, 0.5, 1.0, 1.5, 2.5, 3.0])) == pytest.approx(120.0)  # one missed beat
    assert tempo_bpm(np.array([1.0])) is None and tempo_bpm(np.array([])) is None
