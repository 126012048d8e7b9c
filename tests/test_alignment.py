"""Alignment proven with a test signal: each model sees events of known time where its stated clock says.

Every test generates a signal at 48 kHz with events at known times (clicks; 220 Hz <-> 330 Hz pitch
steps; sudden changes of timbre), writes it to a float WAV file, runs one model on it through
fstore's pipeline (decode, soxr resampling to the model's rate, extraction, the store) and reads
the features back with ``open_store(...).load``: the times checked are the ``time`` coordinate a
user gets. Events lie off the frame grids, at sub-frame phases spread evenly over one frame, so
the mean offset over the events measures the model's lag to a fraction of a frame; each test
asserts that mean within half a frame (OpenL3: the exact frames that see the change), so a clock
wrong by one frame fails, and each event within the bound the model's framing allows.

Weights: madmom's and CREPE's real weights (installed with fstore). OpenL3 and MERT: seeded random
weights in the official formats (``tests/helpers.py``; the real files cannot be downloaded here).
What sets a clock (framing, strides, padding) does not depend on the weights' values, and a
random network responds to a change of its input too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from featurestore.extractors.base import Extractor
from featurestore.extractors.crepe import Crepe
from featurestore.extractors.madmom import MadmomBeats
from featurestore.extractors.mert import Mert
from featurestore.extractors.openl3 import OpenL3

from .helpers import FULL_SIZE_CONFIG, TINY_CONFIG, write_official_layout, write_snapshot

if TYPE_CHECKING:
    import xarray as xr

#: generation rate (Hz): every model's rate is reached by fstore's own resampling (OpenL3 uses it as is)
RATE = 48_000


def spread(n: int, first_s: float, spacing_s: float, period_s: float, step: int) -> tuple[float, ...]:
    """``n`` event times ``spacing_s`` apart from ``first_s``, event ``k`` moved by ``(r + 0.5) / n`` of
    ``period_s`` (one frame of the model) where ``r = step·k mod n``: the sub-frame phases cover the
    frame evenly, so quantisation to the frame grid averages out. Times are rounded to ``RATE``'s grid."""
    return tuple(round((first_s + spacing_s * k + period_s * ((step * k) % n + 0.5) / n) * RATE) / RATE
                 for k in range(n))


def clicks(times_s: Sequence[float], duration_s: float) -> np.ndarray:
    """Unit impulses, one sample each, at ``times_s`` on silence (float32 at ``RATE``)."""
    wave = np.zeros(round(duration_s * RATE), dtype=np.float32)
    wave[[round(t * RATE) for t in times_s]] = 1.0
    return wave


def pitch_steps(times_s: Sequence[float], duration_s: float) -> np.ndarray:
    """A sine of amplitude 0.5 at 220 Hz that steps to 330 Hz at ``times_s[0]``, back to 220 Hz at
    ``times_s[1]`` and so on, with a continuous phase (float32 at ``RATE``)."""
    n = np.arange(round(duration_s * RATE))
    high = np.searchsorted(np.round(np.asarray(times_s) * RATE), n, side="right") % 2 == 1
    phase = 2 * np.pi * np.cumsum(np.where(high, 330.0, 220.0)) / RATE
    return (0.5 * np.sin(phase)).astype(np.float32)


def timbre_changes(times_s: Sequence[float], duration_s: float) -> np.ndarray:
    """A 150 Hz tone that switches at each of ``times_s`` between a dull timbre (harmonics 1-5 at
    amplitude 0.3/h) and a bright one (odd harmonics 1-15 at 0.3/h, square-like), starting dull.

    150 Hz makes whole periods of OpenL3's 4800-sample hop and of MERT's 320-sample hop at 24 kHz,
    and the phase is computed in integers, so the frames of a steady stretch are identical and the
    distance between consecutive frames comes from the changes only.
    """
    n = np.arange(round(duration_s * RATE), dtype=np.int64)

    def tone(harmonics: range) -> np.ndarray:
        return sum(0.3 / h * np.sin(2 * np.pi * ((150 * h * n) % RATE) / RATE) for h in harmonics)

    bright = np.searchsorted(np.round(np.asarray(times_s) * RATE), n, side="right") % 2 == 1
    return np.where(bright, tone(range(1, 16, 2)), tone(range(1, 6))).astype(np.float32)


def stored(tmp_path: Path, ext: Extractor, wave: np.ndarray) -> xr.DataArray:
    """``ext``'s features of ``wave`` as a user reads them: the signal written to a float WAV at
    ``RATE``, ``fstore``'s pipeline run on it into a new store, and the array loaded back
    (an ``xr.DataArray`` whose ``time`` coordinate is in seconds)."""
    import soundfile as sf

    from featurestore import open_store
    from featurestore.run import run
    from featurestore.discover import discover
    from featurestore.store import FeatureStore

    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "signal.wav", wave, RATE, subtype="FLOAT")
    url = str(tmp_path / "features.zarr")
    summary = run(FeatureStore(url, mode="a"), discover(folder).files, [ext])
    assert summary.ok, summary.failures
    features = open_store(url).load("signal", ext.name)
    n = features.sizes["time"]
    np.testing.assert_array_equal(features.time.values, ext.time_axis.times(n))  # the stated clock
    return features


def peak_offset(y: np.ndarray, k: int) -> float:
    """Where the peak at index ``k`` lies between samples: the vertex of the parabola through
    ``y[k-1], y[k], y[k+1]``, in samples from ``k`` (within ±0.5 at a strict local maximum)."""
    left, centre, right = y[k - 1], y[k], y[k + 1]
    return 0.5 * (left - right) / (left - 2 * centre + right)


def event_offsets(curve: np.ndarray, times: np.ndarray, events_s: Sequence[float], hop: float, what: str) -> np.ndarray:
    """For each event (s), where ``curve`` (one value per time of ``times``, s) peaks within 5 hops of it,
    located between frames (parabola through the peak and its neighbours), minus the event (s); asserts
    each peak frame within one hop of its event."""
    offsets = []
    for event in events_s:
        near = np.flatnonzero(np.abs(times - event) <= 5 * hop)
        k = near[np.argmax(curve[near])]
        assert abs(times[k] - event) <= hop, f"event at {event} s: {what} peaks at {times[k]} s"
        offsets.append(times[k] + peak_offset(curve, k) * hop - event)
    return np.array(offsets)


def frame_distance(features: np.ndarray) -> np.ndarray:
    """Cosine distance between consecutive frames of (T, D) features, shape (T - 1,), in float64: the
    frames of a deep random network can differ by less than float32 resolves in a cosine."""
    unit = features.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return 1.0 - np.sum(unit[1:] * unit[:-1], axis=1)


# -- madmom: clicks ---------------------------------------------------------------------------------------
CLICKS_S = spread(10, 0.5, 0.5, 0.01, step=3)  # 120 beats per minute, phases 0.5 .. 9.5 ms
CLICKS_DURATION_S = 5.5


def test_madmom_activation_peaks_at_each_click(tmp_path):
    """madmom's real weights. Ten clicks at 120 beats per minute: a click train is the plainest beat the
    RNN (trained on music) can be given, and each click is an onset it marks with a one-frame-sharp
    peak. Each peak frame lies within one frame (10 ms) of its click; the peaks located between
    frames (parabola through the peak and its neighbours) lie within half a frame of the clicks on
    average."""
    activation = stored(tmp_path, MadmomBeats(), clicks(CLICKS_S, CLICKS_DURATION_S))
    hop = activation.attrs["hop_s"]
    offsets = event_offsets(activation.values, activation.time.values, CLICKS_S, hop, "activation")
    assert abs(np.mean(offsets)) <= hop / 2, offsets


# -- CREPE: pitch steps -----------------------------------------------------------------------------------
STEPS_S = spread(20, 0.3, 0.25, 0.01, step=7)  # even k: 220 -> 330 Hz, odd k: 330 -> 220 Hz
STEPS_DURATION_S = 5.5
#: the step's midpoint on CREPE's scale (cents): the geometric mean of 220 and 330 Hz, 269.4 Hz
MIDPOINT_HZ = float(np.sqrt(220.0 * 330.0))


def crossings(f0_hz: np.ndarray, times: np.ndarray, hop: float) -> np.ndarray:
    """For each of ``STEPS_S``, when the f0 track crosses ``MIDPOINT_HZ``: linear interpolation in
    cents between the two frames around the one crossing within 10 frames of the step (seconds)."""
    cents = 1200 * np.log2(f0_hz / MIDPOINT_HZ)
    seen = []
    for step in STEPS_S:
        near = np.flatnonzero(np.abs(times - step) <= 10 * hop)
        side = cents[near] > 0
        (k,) = near[:-1][side[:-1] != side[1:]]  # exactly one crossing per step
        seen.append(times[k] + cents[k] / (cents[k] - cents[k + 1]) * hop)
    return np.array(seen)


@pytest.mark.parametrize("capacity", ["tiny", pytest.param("full", marks=pytest.mark.slow)])
def test_crepe_f0_crosses_each_step_midpoint_in_its_frame(tmp_path, capacity):
    """CREPE's real weights, argmax decoding (each frame's own estimate, no smoothing). A sine steps
    220 -> 330 Hz and back twenty times. Each 220 -> 330 Hz step's f0 crosses the midpoint (269.4 Hz)
    within one frame (10 ms) of the step; over the up and down steps together (which cancels the
    model's preference for one tone in a mixed frame) within half a frame on average."""
    pitch = stored(tmp_path, Crepe(capacity=capacity, viterbi=False), pitch_steps(STEPS_S, STEPS_DURATION_S))
    hop = pitch.attrs["hop_s"]
    offsets = crossings(pitch.sel(feature="frequency").values, pitch.time.values, hop) - np.array(STEPS_S)
    assert np.all(np.abs(offsets[0::2]) <= hop), offsets
    assert abs(offsets.mean()) <= hop / 2, offsets


@pytest.mark.parametrize("capacity", ["tiny", pytest.param("full", marks=pytest.mark.slow)])
def test_crepe_viterbi_spreads_each_step_around_it(tmp_path, capacity):
    """CREPE's real weights, Viterbi decoding (fstore's default). crepe's HMM moves at most 11 bins
    (220 cents) per frame, so a 702-cent step becomes a ramp over four frames, which the decoder
    places before or after the switch at nearly equal cost: the midpoint crossing lies up to a few
    frames from the step (each within 3 frames here), and over the up and down steps together within
    half a frame of it on average."""
    pitch = stored(tmp_path, Crepe(capacity=capacity), pitch_steps(STEPS_S, STEPS_DURATION_S))
    hop = pitch.attrs["hop_s"]
    offsets = crossings(pitch.sel(feature="frequency").values, pitch.time.values, hop) - np.array(STEPS_S)
    assert np.all(np.abs(offsets) <= 3 * hop), offsets
    assert abs(offsets.mean()) <= hop / 2, offsets


# -- OpenL3: one change of timbre -------------------------------------------------------------------------
TIMBRE_CHANGE_S = 1.13
TIMBRE_DURATION_S = 2.3  # frames 0 .. 18; 5 and 6 hear only the dull tone, 17 and 18 only the bright one


@pytest.fixture(scope="module")
def openl3_weights(tmp_path_factory) -> Path:
    return write_official_layout(tmp_path_factory.mktemp("openl3") / "random.h5")


def test_openl3_sees_a_timbre_change_in_the_windows_centred_on_it(tmp_path, openl3_weights):
    """Seeded random weights in the official Keras layout (``write_official_layout``). Frame ``i``
    embeds the 1-s window centred at ``0.1 i`` s, reduced by a max-pool over the whole window, so a
    change at ``t`` moves the embedding of exactly the ten frames centred in ``(t - 0.5, t + 0.5]``;
    the frame-to-frame cosine distance is largest where the change enters and leaves the window,
    0.5 s either side of it, and 0 between frames of a steady stretch. The frames between the
    steady ones are found without the clock; their times must be those ten, whose middle is
    within half a hop (50 ms) of the change."""
    embedding = stored(tmp_path, OpenL3(weights_path=str(openl3_weights)),
                       timbre_changes([TIMBRE_CHANGE_S], TIMBRE_DURATION_S))
    times, hop = embedding.time.values, embedding.attrs["hop_s"]
    steady = np.flatnonzero(frame_distance(embedding.values) <= 1e-6)  # pairs (k, k + 1) of equal frames
    assert len(steady) == 2, steady  # one after the windows that reach before the start, one after the change
    seen = times[steady[0] + 2 : steady[1]]
    window = times[(times - 0.5 < TIMBRE_CHANGE_S) & (TIMBRE_CHANGE_S <= times + 0.5)]
    np.testing.assert_array_equal(seen, window)
    assert len(seen) == 10
    assert abs((seen[0] + seen[-1]) / 2 - TIMBRE_CHANGE_S) <= hop / 2


# -- MERT: changes of timbre ------------------------------------------------------------------------------
MERT_HOP_S = 320 / 24000  # MERT's stated hop, to spread the changes' phases over one frame
MERT_CHANGES_S = spread(8, 0.5, 0.25, MERT_HOP_S, step=3)
MERT_DURATION_S = 2.75


def mert_offsets(features: np.ndarray, times: np.ndarray, hop: float) -> np.ndarray:
    """For each of ``MERT_CHANGES_S``, where the frame-to-frame cosine distance of (T, D) ``features``
    peaks (between frames, parabola through the largest pair and its neighbours) minus the change (s);
    asserts each peak pair within one frame of its change."""
    return event_offsets(frame_distance(features), (times[1:] + times[:-1]) / 2, MERT_CHANGES_S, hop, "distance")


def test_mert_frame_distance_peaks_at_each_timbre_change(tmp_path):
    """A tiny random MERT snapshot (``TINY_CONFIG``: MERT's conv front end with 16 channels instead of
    512, the same kernels and strides, so the same clock; two transformer layers), last layer. Eight
    changes of timbre: the frame-to-frame cosine distance peaks within one frame (13.3 ms) of each,
    and within half a frame on average."""
    snapshot = write_snapshot(tmp_path / "mert", config=TINY_CONFIG)
    features = stored(tmp_path, Mert(model_path=str(snapshot)), timbre_changes(MERT_CHANGES_S, MERT_DURATION_S))
    hop = features.attrs["hop_s"]
    offsets = mert_offsets(features.values, features.time.values, hop)
    assert abs(offsets.mean()) <= hop / 2, offsets


@pytest.mark.slow
def test_mert_full_size_frame_distance_peaks_at_each_timbre_change(tmp_path):
    """A random snapshot of MERT-v1-95M's full size (``FULL_SIZE_CONFIG``: 512-channel conv front end,
    12 layers of 768), all 13 hidden states. On each, the frame-to-frame cosine distance peaks within
    one frame of each change, and within half a frame on average. A random network this deep makes
    its frames ever more alike (the largest distance falls from 0.25 in hidden state 0 to 4e-10 in
    the last), which is why the distance is computed in float64; the peaks stay at the changes."""
    snapshot = write_snapshot(tmp_path / "mert", config=FULL_SIZE_CONFIG)
    features = stored(tmp_path, Mert(model_path=str(snapshot), layers="all"),
                      timbre_changes(MERT_CHANGES_S, MERT_DURATION_S))
    hop = features.attrs["hop_s"]
    assert list(features.layer.values) == list(range(13))
    for layer in features.layer.values:
        offsets = mert_offsets(features.sel(layer=layer).values, features.time.values, hop)
        assert abs(offsets.mean()) <= hop / 2, (layer, offsets)
