"""What agreement between a stored array and its recomputation means (featurestore.agreement): each check of a
Tolerance fails where it should, on the dims the models' outputs have, and float16 storage costs one step."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore.agreement import Tolerance, compare

RNG = np.random.default_rng(0)
EMBEDDING = RNG.standard_normal((200, 16)).astype(np.float32)


def test_identical_arrays_agree_exactly() -> None:
    got = compare(EMBEDDING, EMBEDDING.copy(), Tolerance(max_abs=0.0, min_cosine=1.0), ("time", "feature"))
    assert got.ok and got.max_abs == 0.0 and got.min_cosine == 1.0


def test_values_beyond_the_limit_fail_on_more_frames_than_allowed() -> None:
    computed = EMBEDDING.copy()
    computed[7, 3] += 1e-3
    within = Tolerance(max_abs=2e-3)
    assert compare(EMBEDDING, computed, within, ("time", "feature")).ok
    got = compare(EMBEDDING, computed, Tolerance(max_abs=1e-4), ("time", "feature"), frame_times=np.arange(200) * 0.1)
    assert not got.ok and got.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert "99.5 % of frames" in got.failures[0] and "0.70 s" in got.failures[0]
    assert compare(EMBEDDING, computed, Tolerance(max_abs=1e-4, frames=0.99), ("time", "feature")).ok
    computed[8:10] += 1.0  # 3 frames of 200 now differ: more than 1 %
    assert not compare(EMBEDDING, computed, Tolerance(max_abs=1e-4, frames=0.99), ("time", "feature")).ok


def test_relative_limit_scales_with_the_value() -> None:
    stored = np.array([1.0, 1000.0], np.float32)
    computed = stored * (1 + 1e-5)
    assert compare(stored, computed, Tolerance(max_abs=1e-6, max_rel=2e-5), ("time",)).ok
    assert not compare(stored, computed, Tolerance(max_abs=1e-6), ("time",)).ok


def test_frame_relative_limit_scales_with_the_frames_largest_value() -> None:
    stored = np.array([[100.0, 0.1], [1.0, 0.1]], np.float32)  # the same small value in a loud and a quiet frame
    computed = stored + np.array([[0.0, 0.5], [0.0, 0.5]], np.float32)
    assert not compare(stored, computed, Tolerance(max_abs=1e-2, max_rel=1e-2), ("time", "feature")).ok
    loud_only = compare(stored, computed, Tolerance(max_abs=1e-2, max_frame_rel=1e-2), ("time", "feature"))
    assert not loud_only.ok and "50 % of frames" in loud_only.failures[0]
    assert compare(stored[:1], computed[:1], Tolerance(max_abs=1e-2, max_frame_rel=1e-2), ("time", "feature")).ok
    assert "0.01·(the frame's largest |x|)" in Tolerance(max_abs=1e-2, max_frame_rel=1e-2).describe()


def test_cosine_is_per_frame_along_the_feature_dim() -> None:
    scaled = EMBEDDING * 1.01  # same directions: a cosine-only tolerance accepts it
    assert compare(EMBEDDING, scaled, Tolerance(min_cosine=0.9999), ("time", "feature")).ok
    turned = EMBEDDING.copy()
    turned[42] = np.roll(turned[42], 1)  # one frame points elsewhere
    got = compare(EMBEDDING, turned, Tolerance(min_cosine=0.9999), ("time", "feature"))
    assert not got.ok and got.min_cosine < 0.9 and "cosine" in got.failures[0]


def test_cosine_of_stacked_layers_is_per_layer_and_frame() -> None:
    layers = RNG.standard_normal((3, 50, 8)).astype(np.float32)
    turned = layers.copy()
    turned[1, 10] = -turned[1, 10]
    got = compare(layers, turned, Tolerance(min_cosine=0.999), ("layer", "time", "feature"))
    assert got.min_cosine == pytest.approx(-1.0) and not got.ok


def test_an_output_with_only_time_is_one_vector() -> None:
    activation = RNG.random(300).astype(np.float32)
    assert compare(activation, activation * 2, Tolerance(min_cosine=0.999999), ("time",)).ok
    assert not compare(activation, activation[::-1].copy(), Tolerance(min_cosine=0.999), ("time",)).ok


def test_zero_vectors_agree_with_zero_only() -> None:
    zeros = np.zeros((4, 3), np.float32)
    assert compare(zeros, zeros, Tolerance(min_cosine=0.999), ("time", "feature")).min_cosine == 1.0
    ones = np.ones((4, 3), np.float32)
    assert compare(zeros, ones, Tolerance(min_cosine=0.999), ("time", "feature")).min_cosine == 0.0


def _pitch(frequency: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    return np.stack([frequency, confidence], axis=1).astype(np.float32)


def test_pitch_is_held_in_cents_on_confident_frames() -> None:
    frequency, confidence = np.full(200, 440.0), np.full(200, 0.9)
    confidence[:5] = 0.1
    stored = _pitch(frequency, confidence)
    moved = frequency.copy()
    moved[:5] *= 2.0  # an octave off where the tracker is unsure: not counted by the gate
    moved[100] *= 2 ** (15 / 1200)  # 15 cents off on one confident frame of 195
    gate = Tolerance(max_cents=10, cents_frames=0.99, confident=0.5)
    features = ("frequency", "confidence")
    assert compare(stored, _pitch(moved, confidence), gate, ("time", "feature"), features).ok
    every_frame = Tolerance(max_cents=10, confident=None)
    got = compare(stored, _pitch(moved, confidence), every_frame, ("time", "feature"), features)
    assert not got.ok and "1.2e+03 cents" in got.failures[0]
    moved[101:104] *= 2 ** (15 / 1200)  # 4 of 195 confident frames: more than 1 %
    assert not compare(stored, _pitch(moved, confidence), gate, ("time", "feature"), features).ok


def test_pitch_zero_means_no_pitch() -> None:
    features = ("frequency", "confidence")
    silent = _pitch(np.zeros(10), np.full(10, 0.9))
    check = Tolerance(max_cents=0.01, confident=None)
    assert compare(silent, silent.copy(), check, ("time", "feature"), features).ok
    voiced = _pitch(np.full(10, 220.0), np.full(10, 0.9))
    assert not compare(silent, voiced, check, ("time", "feature"), features).ok


def test_pitch_values_check_leaves_the_frequency_to_cents() -> None:
    """max_abs holds the confidence; the frequency (in Hz) is held in cents only."""
    features = ("frequency", "confidence")
    stored = _pitch(np.full(10, 1000.0), np.full(10, 0.9))
    computed = _pitch(np.full(10, 1000.001), np.full(10, 0.9))  # 0.0017 cents, 1e-3 Hz
    assert compare(stored, computed, Tolerance(max_abs=1e-5, max_cents=0.01, confident=None),
                   ("time", "feature"), features).ok
    computed[:, 1] += 1e-3
    assert not compare(stored, computed, Tolerance(max_abs=1e-5, max_cents=0.01, confident=None),
                       ("time", "feature"), features).ok


def test_float16_storage_allows_one_step() -> None:
    """Two computations a hair apart may round to neighbouring float16 values; two steps is a real difference."""
    midpoint = 1 + 2.0**-11  # halfway between 1 and the next float16
    stored = np.array([midpoint - 1e-6], np.float32).astype(np.float16)  # stored as 1.0
    computed = np.array([midpoint + 1e-6], np.float32)  # rounds to 1 + 2**-10
    tight = Tolerance(max_abs=1e-5)
    assert compare(stored, computed, tight, ("time",)).ok
    assert not compare(stored.astype(np.float32), computed, tight, ("time",)).ok
    assert not compare(stored, np.array([1 + 3 * 2.0**-10], np.float32), tight, ("time",)).ok
    features = ("frequency", "confidence")
    pitch16 = _pitch(np.full(4, 440.0), np.full(4, 0.9)).astype(np.float16)
    step_up = _pitch(np.full(4, 440.0 + 0.25), np.full(4, 0.9))  # one float16 step at 440 Hz: 0.98 cents
    assert compare(pitch16, step_up, Tolerance(max_cents=0.01, confident=None), ("time", "feature"), features).ok


def test_refusals() -> None:
    with pytest.raises(ValueError, match="at least one check"):
        Tolerance()
    with pytest.raises(ValueError, match="shapes differ"):
        compare(EMBEDDING, EMBEDDING[:-1], Tolerance(max_abs=1.0), ("time", "feature"))
    with pytest.raises(ValueError, match="frequency and confidence"):
        compare(EMBEDDING, EMBEDDING, Tolerance(max_cents=10), ("time", "feature"))
