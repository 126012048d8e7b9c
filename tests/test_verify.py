"""fstore verify: stored songs recomputed with this installation and compared within each model's tolerance;
drift, changed and missing sources, gone weights and the choice of songs reported as promised."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore.store import FeatureStore
from featurestore.verify import choose, source_candidates

from .conftest import write_wav
from .fakes import FakeFrames
from .helpers import fstore, output

SONGS = ("a", "b", "c", "d", "e", "f")


@pytest.fixture
def audio(tmp_path):
    for i, song in enumerate(SONGS):
        write_wav(tmp_path / "audio" / f"{song}.wav", 1.0, rate=8000, freq=200.0 + 50 * i)
    return tmp_path / "audio"


def extracted(audio, store, *options: str):
    result = fstore("extract", audio, "--store", store, *options)
    assert result.exit_code == 0, result.output
    return store


def verified(*args: object, code: int) -> dict:
    """``fstore verify ARGS --json``'s report, once its exit code is checked."""
    result = fstore("verify", *args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def verdicts(report: dict) -> dict[tuple[str, str], str]:
    return {(g["group"], s["song_id"]): s["verdict"] for g in report["groups"] for s in g["songs"]}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_clean_store_verifies(tmp_path, audio, fake_models, dtype):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake,slow", "--dtype", dtype)
    report = verified(store, code=0)
    assert report["seed"] == 0 and report["sample"] == 3
    for group in report["groups"]:
        assert group["verdict"] == "ok" and group["checked"] == 3 and group["max_abs"] == 0.0
        assert group["min_cosine"] == 1.0
    text = fstore("verify", store)
    assert text.exit_code == 0
    assert "--seed 0" in text.stderr and "3/3" in text.stdout and "values within 1e-05" in text.stdout


def test_arrays_record_where_their_file_is(tmp_path, audio, fake_models):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    assert fstore("validate", store).exit_code == 0  # the schema allows it
    source = FeatureStore(str(store)).song_attrs("fake", "a")["source"]
    assert source["location"] == str((audio / "a.wav").absolute()) and source["path"] == "a.wav"


def test_an_installation_that_computes_something_else_drifts(tmp_path, audio, fake_models, monkeypatch):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    computed = FakeFrames._extract
    monkeypatch.setattr(FakeFrames, "_extract", lambda self, wave: computed(self, wave) * np.float32(1 + 1e-7))
    verified(store, code=0)  # within the tolerance (1e-5 + 1e-5·|x|)
    monkeypatch.setattr(FakeFrames, "_extract", lambda self, wave: computed(self, wave) * np.float32(1.01))
    report = verified(store, "--all", code=1)
    group = report["groups"][0]
    assert group["verdict"] == "drift" and group["checked"] == len(SONGS) and group["max_abs"] > 1e-3
    assert {s["verdict"] for s in group["songs"]} == {"drift"}
    assert "of frames have values within the limit" in group["songs"][0]["message"]
    text = fstore("verify", store, "--songs", "b")
    assert text.exit_code == 1 and "drift fake/b:" in output(text)


def test_a_damaged_stored_array_drifts_alone(tmp_path, audio, fake_models):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    writable = FeatureStore(str(store), mode="r+")
    arr = writable.array("fake", "c")
    altered = arr[...].copy()
    altered[10, 0] += 0.01
    writable.write("fake", "c", altered, {k: v for k, v in arr.attrs.items() if k != "complete"})
    report = verified(store, "--all", code=1)
    assert verdicts(report) == {("fake", s): "drift" if s == "c" else "ok" for s in SONGS}
    drifted = report["groups"][0]["songs"][SONGS.index("c")]
    assert drifted["max_abs"] == pytest.approx(0.01, rel=1e-3) and "0.10 s" in drifted["message"]


def test_a_shorter_array_is_a_shape_difference(tmp_path, audio, fake_models):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    writable = FeatureStore(str(store), mode="r+")
    arr = writable.array("fake", "a")
    writable.write("fake", "a", arr[:-1], {**{k: v for k, v in arr.attrs.items() if k != "complete"}, "shape": [99, 2]})
    report = verified(store, "--songs", "a", code=1)
    assert verdicts(report) == {("fake", "a"): "shape differs"}
    assert "stored (99, 2)" in report["groups"][0]["songs"][0]["message"]


def test_a_changed_source_is_reported_not_compared(tmp_path, audio, fake_models, monkeypatch):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    write_wav(audio / "b.wav", 1.0, rate=8000, freq=1234.0)  # same path and length, other content
    computed = FakeFrames._extract
    monkeypatch.setattr(FakeFrames, "_extract", lambda self, wave: computed(self, wave) * np.float32(2))
    report = verified(store, "--songs", "b", code=4)  # the drifting computation never ran
    song = report["groups"][0]["songs"][0]
    assert song["verdict"] == "source changed" and song["max_abs"] is None and "sha256" in song["message"]
    assert song["source"] == str(audio / "b.wav")
    text = fstore("verify", store, "--songs", "b")
    assert "source changed fake/b" in output(text) and "0 of 1 songs compared" in output(text)


def test_a_missing_source_is_reported_and_found_with_audio_dir(tmp_path, audio, fake_models):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    moved = tmp_path / "moved"
    shutil.move(audio, moved)
    report = verified(store, "--songs", "a", code=4)
    song = report["groups"][0]["songs"][0]
    assert song["verdict"] == "source missing" and str(audio / "a.wav") in song["message"]
    assert "--audio-dir" in song["message"]
    assert verdicts(verified(store, "--songs", "a", "--audio-dir", moved, code=0)) == {("fake", "a"): "ok"}


def test_arrays_without_a_location_are_found_by_their_relative_path(tmp_path, audio, fake_models, monkeypatch):
    """Arrays written before the location was recorded name their file relative to the audio folder only."""
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    writable = FeatureStore(str(store), mode="r+")
    arr = writable.array("fake", "d")
    old = {k: v for k, v in arr.attrs.items() if k != "complete"}
    old["source"] = {k: v for k, v in old["source"].items() if k != "location"}
    writable.write("fake", "d", arr[...], old)
    assert verified(store, "--songs", "d", code=4)["groups"][0]["songs"][0]["verdict"] == "source missing"
    found = verified(store, "--songs", "d", "--audio-dir", tmp_path, "--audio-dir", audio, code=0)
    assert found["groups"][0]["songs"][0]["source"] == str(audio / "d.wav")  # the first folder that has it
    monkeypatch.chdir(audio)  # the recorded path, from the current folder
    assert verdicts(verified(store, "--songs", "d", code=0)) == {("fake", "d"): "ok"}


def test_source_candidates_in_order():
    """--audio-dir folders in order, then the recorded location, then the recorded path itself."""
    got = source_candidates({"path": "x/d.wav", "location": "/data/x/d.wav"}, ["/m1", "/m2"])
    assert got == [Path("/m1/x/d.wav"), Path("/m2/x/d.wav"), Path("/data/x/d.wav"), Path("x/d.wav")]
    assert source_candidates({"path": "d.wav"}) == [Path("d.wav")]


def test_songs_and_sample_choose_as_promised(tmp_path, audio, fake_models):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake,slow")
    named = verified(store, "--songs", "e", "a", "--models", "slow", code=0)
    assert sorted(verdicts(named)) == [("slow", "a"), ("slow", "e")]
    once, again = (verified(store, "--sample", 2, "--seed", 7, code=0) for _ in range(2))
    assert verdicts(once) == verdicts(again) and len(verdicts(once)) == 4
    picks = {g["group"]: [s["song_id"] for s in g["songs"]] for g in once["groups"]}
    assert picks["fake"] == picks["slow"]  # groups holding the same songs check the same ones
    assert len({tuple(choose(SONGS, 2, seed)) for seed in range(10)}) > 1  # the seed matters
    assert choose(SONGS, 2, 7) == picks["fake"] and choose(SONGS, 10, 0) == list(SONGS)
    assert len(verdicts(verified(store, "--all", code=0))) == 2 * len(SONGS)


@pytest.mark.parametrize("args", [["--songs", "nosuch"], ["--models", "nosuch"], ["--songs", "a", "--sample", "2"],
                                  ["--all", "--sample", "2"], ["--device", "tpu"]])
def test_usage_errors_exit_2(tmp_path, audio, fake_models, args):
    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake")
    assert fstore("verify", store, *args).exit_code == 2


def test_gone_local_weights_are_reported(tmp_path, audio, fake_models):
    factor = tmp_path / "factor.txt"
    factor.write_text("2.5")
    store = extracted(audio, tmp_path / "s.zarr", "-m", "weighted", "-o", f"weighted.weights_path={factor}")
    assert verified(store, code=0)["groups"][0]["max_abs"] == 0.0
    factor.write_text("3.0")
    changed = verified(store, code=4)["groups"][0]
    assert changed["verdict"] == "unverified" and {s["verdict"] for s in changed["songs"]} == {"weights missing"}
    assert "changed since" in changed["songs"][0]["message"]
    factor.unlink()
    text = fstore("verify", store)
    assert text.exit_code == 4
    assert "weights missing weighted/" in output(text) and f"{factor}, which are not here" in output(text)


def test_a_song_that_no_longer_computes_differs_and_a_missing_model_is_unverified(tmp_path, audio, fake_models,
                                                                                  monkeypatch):
    from featurestore.extractors import registry

    store = extracted(audio, tmp_path / "s.zarr", "-m", "fake,slow")

    def broken(self, wave):
        raise ValueError("a kernel this installation lacks")

    monkeypatch.setattr(FakeFrames, "_extract", broken)
    registry.unregister("slow")
    report = verified(store, "--songs", "a", code=1)
    assert verdicts(report) == {("fake", "a"): "failed", ("slow", "a"): "not computable"}
    messages = {g["group"]: g["songs"][0]["message"] for g in report["groups"]}
    assert "a kernel this installation lacks" in messages["fake"] and "not installed here" in messages["slow"]
    assert verified(store, "--songs", "a", "--models", "slow", code=4)["groups"][0]["verdict"] == "unverified"


def test_madmom_recomputed_agrees(tmp_path):
    """The real model, as a run computes it: decode, resample to 44.1 kHz, extract."""
    for i, song in enumerate(("x", "y")):
        write_wav(tmp_path / "audio" / f"{song}.wav", 2.0, rate=22050, freq=330.0 * (i + 1))
    store = extracted(tmp_path / "audio", tmp_path / "s.zarr", "-m", "madmom", "--device", "cpu")
    group = verified(store, code=0)["groups"][0]
    assert group["model"] == "madmom" and group["checked"] == 2 and group["max_abs"] <= 1e-5
    assert group["tolerance"]["max_abs"] == 1e-5
