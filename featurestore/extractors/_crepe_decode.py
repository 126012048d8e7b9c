"""CREPE's decoders as plain numpy functions: bins to cents, crepe's Viterbi HMM, cents to Hz.

``crepe.core`` decodes with ``to_local_average_cents`` (a weighted average of the 9 bins
around a centre bin) and, for ``viterbi=True``, ``to_viterbi_cents``: an hmmlearn
``CategoricalHMM`` whose observations are the per-frame argmax bins, decoded by hmmlearn's
Viterbi. Here the same HMM is decoded by :func:`viterbi`, which exploits the band structure
of the transition matrix (23 non-zeros per row instead of 360) and reproduces hmmlearn's
arithmetic and tie-breaking, so the paths are identical, not merely close.
"""

from __future__ import annotations

import numpy as np

N_BINS = 360
#: cents of each bin: 20-cent steps from 1997.38 cents (32.70 Hz) to 9177.38 cents (1975.5 Hz)
CENTS = np.linspace(0, 7180, N_BINS) + 1997.3794084376191
#: bins each side of the centre in the local average
HALF_WINDOW = 4
#: crepe's transition prior: weight max(TRANSITION_WIDTH - |i - j|, 0)
TRANSITION_WIDTH = 12
#: crepe's emission: probability 0.1 on the observed bin, plus 0.9 spread over all bins
SELF_EMISSION = 0.1


def local_average_cents(activation: np.ndarray, center: np.ndarray) -> np.ndarray:
    """crepe's ``to_local_average_cents`` for every frame at once.

    Parameters
    ----------
    activation : np.ndarray [shape=(T, 360), float32]
        Sigmoid outputs of the network.
    center : np.ndarray [shape=(T,), int]
        The bin to average around in each frame (argmax, or the Viterbi path).

    Returns
    -------
    np.ndarray [shape=(T,), float64]
        ``sum(a * cents) / sum(a)`` over bins ``center-4 .. center+4`` clipped to the range, in
        cents; NaN where those activations sum to zero (as crepe).
    """
    n_bins = activation.shape[1]
    start = np.maximum(center.astype(np.int64) - HALF_WINDOW, 0)
    length = np.minimum(center.astype(np.int64) + HALF_WINDOW + 1, n_bins) - start
    cents = np.empty(activation.shape[0], dtype=np.float64)
    # crepe sums each frame's window on its own; numpy's summation order depends on the
    # window's length, so frames are grouped by length (9 inside, fewer at the range's ends)
    # and each group is summed along rows of exactly that length: the same order, bit for bit.
    for n in np.unique(length):
        rows = np.flatnonzero(length == n)
        bins = start[rows, None] + np.arange(n)
        salience = activation[rows[:, None], bins]  # float32, as crepe's slice
        product_sum = np.sum(salience * CENTS[bins], axis=1)  # float64
        weight_sum = np.sum(salience, axis=1)  # float32
        with np.errstate(invalid="ignore", divide="ignore"):
            cents[rows] = product_sum / weight_sum
    return cents


def cents_to_hz(cents: np.ndarray) -> np.ndarray:
    """``10 * 2 ** (cents / 1200)`` in Hz, with NaN (an all-zero window) mapped to 0 as crepe does."""
    hz = 10.0 * 2.0 ** (cents / 1200.0)
    return np.where(np.isnan(hz), 0.0, hz)


def crepe_hmm(n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The HMM ``to_viterbi_cents`` builds, in log space (log 0 = -inf).

    Returns
    -------
    log_start : np.ndarray [shape=(n_bins,), float64]
        Uniform.
    log_trans : np.ndarray [shape=(n_bins, n_bins), float64]
        ``log T[i, j]`` with ``T[i, j] ∝ max(12 - |i - j|, 0)``, rows normalised.
    log_emission : np.ndarray [shape=(n_bins, n_bins), float64]
        ``log E[state, observed bin]`` with ``E = 0.1 I + 0.9 / n_bins``.
    """
    bins = np.arange(n_bins)
    transition = np.maximum(TRANSITION_WIDTH - np.abs(bins[None, :] - bins[:, None]), 0)
    transition = transition / np.sum(transition, axis=1)[:, None]
    emission = np.eye(n_bins) * SELF_EMISSION + np.ones((n_bins, n_bins)) * ((1 - SELF_EMISSION) / n_bins)
    starting = np.ones(n_bins) / n_bins
    with np.errstate(divide="ignore"):
        return np.log(starting), np.log(transition), np.log(emission)


def viterbi(
    observations: np.ndarray,
    log_start: np.ndarray,
    log_trans: np.ndarray,
    log_emission: np.ndarray,
    half_band: int,
) -> np.ndarray:
    """Most likely state path of a categorical HMM whose transitions are banded.

    Same recursion, arithmetic and tie-breaking as hmmlearn's Viterbi (``_hmmc.viterbi``):
    ``V[t, i] = max_j (V[t-1, j] + log_trans[j, i]) + log_emission[i, obs[t]]``; the last
    state is the first argmax of ``V[T-1]``; going back, state ``t`` is the argmax over ``j``
    of ``V[t, j] + log_trans[j, state[t+1]]`` taking the *largest* ``j`` among ties. Only
    ``|i - j| <= half_band`` is visited, and the backward choice is recorded during the
    forward pass (one byte per state and frame) instead of keeping ``V``.

    Parameters
    ----------
    observations : np.ndarray [shape=(T,), int]
        Observed symbols, ``0 <= obs < n_symbols``.
    log_start : np.ndarray [shape=(S,), float64]
    log_trans : np.ndarray [shape=(S, S), float64]
        Must be -inf wherever ``|i - j| > half_band``.
    log_emission : np.ndarray [shape=(S, n_symbols), float64]
    half_band : int
        Largest ``|i - j|`` with a finite transition (at most 127).

    Returns
    -------
    np.ndarray [shape=(T,), int64]
        The decoded states.
    """
    n_states = log_start.shape[0]
    width = 2 * half_band + 1
    if not 0 <= half_band < 128:
        raise ValueError(f"half_band {half_band} must be in 0..127")
    i, j = np.indices((n_states, n_states))
    if np.isfinite(log_trans[np.abs(i - j) > half_band]).any():
        raise ValueError(f"log_trans has finite entries farther than {half_band} from the diagonal")
    # source[i, d] = j = i - half_band + d (the predecessor), band[i, d] = log_trans[j, i]
    source = np.arange(n_states)[:, None] - half_band + np.arange(width)[None, :]
    valid = (source >= 0) & (source < n_states)
    source = np.clip(source, 0, n_states - 1)
    band = np.where(valid, log_trans[source, np.arange(n_states)[:, None]], -np.inf)
    reversed_band = np.ascontiguousarray(band[:, ::-1])
    reversed_source = np.ascontiguousarray(source[:, ::-1])
    frame_logprob = np.ascontiguousarray(log_emission.T)  # row o: log P(o | state)

    n_frames = observations.shape[0]
    back = np.empty((max(n_frames - 1, 0), n_states), dtype=np.uint8)
    rows = np.arange(n_states)
    scores = np.empty((n_states, width))
    value = log_start + frame_logprob[observations[0]]
    for t in range(1, n_frames):
        # columns reversed, so argmax's first hit is the largest predecessor among ties
        np.add(value[reversed_source], reversed_band, out=scores)
        best = np.argmax(scores, axis=1)
        back[t - 1] = best
        value = scores[rows, best] + frame_logprob[observations[t]]
    path = np.empty(n_frames, dtype=np.int64)
    state = int(np.argmax(value))
    path[-1] = state
    for t in range(n_frames - 2, -1, -1):
        state = int(reversed_source[state, back[t, state]])
        path[t] = state
    return path


def viterbi_bins(activation: np.ndarray) -> np.ndarray:
    """crepe's Viterbi path for a song's activations.

    Parameters
    ----------
    activation : np.ndarray [shape=(T, 360), float32]

    Returns
    -------
    np.ndarray [shape=(T,), int64]
        The decoded bin per frame, observations being each frame's argmax bin.
    """
    log_start, log_trans, log_emission = crepe_hmm(activation.shape[1])
    return viterbi(np.argmax(activation, axis=1), log_start, log_trans, log_emission, TRANSITION_WIDTH - 1)
