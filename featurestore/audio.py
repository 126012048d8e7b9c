"""Decode an audio file once to float32 mono, and resample it per model.

Decoding uses libsndfile (through soundfile): WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF and
the other formats it lists; what it cannot read goes to FFmpeg's decoders through PyAV:
AAC/M4A, WMA, Opus or Vorbis in any container, the audio track of MP4/WebM/MKV files,
AC-3 and more. Multichannel audio is **downmixed by the mean over channels**,
as openl3, crepe and madmom do. Files are read in blocks, so memory holds the mono
signal, not the multichannel one. Resampling uses soxr at its "HQ" quality (steep
low-pass, ~ -140 dB stopband), once per (song, rate).

Every failure is an :class:`~featurestore.errors.AudioError` naming the file and the reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import AudioError

#: extensions fstore treats as audio when scanning a folder (decoding decides in the end)
AUDIO_EXTENSIONS = frozenset(
    (".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .m4a .m4b .aac .wma "
     ".mp4 .webm .weba .mka .mkv .ac3 .eac3 .wv .ape .amr .3gp .alac").split()
)
#: frames per block when decoding (about 1M frames: bounded memory for any channel count)
BLOCK_FRAMES = 1 << 20
#: soxr quality used for every resampling
RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True)
class Audio:
    """A decoded song: mono float32 samples at the file's own rate."""

    samples: np.ndarray  # shape (n,), float32
    sample_rate: int
    channels: int
    decoder: str = "libsndfile"  # or "ffmpeg:<codec>" (PyAV)

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def decode(path: str | os.PathLike[str]) -> Audio:
    """Read a whole file as float32 mono (mean over channels).

    Raises
    ------
    AudioError
        unreadable or unknown format, no samples, fewer samples than the header declares,
        or NaN/inf samples.
    """
    import soundfile as sf

    path = Path(path)
    try:
        opened = sf.SoundFile(path)
    except sf.LibsndfileError as e:
        if not path.is_file():
            raise AudioError(path, f"cannot read ({e.error_string})") from e
        return decode_with_ffmpeg(path, f"libsndfile: {e.error_string}")
    except OSError as e:
        raise AudioError(path, f"cannot read ({e})") from e
    try:
        with opened as f:
            sample_rate, channels, declared = f.samplerate, f.channels, f.frames
            if declared == 0:
                raise AudioError(path, "contains no audio samples (0 frames)")
            mono = np.empty(declared, dtype=np.float32)
            n = 0
            while n < declared:
                block = f.read(min(BLOCK_FRAMES, declared - n), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    raise AudioError(path, f"contains NaN or infinite samples (near {n / sample_rate:.2f} s)")
                mono[n : n + block.shape[0]] = block[:, 0] if channels == 1 else block.mean(axis=1)
                n += block.shape[0]
    except AudioError:
        raise
    except sf.LibsndfileError as e:
        raise AudioError(path, f"cannot decode as audio ({e.error_string})") from e
    except (OSError, RuntimeError, ValueError) as e:
        raise AudioError(path, f"cannot read ({e})") from e
    if n < declared:
        raise AudioError(path, f"truncated: header declares {declared} frames, only {n} could be read")
    if sample_rate <= 0:
        raise AudioError(path, f"invalid sample rate {sample_rate}")
    return Audio(mono, int(sample_rate), int(channels))


def decode_with_ffmpeg(path: str | os.PathLike[str], why_not_libsndfile: str = "") -> Audio:
    """Read the first audio stream of any container FFmpeg knows, as float32 mono (mean over channels).

    Encoder delay and padding are removed where the file declares them (edit lists, Opus pre-skip,
    the stream's duration). Raises :class:`AudioError` for files FFmpeg cannot read either, files
    without an audio stream, corrupt or truncated streams, and NaN/inf samples.
    """
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise AudioError(path, f"cannot decode as audio ({why_not_libsndfile}; PyAV is not installed)") from e
    path = Path(path)
    blocks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(path, "contains no audio stream")
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 0)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                data = frame.to_ndarray()
                data = data.reshape(-1, len(frame.layout.channels)).T if not frame.format.is_planar else data
                blocks.append(data.astype(np.float32, copy=False).mean(axis=0) if data.shape[0] > 1 else
                              data[0].astype(np.float32))
                if frame.format.name.startswith(("s16", "s32", "u8")):  # integer PCM: scale to [-1, 1]
                    blocks[-1] = blocks[-1] / float(np.iinfo(data.dtype).max + 1)
            declared = None
            if stream.duration is not None and stream.time_base is not None:
                declared = int(round(float(stream.duration * stream.time_base) * rate))
            codec = stream.codec_context.name
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        reason = f"cannot decode as audio ({why_not_libsndfile}; ffmpeg: {e})" if why_not_libsndfile else f"cannot decode ({e})"
        raise AudioError(path, reason) from e
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if declared is not None and 0 < declared < mono.shape[0]:
        mono = mono[:declared]  # encoder padding after the declared end
    if mono.shape[0] == 0 or rate <= 0:
        raise AudioError(path, "contains no audio samples")
    if not np.isfinite(mono).all():
        raise AudioError(path, "contains NaN or infinite samples")
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), rate, channels, f"ffmpeg:{codec}")


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (quality :data:`RESAMPLE_QUALITY`).

    Parameters
    ----------
    samples : np.ndarray [shape=(n,), float32]
    from_rate, to_rate : int
        Sample rates in Hz.

    Returns
    -------
    np.ndarray [shape=(ceil(n * to_rate / from_rate),), float32]
    """
    if from_rate == to_rate:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


class SongAudio:
    """One song's audio for one pass of the pipeline: decoded once, resampled once per rate.

    A failed decode is remembered: every later access raises the same :class:`AudioError`,
    without reading the file again. ``seconds`` is the time spent decoding and resampling.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._audio: Audio | None = None
        self._error: AudioError | OSError | None = None
        self._by_rate: dict[int, np.ndarray] = {}
        self.seconds = 0.0

    @property
    def audio(self) -> Audio:
        if self._error is not None:
            raise self._error
        if self._audio is None:
            start = time.perf_counter()
            try:
                self._audio = decode(self.path)
            except (AudioError, OSError) as e:
                self._error = e
                raise
            finally:
                self.seconds += time.perf_counter() - start
        return self._audio

    @property
    def duration_s(self) -> float:
        return self.audio.duration_s

    def prepare(self, rates: Iterable[int]) -> None:
        """Decode and resample to ``rates`` now (ahead of use); a failure is kept for the first use to raise."""
        try:
            for rate in rates:
                self.at(rate)
        except (AudioError, OSError):
            pass

    @property
    def nbytes(self) -> int:
        """Bytes held: the decoded samples and every resampled copy."""
        held = self._audio.samples.nbytes if self._audio is not None else 0
        return held + sum(a.nbytes for a in self._by_rate.values())

    def forget(self, rate: int) -> None:
        """Drop the copy at ``rate`` (the pipeline calls this after the last model at that rate)."""
        self._by_rate.pop(rate, None)

    def at(self, rate: int) -> np.ndarray:
        """Mono float32 samples at ``rate`` Hz, shape (n,); computed once per rate."""
        if rate not in self._by_rate:
            a = self.audio
            start = time.perf_counter()
            self._by_rate[rate] = resample(a.samples, a.sample_rate, rate)
            self.seconds += time.perf_counter() - start
        return self._by_rate[rate]
