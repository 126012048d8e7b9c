"""Files libsndfile cannot read, decoded through PyAV (FFmpeg): AAC/M4A, Opus in WebM, WMA, AC-3.

The test files are encoded here with PyAV itself from a known two-channel signal, so no binary
fixture is needed. fstore's decode is compared with an independent decode of the same file, made on
the same machine (the ``ffmpeg`` program where it is installed, else PyAV's own frames averaged in
float64), and with the source within the codec's expected error. Encoders differ by CPU (libopus's
delay came out 218 samples later on an AMD EPYC than on an Intel Xeon), so no test expects a fixed delay.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import featurestore.run as fsrun
from featurestore.audio import decode
from featurestore.discover import discover
from featurestore.errors import AudioError
from featurestore.store import FeatureStore

av = pytest.importorskip("av")

SECONDS = 1.5


def source_signal(rate: int) -> np.ndarray:
    """(2, n) float32: a 440 Hz tone on the left, 660 Hz on the right (their mean is what fstore keeps)."""
    t = np.arange(int(SECONDS * rate)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)


def encode(path, codec: str, rate: int, container: str | None = None, bit_rate: int = 160_000):
    signal = source_signal(rate)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stream.bit_rate = bit_rate
        fmt = stream.codec_context.format.name
        step = 4096
        for start in range(0, signal.shape[1], step):
            block = signal[:, start : start + step]
            if fmt.startswith("s16"):
                block = np.round(block * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(block if fmt.endswith("p") else block.T.reshape(1, -1).copy(),
                                               format=fmt, layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return signal.mean(axis=0)


def independent_decode(path) -> np.ndarray:
    """The file decoded without fstore, as float64 mono (mean over channels): by the ``ffmpeg`` program
    where it is installed, else from PyAV's frames (FFmpeg's decoder removes Opus pre-skip and declared
    padding itself), trimmed to the stream's declared duration as the ffmpeg program does."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        if shutil.which("ffmpeg"):
            raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                                  "-acodec", "pcm_f32le", "-"], capture_output=True, check=True).stdout
            return np.frombuffer(raw, dtype="<f4").reshape(-1, channels).astype(np.float64).mean(axis=1)
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = int(round(float(stream.duration * stream.time_base) * stream.codec_context.sample_rate))
    planar = np.concatenate([f if f.shape[0] == channels else f.reshape(-1, channels).T for f in frames], axis=1)
    mono = planar.astype(np.float64).mean(axis=0)
    return mono[:declared] if declared is not None and 0 < declared < mono.shape[0] else mono


def best_match(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 2112) -> tuple[int, float]:
    """(lag, relative rms error) of ``decoded`` against ``reference`` at the best alignment (codec delay)."""
    n = reference.shape[0] - max_lag
    core = reference[max_lag // 2 : max_lag // 2 + n - max_lag]
    errors = []
    for lag in range(0, max_lag + 1):
        seg = decoded[lag : lag + core.shape[0]]
        if seg.shape[0] < core.shape[0]:
            break
        errors.append(np.sqrt(np.mean((seg - core) ** 2)) / np.sqrt(np.mean(core**2)))
    best = int(np.argmin(errors))
    return best - max_lag // 2, float(errors[best])


@pytest.mark.parametrize(
    "name, codec, rate, container, tolerance, short",
    [
        ("song.m4a", "aac", 44100, "mp4", 0.05, 0),
        ("song.webm", "libopus", 48000, "webm", 0.05, 0),
        ("song.opus", "libopus", 48000, "ogg", 0.05, 0),
        # FFmpeg's WMA encoder drops the last partial 2048-sample frame when flushed: the file is shorter
        ("song.wma", "wmav2", 44100, "asf", 0.10, 2048),
        ("song.ac3", "ac3", 48000, "ac3", 0.05, 0),
    ],
)
def test_compressed_formats_decode_to_the_source_signal(tmp_path, name, codec, rate, container, tolerance, short):
    path = tmp_path / name
    reference = encode(path, codec, rate, container)
    audio = decode(path)
    assert audio.sample_rate == rate and audio.channels == 2 and audio.samples.dtype == np.float32
    # length: the source's, plus at most the encoder's priming/padding where the file does not declare it
    assert reference.shape[0] - short <= audio.samples.shape[0] <= reference.shape[0] + 2112
    # the same samples as a decode without fstore; fstore also drops the padding after the end that the
    # container declares (MP4's duration), which the ffmpeg program keeps up to the codec's frame
    independent = independent_decode(path)
    n = audio.samples.shape[0]
    assert n <= independent.shape[0] <= n + 2048
    np.testing.assert_allclose(audio.samples, independent[:n], rtol=0, atol=1e-6)
    lag, error = best_match(audio.samples, reference)
    assert error < tolerance, (lag, error)


def test_libsndfile_formats_do_not_go_through_ffmpeg(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.flac", source_signal(22050).T, 22050)
    assert decode(tmp_path / "a.flac").decoder == "libsndfile"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_compressed_files_fail_clearly(tmp_path, damage):
    path = tmp_path / "song.m4a"
    encode(path, "aac", 44100, "mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x00ftyp" + bytes(range(256)) * 20)
    with pytest.raises(AudioError) as e:
        decode(path)
    assert "song.m4a" in str(e.value) and ("decode" in e.value.reason or "no audio" in e.value.reason)


def test_the_decoder_is_recorded_in_the_source_attrs(tmp_path, fake_models):
    audio = tmp_path / "audio"
    audio.mkdir()
    encode(audio / "song.m4a", "aac", 44100, "mp4")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    from featurestore.extractors import registry

    ext = registry.create("fake")
    ext.load("cpu")
    summary = fsrun.run(store, discover(audio).files, [ext])
    assert summary.ok, summary.failures
    assert store.song_attrs("fake", "song")["source"]["decoder"] == "ffmpeg:aac"
