"""MERT extractor: the shared contract on a generated tiny MERT snapshot, loading without remote
code, equality with transformers' HubertModel, refusals, windows, the offline message, parity."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import WeightsUnavailable
from featurestore.extractors._mert_hf import UnsupportedMertConfig
from featurestore.extractors.mert import Mert, n_frames, plan_windows
from featurestore.testing import ExtractorContract, test_signal
from featurestore.extractors._mert_weights import MERT_REPO, MERT_REVISION
from featurestore.weights import sha256_file

from .conftest import requires_gpu, requires_shared, shared_path
from .helpers import TINY_CONFIG, fstore, reference_model, write_snapshot

_snapshots: dict[str, Path] = {}


def tiny_snapshot(fmt: str = "bin") -> Path:
    return _snapshots[fmt]


@pytest.fixture(scope="session", autouse=True)
def _tiny_snapshots(tmp_path_factory):
    root = tmp_path_factory.mktemp("mert")
    for fmt in ("bin", "safetensors"):
        _snapshots[fmt] = write_snapshot(root / fmt, fmt=fmt)


def normalised(wave: np.ndarray) -> np.ndarray:
    """Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation, in NumPy float64."""
    w = wave.astype(np.float64)
    return ((w - w.mean()) / np.sqrt(w.var() + 1e-7)).astype(np.float32)


def hubert_hidden_states(model, wave: np.ndarray) -> np.ndarray:
    """All hidden states of ``model`` on one window, shape (L+1, T, hidden)."""
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(normalised(wave))[None], output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


class TestMertContract(ExtractorContract):
    alternative_options = {"normalize": "window"}

    def make_extractor(self, **options):
        return Mert(model_path=str(tiny_snapshot()), **options)


class TestMertAllLayersContract(ExtractorContract):
    """The contract again with the (layer, time, feature) layout: time is not the first axis."""

    durations_s = (0.25, 1.0)
    alternative_options = {"window_s": 10.0}

    def make_extractor(self, **options):
        return Mert(model_path=str(tiny_snapshot()), layers="all", **options)


def loaded(**options) -> Mert:
    ext = Mert(model_path=str(tiny_snapshot()), **options)
    ext.load("cpu")
    return ext


def test_equals_hubert_model_built_from_the_mapped_config():
    """Both weight formats and key namings load to exactly the model they were saved from."""
    wave = test_signal(24000 * 2 + 123, 24000)
    expected = hubert_hidden_states(reference_model(), wave)
    assert expected.shape == (3, n_frames(len(wave)), 32)
    for fmt in ("bin", "safetensors"):
        ext = Mert(model_path=str(tiny_snapshot(fmt)), layers="all")
        ext.load("cpu")
        np.testing.assert_allclose(ext.extract(wave), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(loaded().extract(wave), expected[-1], rtol=0, atol=1e-5)


def test_time_formula_and_axis():
    ext = loaded()
    for n in (400, 719, 720, 24000 + 5):
        assert ext.extract(test_signal(n, 24000)).shape == ((n - 400) // 320 + 1, 32)
    ax = ext.time_axis
    assert (ax.sample_rate, ax.hop_samples, ax.t0_samples) == (24000, 320, 200)
    assert ext.n_frames(30 * 24000) == 2249


def test_layer_selection_dims_and_coords():
    wave = test_signal(24000, 24000)
    every = loaded(layers="all")
    assert every.dims == ("layer", "time", "feature") and every.coords == {"layer": [0, 1, 2]}
    picked = loaded(layers="2,0")
    assert picked.coords == {"layer": [0, 2]} and picked.output_shape(len(wave)) == (2, 74, 32)
    single = loaded(layers="1")
    assert single.dims == ("time", "feature") and single.coords == {}
    all_states = every.extract(wave)
    np.testing.assert_array_equal(picked.extract(wave), all_states[[0, 2]])
    np.testing.assert_array_equal(single.extract(wave), all_states[1])
    for bad in ("3", "1,1", "-1", "first"):
        with pytest.raises(ValueError):
            Mert(model_path=str(tiny_snapshot()), layers=bad).output_shape(24000)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"attention_relax": 32.0}, "attention_relax"),
        ({"deepnorm": True}, "deepnorm"),
        ({"feature_extractor_cqt": True}, "feature_extractor_cqt"),
        ({"model_type": "hubert"}, "model_type"),
        ({"sample_rate": 16000}, "16000 Hz"),
    ],
)
def test_refuses_configs_whose_maths_differ(tmp_path, change, words):
    folder = tmp_path / "snap"
    write_snapshot(folder)
    (folder / "config.json").write_text(json.dumps({**TINY_CONFIG, **change}))
    ext = Mert(model_path=str(folder))
    with pytest.raises(UnsupportedMertConfig, match=words):
        ext.load("cpu")


def test_do_normalize_is_read_from_the_preprocessor_config(tmp_path):
    folder = write_snapshot(tmp_path / "raw", do_normalize=False)
    ext = Mert(model_path=str(folder))
    ext.load("cpu")
    wave = test_signal(24000, 24000)
    import torch

    with torch.inference_mode():
        expected = reference_model()(torch.from_numpy(wave)[None]).last_hidden_state[0].numpy()
    np.testing.assert_allclose(ext.extract(wave), expected, rtol=0, atol=1e-5)
    # same weights, another preprocessing: stored arrays must not be taken for each other's
    normalising = Mert(model_path=str(write_snapshot(tmp_path / "norm")))
    assert normalising.weights()[0].sha256 == ext.weights()[0].sha256
    assert normalising.fingerprint != ext.fingerprint


def test_fingerprint_records_the_weights_sha256():
    bin_, st = Mert(model_path=str(tiny_snapshot("bin"))), Mert(model_path=str(tiny_snapshot("safetensors")))
    assert bin_.weights()[0].sha256 == sha256_file(tiny_snapshot("bin") / "pytorch_model.bin")
    assert bin_.fingerprint != st.fingerprint
    assert "model_path" not in bin_.config.fingerprinted()


def test_local_folder_without_weights_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    with pytest.raises(WeightsUnavailable, match="lacks preprocessor_config.json, model.safetensors or pytorch_model.bin"):
        Mert(model_path=str(tmp_path)).weights()


def test_env_var_chooses_the_snapshot(monkeypatch):
    monkeypatch.setenv("FSTORE_MERT_MODEL", str(tiny_snapshot()))
    ext = Mert()
    assert ext.weights()[0].path.parent == tiny_snapshot() and ext.output_shape(24000) == (74, 32)


def test_offline_without_cache_fails_fast_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FSTORE_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", FSTORE_OFFLINE="1")
    # no connection is even attempted (the hub's client would retry with back-off): any would end the process
    code = ("import socket\n"
            "def refuse(*args, **kwargs): raise SystemExit('tried the network')\n"
            "socket.create_connection = socket.socket.connect = refuse\n"
            "from featurestore.extractors.mert import Mert\nMert().weights()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "WeightsUnavailable" in out.stderr and "tried the network" not in out.stderr
    message = out.stderr.strip().splitlines()[-1]
    for words in (MERT_REPO, MERT_REVISION, str(tmp_path / "hf" / "hub"), "--mert-model PATH", "FSTORE_MERT_MODEL"):
        assert words in message, words


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    """Online but without a route to the hub: no five retries with back-off, one clear error."""
    import socket

    import featurestore.extractors._mert_weights as mert_weights

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("hf_hub_download must not be called when the hub is unreachable")

    for var in ("FSTORE_OFFLINE", "HF_HUB_OFFLINE", "FSTORE_MERT_MODEL", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mert_weights, "mert_cached_snapshot", lambda: None)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", never)
    with pytest.raises(WeightsUnavailable, match="cannot be reached.*--mert-model PATH"):
        Mert().weights()
    assert len(attempts) == 1  # one attempt, answered at once: no retries with back-off


def test_plan_windows_tiles_the_frames_on_the_grid():
    window_frames, overlap_frames = 2250, 375  # 30 s, 5 s
    for n in [400, 720000, 720080, 720081, 840000, 24000 * 61 + 17, 24000 * 1200 + 5]:
        windows = plan_windows(n, 30.0, 5.0)
        assert windows[0].keep_from == 0 and windows[-1].keep_to == n_frames(n) and 0 <= n - windows[-1].stop < 320
        assert len({w.stop - w.start for w in windows}) == 1  # one length: the song's windows are one batch
        for w in windows:
            assert w.start % 320 == 0 and w.stop - w.start <= 320 * (window_frames - 1) + 400
            assert w.first_frame <= w.keep_from < w.keep_to <= w.first_frame + n_frames(w.stop - w.start)
        for a, b in zip(windows, windows[1:]):
            assert a.keep_to == b.keep_from
            overlap = a.first_frame + n_frames(a.stop - a.start) - b.first_frame
            assert overlap >= overlap_frames - 1
            assert min(a.keep_to - b.first_frame, a.first_frame + n_frames(a.stop - a.start) - a.keep_to) >= (overlap - 1) // 2


@pytest.mark.parametrize("normalize", ["song", "window"])
def test_windows_are_stitched_on_the_song_clock(normalize):
    """Each stored frame is the frame of the window planned for it, at the right song index."""
    ext = loaded(layers="all", window_s=1.0, overlap_s=0.25, normalize=normalize)
    wave = test_signal(24000 * 4 + 1234, 24000)
    got = ext.extract(wave)
    model = reference_model()
    song = normalised(wave)
    windows = plan_windows(len(wave), 1.0, 0.25)
    assert len(windows) >= 5
    for w in windows:
        segment = wave[w.start : w.stop]
        if normalize == "window":
            states = hubert_hidden_states(model, segment)
        else:  # the first GroupNorm takes its statistics over the whole song, as one pass does
            with _song_group_norm(model, song):
                states = _states_raw(model, song[w.start : w.stop])
        np.testing.assert_allclose(got[:, w.keep_from : w.keep_to], states[:, w.keep_from - w.first_frame : w.keep_to - w.first_frame],
                                   rtol=0, atol=1e-5)
    one_pass = loaded(layers="all", normalize=normalize).extract(wave)
    assert got.shape == one_pass.shape
    # the conv front end sees the same samples; only its GroupNorm statistics and the attention context differ
    assert np.abs(got[0] - one_pass[0]).mean() < np.abs(one_pass[0]).mean()


@contextlib.contextmanager
def _song_group_norm(model, song: np.ndarray):
    """``model``'s first GroupNorm normalising with the statistics of ``song`` (float64) instead of its input's."""
    import torch

    layer = model.feature_extractor.conv_layers[0]
    with torch.inference_mode():
        y = layer.conv(torch.from_numpy(song)[None, None]).double()
    mean, var = y.mean(dim=-1, keepdim=True), y.var(dim=-1, keepdim=True, correction=0)
    norm = layer.layer_norm

    def hook(module, args, output):
        x = (args[0].double() - mean) / torch.sqrt(var + norm.eps)
        return (x * norm.weight[:, None] + norm.bias[:, None]).float()

    handle = norm.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_batch_of_songs_equals_each_song():
    """Equal-length songs and the windows of a long song share model calls; each output is its single-song one."""
    ext = loaded(layers="all", window_s=1.0, overlap_s=0.25)
    waves = [test_signal(n, 24000, seed=i) for i, n in enumerate([21600, 21600, 24000 * 3 + 77, 12000])]
    calls = []
    ext._net.model.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    batched = ext.extract_batch(waves)
    # one call for both 0.9-s songs, one for the 3-s song's four 1-s windows, one for the 0.5-s song
    assert sorted(calls) == [(1, 12000), (2, 21600), (4, 24080)]
    for got, wave in zip(batched, waves):
        np.testing.assert_allclose(got, ext.extract(wave), rtol=0, atol=1e-5)


def _states_raw(model, values: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(values))[None], output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


def test_cli_extracts_a_generated_snapshot_end_to_end(tmp_path):

    import featurestore as fs

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 2.0, rate=44100)
    store = tmp_path / "s.zarr"
    args = ["extract", "--audio-dir", tmp_path / "audio", "--store", store, "--models", "mert",
            "--mert-model", tiny_snapshot(), "--mert-layers", "all", "--device", "cpu"]
    result = fstore(*args)
    assert result.exit_code == 0, result.output
    da = fs.open_store(str(store)).load("a", "mert")
    assert da.dims == ("layer", "time", "feature") and da.shape == (3, n_frames(48000), 32)
    assert list(da["layer"].values) == [0, 1, 2]
    assert da["time"].values[0] == pytest.approx(200 / 24000) and da["time"].values[1] - da["time"].values[0] == pytest.approx(320 / 24000)


@pytest.mark.slow
def test_twenty_minutes_in_bounded_memory():
    """A 20-minute song on the tiny snapshot: peak RSS grows by the song and its output, not by T^2."""
    code = f"""
import resource, numpy as np
from featurestore.extractors.mert import Mert
from featurestore.testing import test_signal
ext = Mert(model_path={str(tiny_snapshot())!r}); ext.load("cpu")
n = 20 * 60 * 24000
wave = np.empty(n, np.float32)
for i in range(0, n, 720000):
    wave[i : i + 720000] = test_signal(min(720000, n - i), 24000, seed=i)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = ext.extract(wave)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(y.shape, (after - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    shape, growth_mib = out.stdout.rsplit(" ", 1)
    assert shape == f"({n_frames(20 * 60 * 24000)}, 32)"
    # one pass would need ~12 heads x 90000^2 attention scores per layer; windows need the
    # normalised song (110 MiB) and one 30-s window's activations
    assert float(growth_mib) < 600, growth_mib


@requires_shared
@pytest.mark.parametrize("name", ["chirp", "sample"])
def test_parity_with_mert_model_code(name):
    """Every hidden state of MERT's own model code (transformers 4.38.2) within 1e-4."""
    folder = shared_path("parity", "mert")
    ref = np.load(folder / f"{name}.npz")
    ext = Mert(model_path=str(folder / "snapshot"), layers="all")
    ext.load("cpu")
    got = ext.extract(ref["audio24k"])
    assert got.shape == ref["hidden_states"].shape
    assert np.abs(got - ref["hidden_states"]).max() <= 1e-4
    last = Mert(model_path=str(folder / "snapshot"))
    last.load("cpu")
    assert np.abs(last.extract(ref["audio24k"]) - ref["last_hidden_state"]).max() <= 1e-4


@pytest.mark.parametrize("precision", ["bf16"])
def test_cpu_low_precision_stays_close_to_fp32(precision):
    wave = test_signal(24000 * 2, 24000)
    fp32 = loaded().extract(wave)
    low = loaded(precision=precision).extract(wave)
    assert low.dtype == np.float32 and low.shape == fp32.shape
    assert np.abs(low - fp32).max() < 0.1 * np.abs(fp32).max()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_positional_conv_runs_in_fp32(precision):
    """The positional grouped conv1d never runs in bf16/fp16: torch 2.13's bf16 kernel for the tiny
    snapshot's shape (32 channels, 4 groups, kernel 16) is wrong on AMX CPUs (test_bf16_kernels.py)."""
    import torch

    ext = loaded(precision=precision)
    seen = []
    conv = ext._net.model.encoder.pos_conv_embed.inner.conv
    conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    ext.extract(test_signal(24000, 24000))
    assert seen == [torch.float32]
    assert all(p.dtype == torch.float32 for p in conv.parameters())


def test_the_folded_layers_keep_every_tensor_on_the_models_device():
    """MertNet's own modules hold their tensors where the model's weights are (MERT's conv has no bias, and a
    bias made on the CPU once broke every CUDA run): checked without a GPU on the "meta" device."""
    import torch

    from featurestore.extractors._mert_net import MertNet

    net = MertNet(reference_model().to("meta"), torch.float32)
    placed = {name: t.device.type for name, t in [*net.model.named_parameters(), *net.model.named_buffers()]}
    assert placed and set(placed.values()) == {"meta"}, {n: d for n, d in placed.items() if d != "meta"}


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_matches_cpu(precision):
    wave = test_signal(24000 * 3, 24000)
    cpu = loaded().extract(wave)
    ext = Mert(model_path=str(tiny_snapshot()), precision=precision)
    ext.load("cuda")
    got = ext.extract(wave)
    tolerance = 1e-4 if precision == "fp32" else 0.1 * np.abs(cpu).max()
    assert got.dtype == np.float32 and np.abs(got - cpu).max() < tolerance


def test_last_and_its_index_are_one_configuration():
    """"last" resolves to the snapshot's layer count (2 in the tiny snapshot): same fingerprint and group config."""
    last, index = Mert(model_path=str(tiny_snapshot()), layers="last"), Mert(model_path=str(tiny_snapshot()), layers="2")
    assert last.fingerprint == index.fingerprint
    assert last.describe()["config"]["layers"] == [2] == index.describe()["config"]["layers"]
    assert Mert(model_path=str(tiny_snapshot()), layers="1").fingerprint != last.fingerprint


def per_frame_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching frames along the last (feature) axis, float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@requires_shared
@pytest.mark.parametrize("name", ["chirp", "sample"])
def test_bf16_accuracy_gate(name):
    """bf16 against fp32 on the real-music parity inputs: per-frame cosine >= 0.999 on every stored layer."""
    folder = shared_path("parity", "mert")
    wave = np.load(folder / f"{name}.npz")["audio24k"]
    out = {}
    for precision in ("fp32", "bf16"):
        ext = Mert(model_path=str(folder / "snapshot"), layers="all", precision=precision)
        ext.load("cpu")
        out[precision] = ext.extract(wave)
    cosine = per_frame_cosine(out["bf16"], out["fp32"])
    assert cosine.shape == out["fp32"].shape[:2]
    assert cosine.min() >= 0.999, cosine.min(axis=1)
