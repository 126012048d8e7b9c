"""openl3 0.4.2 (kapre) mel-256 frontend as batched torch functions.

Kept separate from the network so it can be checked on its own against the
reference frontend output (mel magnitude and dB).
"""

from __future__ import annotations

import numpy as np

SR = 48000
N_FFT = 2048
HOP = 242
N_MELS = 256
N_FRAMES = 199  # ceil(48000 / 242): end zero-padding, no centring


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / logstep, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank() -> np.ndarray:
    """Slaney-normalised triangular filters, 0-24 kHz.

    Returns
    -------
    np.ndarray [shape=(1025, 256), float32]
        Weights from STFT bin to mel band (what kapre multiplies the magnitude by).
    """
    fft_freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), N_MELS + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    return weights.T.astype(np.float32)


def melspectrogram_db(windows, filterbank):
    """kapre/openl3 log-mel of 1-s windows, batched on the windows' device.

    Parameters
    ----------
    windows : torch.Tensor [shape=(B, 48000), float32]
        Audio windows at 48 kHz.
    filterbank : torch.Tensor [shape=(1025, 256), float32]
        :func:`mel_filterbank` on the same device.

    Returns
    -------
    torch.Tensor [shape=(B, 256, 199), float32]
        ``10 log10(max(mel, 1e-10))`` minus each window's max, floored at -80 (dB-like units),
        mel band first, as the network's input (height = mel, width = time).
    """
    import torch
    import torch.nn.functional as F

    padded = F.pad(windows, (0, (N_FRAMES - 1) * HOP + N_FFT - windows.shape[-1]))
    frames = padded.unfold(-1, N_FFT, HOP)
    window = torch.hann_window(N_FFT, periodic=True, dtype=windows.dtype, device=windows.device)
    mel = torch.fft.rfft(frames * window).abs() @ filterbank
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    db = db - db.amax(dim=(1, 2), keepdim=True)
    return db.clamp_min(-80.0).transpose(1, 2)
