"""The `fstore` command end to end with madmom: bad inputs, exit codes, resume after a kill, export."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

import featurestore as fs
from featurestore.store import FeatureStore
from featurestore.validate import validate_store

from .conftest import write_wav
from .helpers import fstore




@pytest.fixture
def bad_and_good(tmp_path):
    audio = tmp_path / "audio"
    write_wav(audio / "good.wav", 2.0)
    write_wav(audio / "rock" / "six channels.wav", 1.5, channels=6, rate=48000)
    write_wav(audio / "low.wav", 1.0, rate=8000)
    (audio / "empty.wav").write_bytes(b"")
    (audio / "text.wav").write_text("this is not audio")
    truncated = write_wav(audio / "truncated.wav", 2.0).read_bytes()
    (audio / "truncated.wav").write_bytes(truncated[:44])  # header only
    nan = np.zeros(4410, np.float32)
    nan[100] = np.nan
    import soundfile as sf

    sf.write(audio / "nan.wav", nan, 44100, subtype="FLOAT")
    (audio / "notes.txt").write_text("not audio, skipped")
    return audio


def test_bad_inputs_fail_per_file_and_the_run_goes_on(tmp_path, bad_and_good):
    store = tmp_path / "s.zarr"
    result = fstore("extract", "--audio-dir", bad_and_good, "--store", store, "--models", "madmom")
    assert result.exit_code == 1, result.output
    reader = fs.open_store(str(store))
    assert reader.songs("madmom") == ["good", "low", "rock/six channels"]
    failed = {f["song_id"]: f["error"] for f in reader.failures()}
    assert set(failed) == {"empty", "text", "truncated", "nan"}
    assert "NaN" in failed["nan"] and "decode" in failed["text"]
    for name in failed:
        assert f"{name}.wav" in result.output
    assert reader.load("rock/six channels", "madmom").shape == (150,)
    assert validate_store(FeatureStore(str(store))).ok


def test_all_good_exits_zero_and_exports_the_classic_layout(tmp_path):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 1.0)
    write_wav(audio / "dir" / "b.flac", 0.5, fmt="FLAC")
    store = tmp_path / "s.zarr"
    assert fstore("extract", "--audio_dir", audio, "--store", store, "-m", "madmom", "--verbose").exit_code == 0
    out = tmp_path / "output" / "embeddings"
    result = fstore("export-npy", "--store", store, "--output-base", out)
    assert result.exit_code == 0, result.output
    a = np.load(out / "madmom" / "a.npy")
    assert a.shape == (100,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, fs.open_store(str(store)).load("a", "madmom").values)
    assert np.load(out / "madmom" / "dir" / "b.npy").shape == (50,)
    assert "kept" in fstore("export-npy", "--store", store, "--output-base", out).output
    info = fstore("info", store)
    assert info.exit_code == 0 and "madmom" in info.output and "100 Hz" in info.output
    assert fstore("validate", store).exit_code == 0


def test_classic_output_base_on_extract(tmp_path):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 1.0)
    out = tmp_path / "emb"
    assert fstore("extract", "--audio-dir", audio, "--store", tmp_path / "s.zarr", "--models", "madmom",
                  "--output_base", out, "--skip_existing").exit_code == 0
    assert np.load(out / "madmom" / "a.npy").shape == (100,)


def test_usage_errors_exit_two(tmp_path):
    result = fstore("extract", "--audio-dir", tmp_path, "--models", "madmom,beats")
    assert result.exit_code == 2 and "valid models" in result.output
    assert fstore("extract", "--audio-dir", tmp_path / "absent", "--models", "madmom").exit_code == 2
    assert fstore("extract", "--audio-dir", tmp_path, "--device", "tpu", "--models", "madmom").exit_code == 2


def test_models_space_and_comma_separated(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    store = tmp_path / "s.zarr"
    assert fstore("extract", "--audio-dir", audio, "--store", store, "--models", "fake", "slow").exit_code == 0
    assert fs.open_store(str(store)).models() == ["fake", "slow"]
    assert fstore("extract", "--audio-dir", audio, "--store", store, "--models", "fake,slow", "--skip-existing").exit_code == 0


def test_models_command_lists_every_model():
    result = fstore("models")
    assert result.exit_code == 0
    for name in ("openl3", "crepe", "madmom", "mert"):
        assert name in result.output


def test_kill_midway_then_resume(tmp_path):
    """SIGKILL a real `fstore extract` while it writes; the resumed run completes without rewriting."""
    audio = tmp_path / "audio"
    for i in range(12):
        write_wav(audio / f"song{i:02d}.wav", 3.0, freq=200 + 20 * i)
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "featurestore.cli", "extract", "--audio-dir", str(audio), "--store", str(store), "--models", "madmom"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        try:
            done = FeatureStore(str(store)).songs("madmom")
        except Exception:
            done = []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = FeatureStore(str(store))
    finished = {s: before.array("madmom", s).attrs["written"] for s in before.songs("madmom")}
    assert 3 <= len(finished) < 12
    mtimes = {s: (store / "madmom" / s / "zarr.json").stat().st_mtime_ns for s in finished}

    result = subprocess.run(cmd + ["--skip-existing"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = FeatureStore(str(store))
    assert after.songs("madmom") == [f"song{i:02d}" for i in range(12)]
    assert after.songs("madmom", complete_only=False) == after.songs("madmom")
    for s, written in finished.items():  # complete arrays were skipped, not rewritten
        assert after.array("madmom", s).attrs["written"] == written
        assert (store / "madmom" / s / "zarr.json").stat().st_mtime_ns == mtimes[s]
    assert validate_store(after).ok


def test_unobtainable_weights_named_is_an_error_default_is_a_warning(tmp_path, fake_models):
    from featurestore.extractors import registry

    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    store = tmp_path / "s.zarr"
    named = fstore("extract", "--audio-dir", audio, "--store", store, "--models", "fake,unobtainable")
    assert named.exit_code == 1
    assert named.output.count("model.h5 is not in the cache") >= 1 and "/cache/fstore" in named.output
    assert "--unobtainable-weights" in named.output
    assert fs.open_store(str(store)).songs("fake") == ["a"]  # the other model still ran
    # only part of the default set: a warning, exit 0
    for name in registry.names():
        if name not in ("fake", "unobtainable"):
            registry.unregister(name)
    default = fstore("extract", "--audio-dir", audio, "--store", tmp_path / "t.zarr")
    assert default.exit_code == 0 and "unobtainable left out" in default.output


def test_local_worker_processes(tmp_path):
    audio = tmp_path / "audio"
    for i in range(4):
        write_wav(audio / f"s{i}.wav", 1.0, freq=200 + 100 * i)
    store = tmp_path / "s.zarr"
    result = fstore("extract", "--audio-dir", audio, "--store", store, "--models", "madmom", "--workers", "2")
    assert result.exit_code == 0, result.output
    reader = fs.open_store(str(store))
    assert reader.songs("madmom") == ["s0", "s1", "s2", "s3"]
    assert validate_store(FeatureStore(str(store))).ok


def test_validate_finds_wrong_shapes_nonfinite_values_and_stale_fingerprints(tmp_path, fake_models, monkeypatch):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    write_wav(audio / "b.wav", 0.5)
    store = tmp_path / "s.zarr"
    assert fstore("extract", "--audio-dir", audio, "--store", store, "--models", "fake").exit_code == 0
    assert fstore("validate", store).exit_code == 0
    zarr.open_array(str(store / "fake" / "a"), mode="r+")[0, 0] = np.nan  # damage written behind fstore's back
    s = FeatureStore(str(store), mode="r+")
    attrs = s.array("fake", "b").attrs
    s.write("fake", "b", np.zeros((7, 2), np.float32), attrs)  # wrong frame count
    from tests.fakes import FakeFrames

    monkeypatch.setattr(FakeFrames, "implementation_version", "2")  # the code changed since
    result = fstore("validate", store)
    assert result.exit_code == 1
    assert "nonfinite" in result.output and "shape" in result.output and "stale" in result.output
