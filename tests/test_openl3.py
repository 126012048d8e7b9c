"""OpenL3: the shared contract, the weights loader and its errors, parity with openl3 0.4.2."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import featurestore.extractors._openl3_weights as openl3_weights
from featurestore.errors import WeightsChecksumError, WeightsUnavailable
from featurestore.extractors.openl3 import OpenL3, frame_signal, n_frames
from featurestore.testing import ExtractorContract

from .conftest import requires_gpu, requires_shared, shared_path
from .helpers import fstore, requires_bf16_cpu, write_official_layout

@pytest.fixture(scope="session")
def random_h5(tmp_path_factory) -> Path:
    return write_official_layout(tmp_path_factory.mktemp("openl3") / "random.h5")


class TestOpenL3Contract(ExtractorContract):
    alternative_options = {"precision": "bf16"}
    # center=True pads the start only: the last 0.5 s has no window centred in it
    frame_count_slack = 5.0
    weights_file: ClassVar[Path]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _weights_file(cls, random_h5: Path) -> Path:
        cls.weights_file = random_h5
        return random_h5

    @pytest.fixture(scope="class")
    @classmethod
    def extractor(cls, _weights_file: Path) -> OpenL3:
        ext = cls().make_extractor()
        ext.load(cls.device)
        return ext

    def make_extractor(self, **options):
        return OpenL3(weights_path=str(self.weights_file), **options)


def test_frame_count_and_windows_follow_openl3():
    assert n_frames(48000 * 30) == 296 and n_frames(1) == n_frames(24000) == 1 and n_frames(24001) == 2
    wave = np.arange(1, 120001, dtype=np.float32)
    w = frame_signal(wave)
    assert w.shape == (21, 48000)
    np.testing.assert_array_equal(w[0, :24000], 0)
    np.testing.assert_array_equal(w[0, 24000:], wave[:24000])
    np.testing.assert_array_equal(w[5, :], wave[4800 * 5 - 24000 : 4800 * 5 + 24000])
    assert w[-1, -1] == wave[-1]  # (24000 + N - 48000) is a whole number of hops: no end padding
    longer = frame_signal(np.ones(120001, dtype=np.float32))
    assert longer.shape == (22, 48000) and longer[-1, 47999 - 4799] == 1 and longer[-1, 47999 - 4798] == 0


def test_chunked_windows_equal_one_batch(random_h5, monkeypatch):
    import featurestore.extractors.openl3 as module
    from featurestore.testing import test_signal

    ext = OpenL3(weights_path=str(random_h5))
    ext.load("cpu")
    wave = test_signal(48000 * 2, 48000)
    whole = ext.extract(wave)
    monkeypatch.setattr(module, "WINDOW_BATCH", 3)
    np.testing.assert_allclose(ext.extract(wave), whole, rtol=1e-5, atol=1e-5)


def test_extract_batch_equals_per_song(random_h5):
    """Windows of several short songs share batches; each song's embeddings stay its own."""
    from featurestore.testing import test_signal

    ext = OpenL3(weights_path=str(random_h5))
    ext.load("cpu")
    waves = [test_signal(n, 48000) for n in (48000, 30000, 48000 * 2 + 4800 * 3 + 7)]
    batched = ext.extract_batch(waves)
    assert [b.shape for b in batched] == [ext.output_shape(len(w)) for w in waves]
    for got, wave in zip(batched, waves):
        np.testing.assert_allclose(got, ext.extract(wave), rtol=1e-5, atol=1e-5)
    assert ext.extract_batch([]) == []


def test_fast_net_equals_plain_conv_net(random_h5):
    import torch

    from featurestore.extractors._openl3_net import FastNet, build_plain_net, read_keras_weights

    layers = read_keras_weights(random_h5)
    db = -80 * torch.rand(2, 256, 199, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = build_plain_net(layers)(db[:, None])
        got = FastNet(layers, "cpu", torch.float32)(db)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["drop", "bad_shape"])
def test_loader_errors_name_the_layer(tmp_path, kind):
    from featurestore.extractors._openl3_net import read_keras_weights

    path = write_official_layout(tmp_path / "w.h5", **{kind: "conv2d_3"})
    with pytest.raises(ValueError, match="conv2d_3"):
        read_keras_weights(path)


def test_loader_rejects_wrong_layer_count(tmp_path):
    import h5py

    from featurestore.extractors._openl3_net import read_keras_weights

    path = write_official_layout(tmp_path / "w.h5")
    with h5py.File(path, "a") as f:
        f.attrs["layer_names"] = np.array([n for n in f.attrs["layer_names"] if n != b"audio_embedding_layer"])
    with pytest.raises(ValueError, match="15 layers with weights"):
        read_keras_weights(path)


def test_local_file_with_its_own_digest_is_used(random_h5):
    (w,) = OpenL3(weights_path=str(random_h5)).weights()
    assert w.sha256 == hashlib.sha256(random_h5.read_bytes()).hexdigest() != openl3_weights.OPENL3_SHA256
    assert w.path == random_h5


def test_env_var_names_the_local_file(random_h5, monkeypatch):
    monkeypatch.setenv("FSTORE_OPENL3_WEIGHTS", str(random_h5))
    assert OpenL3().weights()[0].path == random_h5
    assert OpenL3.weights_info().available


def test_cli_extracts_and_exports_with_a_local_weights_file(random_h5, tmp_path):

    import featurestore as fs
    from featurestore.weights import sha256_file

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 1.5, rate=22050)
    store, out = tmp_path / "s.zarr", tmp_path / "npy"
    run = fstore("extract", "--audio-dir", str(tmp_path / "audio"), "--store", str(store),
                                   "--models", "openl3", "--openl3-weights", str(random_h5), "--device", "cpu")
    assert run.exit_code == 0, run.output
    reader = fs.open_store(str(store))
    da = reader.load("a", "openl3")
    assert da.dims == ("time", "feature") and da.shape == (n_frames(72000), 512)
    np.testing.assert_allclose(da["time"].values, np.arange(da.shape[0]) * 0.1, atol=1e-9)
    assert reader.model_attrs("openl3")["weights"][0]["sha256"] == sha256_file(random_h5)
    export = fstore("export-npy", "--store", str(store), "--output-base", str(out))
    assert export.exit_code == 0, export.output
    np.testing.assert_array_equal(np.load(out / "openl3" / "a.npy"), da.values)


def test_offline_without_weights_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("FSTORE_CACHE", str(tmp_path))
    monkeypatch.setenv("FSTORE_OFFLINE", "1")
    monkeypatch.delenv("FSTORE_OPENL3_WEIGHTS", raising=False)
    info = OpenL3.weights_info()
    assert not info.available and "--openl3-weights" in info.how_to_provide
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("offline, the network must not be tried")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(WeightsUnavailable) as err:
        OpenL3().weights()
    message = str(err.value)
    assert openl3_weights.OPENL3_GZ in message and str(tmp_path / "openl3") in message
    assert "--openl3-weights" in message and "FSTORE_OPENL3_WEIGHTS" in message


def test_corrupt_cached_file_is_reported(tmp_path, monkeypatch, random_h5):
    monkeypatch.setenv("FSTORE_CACHE", str(tmp_path))
    monkeypatch.delenv("FSTORE_OPENL3_WEIGHTS", raising=False)
    (tmp_path / "openl3").mkdir()
    shutil.copy(random_h5, tmp_path / "openl3" / openl3_weights.OPENL3_FILE)
    with pytest.raises(WeightsChecksumError, match="delete it"):
        OpenL3().weights()


# -- parity with openl3 0.4.2 (random weights in the official layout) ----------------------------
@pytest.fixture(scope="module")
def parity_h5(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("openl3_parity") / "random.h5"
    with gzip.open(shared_path("parity", "openl3", "openl3_audio_mel256_music_random.h5.gz"), "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def _reference(name: str) -> dict:
    return dict(np.load(shared_path("parity", "openl3", f"{name}_mel256_music_512.npz")))


@requires_shared
def test_frontend_parity():
    import torch

    from featurestore.extractors._openl3_frontend import melspectrogram_db, mel_filterbank

    ref = _reference("sample")
    windows = torch.from_numpy(ref["windows_first3"][:, 0])
    fb = torch.from_numpy(mel_filterbank())
    from featurestore.extractors import _openl3_frontend as fe
    import torch.nn.functional as F

    frames = F.pad(windows, (0, (fe.N_FRAMES - 1) * fe.HOP + fe.N_FFT - 48000)).unfold(-1, fe.N_FFT, fe.HOP)
    mel = (torch.fft.rfft(frames * torch.hann_window(fe.N_FFT, periodic=True)).abs() @ fb).numpy()
    np.testing.assert_allclose(mel, ref["melmag_first3"][..., 0], rtol=1e-4, atol=1e-5)
    db = melspectrogram_db(windows, fb).numpy()
    expected = ref["frontend_first3"][..., 0]
    delta = np.abs(db - expected)
    assert delta[expected > -60].max() <= 0.02
    assert delta.max() <= 1.0


@requires_shared
def test_network_parity_from_stored_frontend(parity_h5):
    import torch

    from featurestore.extractors._openl3_net import FastNet, read_keras_weights

    ref = _reference("sample")
    with torch.inference_mode():
        got = FastNet(read_keras_weights(parity_h5), "cpu", torch.float32)(torch.from_numpy(ref["frontend_first3"][..., 0]))
    np.testing.assert_allclose(got.numpy(), ref["embedding"][:3], rtol=1e-3, atol=1e-3)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@requires_shared
@pytest.mark.parametrize("name", ["sample", "chirp"])
def test_end_to_end_parity(parity_h5, name):
    ref = _reference(name)
    ext = OpenL3(weights_path=str(parity_h5))
    ext.load("cpu")
    got = ext.extract(ref["audio48k"])
    assert got.shape == ref["embedding"].shape
    np.testing.assert_allclose(ext.time_axis.times(got.shape[0]), ref["timestamps"], atol=1e-12)
    assert _cosine(got, ref["embedding"]).min() >= 0.99999
    np.testing.assert_allclose(got, ref["embedding"], rtol=1e-3, atol=1e-2)


@requires_shared
@requires_bf16_cpu
def test_bf16_end_to_end_cosine(parity_h5):
    ref = _reference("sample")
    ext = OpenL3(weights_path=str(parity_h5), precision="bf16")
    ext.load("cpu")
    assert _cosine(ext.extract(ref["audio48k"]), ref["embedding"]).min() >= 0.999


@requires_shared
@requires_bf16_cpu
@pytest.mark.parametrize("name", ["sample", "chirp"])
def test_bf16_accuracy_gate_against_fp32(parity_h5, name):
    """bf16 on this CPU against fp32, per frame, on the parity music (random official-format weights)."""
    wave = _reference(name)["audio48k"]
    outputs = []
    for precision in ("fp32", "bf16"):
        ext = OpenL3(weights_path=str(parity_h5), precision=precision)
        ext.load("cpu")
        outputs.append(ext.extract(wave))
    assert _cosine(*outputs).min() >= 0.9999


def test_fp32_tolerance_covers_the_frontends_float32_rounding(random_h5):
    """Two correct fp32 runs differ where the log-magnitude frontend's 80 dB range goes below float32's rounding
    of the FFT: a 44.1 kHz song resampled to 48 kHz leaves its mel bands above 22.05 kHz empty but for that
    rounding. The same clip with the frontend in float64 stands for "another CPU or a GPU", and verify's
    tolerance must accept it (a per-value 1e-3 did not: up to 4.6e-3 of a frame's scale)."""
    import torch

    from featurestore.agreement import compare
    from featurestore.audio import resample
    from featurestore.extractors._openl3_frontend import melspectrogram_db
    from featurestore.testing import test_signal

    ext = OpenL3(weights_path=str(random_h5))
    ext.load("cpu")
    song = resample(test_signal(int(44100 * 3.5), 44100, seed=1), 44100, 48000)
    windows = torch.from_numpy(frame_signal(song).copy())
    with torch.inference_mode():
        fp32 = ext._net(melspectrogram_db(windows, ext._filterbank)).numpy()
        fp64 = ext._net(melspectrogram_db(windows.double(), ext._filterbank.double()).float()).numpy()
    agreement = compare(fp32, fp64, ext.tolerance(), ext.dims)
    assert agreement.ok and agreement.max_abs > 0, agreement


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_matches_cpu(random_h5, precision):
    from featurestore.testing import test_signal

    wave = test_signal(48000 * 2, 48000)
    cpu = OpenL3(weights_path=str(random_h5))
    gpu = OpenL3(weights_path=str(random_h5), precision=precision)
    cpu.load("cpu")
    gpu.load("cuda")
    want, got = cpu.extract(wave), gpu.extract(wave)
    assert got.dtype == np.float32 and _cosine(got, want).min() >= (0.99999 if precision == "fp32" else 0.999)


def test_validate_checks_a_store_made_with_local_weights_against_those_weights(random_h5, tmp_path, monkeypatch):
    """The path option is not in the group's config: validate must rebuild with the recorded local file, not
    take other weights (here: the ones FSTORE_OPENL3_WEIGHTS names, as a cached official file would be) for a
    change of the extractor; and say so, not "stale", when that file is gone or changed."""

    from featurestore.store import FeatureStore
    from featurestore.validate import validate_store

    from .conftest import write_wav

    local = tmp_path / "mine.h5"
    shutil.copy(random_h5, local)
    write_wav(tmp_path / "audio" / "a.wav", 1.0, rate=22050)
    store = tmp_path / "s.zarr"
    monkeypatch.delenv("FSTORE_OPENL3_WEIGHTS", raising=False)
    run = fstore("extract", "--audio-dir", str(tmp_path / "audio"), "--store", str(store),
                                   "--models", "openl3", "--openl3-weights", str(local), "--device", "cpu")
    assert run.exit_code == 0, run.output
    monkeypatch.setenv("FSTORE_OPENL3_WEIGHTS", str(write_official_layout(tmp_path / "other.h5", seed=1)))

    report = validate_store(FeatureStore(str(store)))
    assert report.ok and report.problems == [] and report.notes == []

    write_official_layout(local, seed=2)  # the local file changed since the run
    report = validate_store(FeatureStore(str(store)))
    assert report.ok and [p.kind for p in report.problems] == []
    assert len(report.notes) == 1 and "changed since" in report.notes[0] and "cannot be checked" in report.notes[0]

    local.unlink()
    result = fstore("validate", str(store))
    assert result.exit_code == 0, result.output
    assert "not checked" in result.output and "not here" in result.output and "stale" not in result.output
