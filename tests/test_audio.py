"""Decoding to float32 mono, downmix, resampling, and clear per-file errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from featurestore.audio import SongAudio, decode, resample
from featurestore.errors import AudioError

from .conftest import write_wav


@pytest.mark.parametrize("name,fmt,subtype", [
    ("a.wav", "WAV", "PCM_16"), ("a.flac", "FLAC", "PCM_24"), ("a.ogg", "OGG", "VORBIS"),
    ("a.mp3", "MP3", "MPEG_LAYER_III"), ("a.aiff", "AIFF", "PCM_16"), ("a.wav", "WAV", "FLOAT"),
])
def test_formats_decode_to_float32_mono(tmp_path, name, fmt, subtype):
    path = write_wav(tmp_path / name, 1.0, rate=16000, subtype=subtype, fmt=fmt)
    audio = decode(path)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == 16000
    assert abs(audio.duration_s - 1.0) < 0.1  # mp3 adds codec delay/padding
    assert 0.2 < np.abs(audio.samples).max() <= 1.0


def test_downmix_is_the_mean_over_channels(tmp_path):
    path = tmp_path / "six.wav"
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal((4000, 6))).astype(np.float32)
    sf.write(path, data, 8000, subtype="FLOAT")
    audio = decode(path)
    assert audio.channels == 6
    np.testing.assert_allclose(audio.samples, data.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("content,reason", [
    (b"", "cannot decode"),
    (b"this is a text file, renamed", "cannot decode"),
])
def test_unreadable_files(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as e:
        decode(path)
    assert str(path) in str(e.value)


def test_zero_samples(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        decode(path)


def test_nan_and_inf(tmp_path):
    for bad in (np.nan, np.inf):
        path = tmp_path / "nan.wav"
        data = np.zeros(1000, np.float32)
        data[500] = bad
        sf.write(path, data, 16000, subtype="FLOAT")
        with pytest.raises(AudioError, match="NaN or infinite"):
            decode(path)


def test_truncated_wav_is_an_error_or_its_readable_part(tmp_path):
    path = write_wav(tmp_path / "t.wav", 1.0, rate=16000)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # header still claims the full length
    try:
        audio = decode(path)
    except AudioError as e:
        assert "truncated" in str(e)
    else:  # libsndfile corrects the length to what is there: a valid, shorter file
        assert 0.4 < audio.duration_s < 0.6


def test_resample_length_and_caching(tmp_path):
    path = write_wav(tmp_path / "x.wav", 2.0, rate=22050)
    song = SongAudio(path)
    y = song.at(16000)
    assert y.dtype == np.float32 and abs(len(y) - 32000) <= 1
    assert song.at(16000) is y  # resampled once per rate
    assert song.at(22050) is song.audio.samples


def test_resample_preserves_a_tone():
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x, 44100, 16000)
    spectrum = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(len(y) - 2000)))
    peak_hz = np.argmax(spectrum) * 16000 / (len(y) - 2000)
    assert abs(peak_hz - 1000) < 2
