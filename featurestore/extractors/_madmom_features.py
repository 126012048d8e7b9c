"""madmom's ``RNNBeatProcessor`` input features, (T, 266) float32, with one real FFT per frame matrix.

madmom computes its STFT with a Python loop of one complex FFT per frame (70 % of its
cost on short clips). Here the frames of a chunk are gathered into one matrix and
transformed by a single float32 ``scipy.fft.rfft`` (madmom's float64 FFT takes twice as
long and its result is rounded to complex64 anyway); the rest (float32 magnitudes,
madmom's own logarithmic filterbank, ``log10(1 + x)``, positive differences) follows
madmom's arithmetic, so the features equal madmom's within float32 rounding (< 1e-6). Frames are transformed in chunks, so memory stays bounded for any length;
only the small filtered spectrograms of the whole song are kept, which makes the
output independent of the chunking.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 44100
HOP = 441
#: madmom's offline beat branches: frame sizes, and 6 bands per octave from 30 Hz to 17 kHz
FRAME_SIZES = (1024, 2048, 4096)
NUM_BANDS = 6
FMIN, FMAX = 30.0, 17000.0
DIFF_RATIO = 0.5
#: frames per FFT chunk: 1024 frames of 4096 samples are 32 MiB of complex64
CHUNK_FRAMES = 1024


@lru_cache(maxsize=None)
def _branch(frame_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Window (float32), filterbank rows of the used bins (bins, bands) float32, difference lag in frames."""
    from madmom.audio.filters import LogarithmicFilterbank
    from madmom.audio.stft import fft_frequencies

    window = np.hanning(frame_size)
    filterbank = LogarithmicFilterbank(
        fft_frequencies(frame_size >> 1, SAMPLE_RATE),
        num_bands=NUM_BANDS, fmin=FMIN, fmax=FMAX, norm_filters=True, unique_filters=True,
    )
    # madmom's _diff_frames: first window sample above diff_ratio of the maximum, in hops
    sample = int(np.argmax(window > DIFF_RATIO * window.max()))
    lag = int(max(1, round((frame_size / 2 - sample) / HOP)))
    # bins above the top band (17 kHz) have no weight: leave them out of |X| and the product
    used = int(np.flatnonzero(np.asarray(filterbank).any(axis=1))[-1]) + 1
    return window.astype(np.float32), np.asarray(filterbank)[:used], lag


def _frames(padded: np.ndarray, first: int, last: int, frame_size: int, pad: int) -> np.ndarray:
    """Frames ``first..last-1`` of the signal, shape (last - first, frame_size).

    Frame ``i`` spans samples ``441 i - frame_size // 2`` onward (madmom's ``signal_frame``
    with origin 0); ``padded`` is the signal with ``pad`` zeros in front and enough behind.
    """
    starts = np.arange(first, last) * HOP - frame_size // 2 + pad
    view = np.lib.stride_tricks.sliding_window_view(padded, frame_size)
    return view[starts]


def _log_filtered(wave: np.ndarray, frame_size: int, n_frames: int) -> np.ndarray:
    """log10(1 + filtered magnitude spectrogram), shape (n_frames, bands) float32."""
    from scipy.fft import rfft

    window, filterbank, _ = _branch(frame_size)
    pad = frame_size // 2
    padded = np.zeros(pad + n_frames * HOP + frame_size, dtype=wave.dtype)
    padded[pad : pad + len(wave)] = wave
    out = np.empty((n_frames, filterbank.shape[1]), dtype=np.float32)
    for first in range(0, n_frames, CHUNK_FRAMES):
        last = min(first + CHUNK_FRAMES, n_frames)
        spectrum = rfft(_frames(padded, first, last, frame_size, pad) * window, axis=1)
        magnitude = np.abs(spectrum[:, : filterbank.shape[0]])
        filtered = np.dot(magnitude, filterbank)
        filtered += 1.0
        np.log10(filtered, out=filtered)
        out[first:last] = filtered
    return out


def beat_features(wave: np.ndarray) -> np.ndarray:
    """Stacked features of madmom's three branches, shape (ceil(N / 441), 266) float32.

    ``wave``: mono float32 at 44.1 kHz. Per branch: the log filtered spectrogram and its
    positive difference to the frame ``lag`` hops earlier (zero for the first ``lag`` frames).
    """
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    n_frames = -(-len(wave) // HOP)
    parts = []
    for frame_size in FRAME_SIZES:
        spec = _log_filtered(wave, frame_size, n_frames)
        lag = _branch(frame_size)[2]
        diff = np.zeros_like(spec)
        diff[lag:] = spec[lag:] - spec[:-lag]
        np.maximum(diff, 0, out=diff)
        parts += [spec, diff]
    return np.hstack(parts)
