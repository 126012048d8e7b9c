"""Beat times from a stored beat activation, with madmom's DBN beat tracker.

The ``madmom`` group stores the activation of madmom's ``RNNBeatProcessor`` (the probability
of a beat in each frame), not beats. :func:`beat_times` decodes it with madmom's
``DBNBeatTrackingProcessor`` (offline Viterbi decoding of a bar-pointer HMM) and puts the
result on the stored clock; :func:`tempo_bpm` summarises the beats as one tempo.

madmom is imported inside :func:`beat_times`, so importing this module stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: madmom's ``DBNBeatTrackingProcessor`` options that fstore passes through, with madmom's defaults
DBN_DEFAULTS: dict[str, Any] = {
    "min_bpm": 55.0,
    "max_bpm": 215.0,
    "num_tempi": None,
    "transition_lambda": 100.0,
    "observation_lambda": 16,
    "threshold": 0.0,
    "correct": True,
}


def beat_times(activation: np.ndarray, fps: float, t0_s: float = 0.0, **dbn_options: Any) -> np.ndarray:
    """Beat times in seconds from a beat activation, by madmom's ``DBNBeatTrackingProcessor``.

    madmom places frame ``i`` at ``i / fps`` seconds; a stored array's frame ``i`` is centred at
    ``t0_s + i / fps``, so the beats madmom returns are shifted by ``t0_s``. Otherwise the
    result is madmom's own, decoded from ``activation`` as given (no dtype conversion).

    Parameters
    ----------
    activation : np.ndarray [shape=(T,)]
        Beat activation per frame, values in (0, 1), e.g. the ``madmom`` group's array.
    fps : float > 0
        Frame rate of ``activation`` in Hz (the group's ``frame_rate_hz``, 100 for madmom).
    t0_s : float
        Time of the centre of frame 0 in seconds (the array's ``t0_s``).
    **dbn_options
        Options of ``DBNBeatTrackingProcessor`` (madmom's defaults in parentheses):

        - ``min_bpm`` (55.0), ``max_bpm`` (215.0): the tempo range searched, in beats per
          minute; ``min_bpm > 0`` and ``max_bpm >= min_bpm``.
        - ``num_tempi`` (None): at most this many tempi, log-spaced over the range; None models
          every beat period of a whole number of frames in the range.
        - ``transition_lambda`` (100.0): how strongly the tempo is kept from one beat to the
          next (the rate of an exponential distribution over tempo changes); higher values
          give a steadier tempo, 0 lets it jump freely, None forbids any change.
        - ``observation_lambda`` (16): an integer >= 2; the first ``1/observation_lambda`` of
          each beat period is the "beat" part of the HMM's states, the rest is "no beat".
        - ``threshold`` (0.0): in [0, 1); when > 0, only the span from the first to the last
          frame whose activation reaches it is decoded (none does: no beats).
        - ``correct`` (True): move each beat to the activation's highest frame within the
          beat part of its period; False keeps the HMM's own beat frames.

    Returns
    -------
    beats : np.ndarray [shape=(n_beats,), dtype=float64]
        Beat times in seconds on the stored clock, ascending; empty when none are found.

    Raises
    ------
    TypeError
        An option that ``DBNBeatTrackingProcessor`` does not take here (madmom itself would
        silently ignore a misspelt one), named in the message.
    ValueError
        A 1-d activation is not given, ``fps`` is not positive, or an option's value is out of
        its range (named in the message).
    """
    activation = np.asarray(activation)
    if activation.ndim != 1:
        raise ValueError(f"activation must be 1-d (frames,), not of shape {activation.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    options = check_dbn_options(dbn_options)
    from madmom.features.beats import DBNBeatTrackingProcessor

    beats = DBNBeatTrackingProcessor(fps=fps, **options)(activation)
    return np.asarray(beats, dtype=np.float64) + float(t0_s)


def check_dbn_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against :data:`DBN_DEFAULTS` and madmom's valid ranges (see :func:`beat_times`).

    Only values madmom would take without complaint yet decode wrongly, or fail on with an
    unrelated error, are refused here.
    """
    unknown = sorted(set(options) - set(DBN_DEFAULTS))
    if unknown:
        why = " (decoding is offline Viterbi)" if unknown[0] == "online" else ""
        raise TypeError(f"unknown DBN option {unknown[0]!r}{why}; "
                        f"options are {', '.join(DBN_DEFAULTS)}")
    o = {**DBN_DEFAULTS, **options}
    checks = {
        "min_bpm": o["min_bpm"] > 0,
        "max_bpm": o["max_bpm"] >= o["min_bpm"],
        "num_tempi": o["num_tempi"] is None or (_is_int(o["num_tempi"]) and o["num_tempi"] >= 1),
        "transition_lambda": o["transition_lambda"] is None or o["transition_lambda"] >= 0,
        "observation_lambda": _is_int(o["observation_lambda"]) and o["observation_lambda"] >= 2,
        "threshold": 0 <= o["threshold"] < 1,
        "correct": isinstance(o["correct"], (bool, np.bool_)),
    }
    rules = {
        "min_bpm": "> 0", "max_bpm": f">= min_bpm ({o['min_bpm']})", "num_tempi": "None or an integer >= 1",
        "transition_lambda": "None or >= 0", "observation_lambda": "an integer >= 2",
        "threshold": "in [0, 1)", "correct": "True or False",
    }
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"DBN option {name}={o[name]!r}: must be {rules[name]}")
    return dict(options)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def tempo_bpm(beats: np.ndarray) -> float | None:
    """One tempo for a song: 60 / the median interval between consecutive beats, in BPM.

    The median keeps the estimate at the prevailing tempo when a few beats are missed or
    doubled; it does not follow tempo changes. None for fewer than 2 beats.

    Parameters
    ----------
    beats : np.ndarray [shape=(n_beats,)]
        Beat times in seconds, ascending (as :func:`beat_times` returns them).
    """
    beats = np.asarray(beats, dtype=np.float64)
    if beats.size < 2:
        return None
    return float(60.0 / np.median(np.diff(beats)))
