"""The command line as used day to day: logs for batch jobs, --json, --dry-run, --version, early refusals."""

from __future__ import annotations

import json

import pytest

import featurestore as fs
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import fstore




@pytest.fixture
def audio(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav", 1.0)
    write_wav(tmp_path / "audio" / "b.wav", 0.5)
    (tmp_path / "audio" / "bad.wav").write_text("not audio")
    return tmp_path / "audio"


def test_version():
    result = fstore("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"fstore {fs.__version__}"


def test_a_log_gets_one_line_per_song_with_progress(tmp_path, audio, fake_models):
    result = fstore("extract", audio, "-m", "fake,slow", "--store", tmp_path / "s.zarr")  # stderr is not a terminal
    assert result.exit_code == 1  # bad.wav
    lines = [line for line in result.stderr.splitlines() if "] " in line and "ETA" in line]
    assert len(lines) == 3
    assert "[3/3]" in lines[-1] and "fake done" in lines[0] and "slow done" in lines[0]
    assert "failed" in next(line for line in lines if "bad:" in line)
    assert "fstore extract" in result.stderr  # the summary table at the end


def test_quiet_keeps_errors_and_the_summary(tmp_path, audio, fake_models):
    result = fstore("extract", audio, "-m", "fake", "--store", tmp_path / "s.zarr", "--quiet")
    assert "ETA" not in result.stderr and "failed fake bad.wav" in result.stderr and "fstore extract" in result.stderr


def test_extract_json_summary(tmp_path, audio, fake_models):
    result = fstore("extract", audio, "-m", "fake", "--store", tmp_path / "s.zarr", "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["models"]["fake"]["done"] == 2
    assert report["failures"][0]["song_id"] == "bad" and "decode" in report["failures"][0]["error"]
    again = json.loads(fstore("extract", audio, "-m", "fake", "--store", tmp_path / "s.zarr", "--json").stdout)
    assert again["models"]["fake"]["cached"] == 2


def test_dry_run_writes_nothing(tmp_path, audio, fake_models):
    store = tmp_path / "s.zarr"
    result = fstore("extract", audio, "-m", "fake,unobtainable", "--store", store, "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert not store.exists()
    assert {(p["song_id"], p["action"]) for p in plan["pairs"]} == {("a", "compute"), ("b", "compute"), ("bad", "compute")}
    assert "unobtainable" in plan["unavailable_models"]
    fstore("extract", audio, "-m", "fake", "--store", store)
    written = FeatureStore(str(store)).song_attrs("fake", "a")["written"]
    text = fstore("extract", audio, "-m", "fake", "--store", store, "--dry-run")
    assert "cached   fake     a" in text.stdout and "compute  fake     bad" in text.stdout
    assert FeatureStore(str(store)).song_attrs("fake", "a")["written"] == written


def test_early_refusals(tmp_path, audio):
    fp16 = fstore("extract", audio, "-m", "crepe", "--device", "cpu", "--precision", "fp16", "--store", tmp_path / "s")
    assert fp16.exit_code == 2 and "fp16" in fp16.output and "fp32" in fp16.output
    bad_choice = fstore("extract", audio, "--precision", "fp8")
    assert bad_choice.exit_code == 2 and "fp8" in bad_choice.output
    a_file = tmp_path / "notastore"
    a_file.write_text("x")
    result = fstore("extract", tmp_path / "does-not-exist", "--store", a_file)
    assert result.exit_code == 2 and "is a file" in result.output  # before the inputs are looked at


def test_precision_is_shown_only_for_models_that_have_one(tmp_path, audio):
    result = fstore("extract", audio, "-m", "madmom", "--store", tmp_path / "s.zarr")
    assert "precision" not in result.stderr.splitlines()[0]


def test_every_command_takes_the_store_the_same_way(tmp_path, audio, fake_models):
    store = tmp_path / "s.zarr"
    fstore("extract", audio, "-m", "fake", "--store", store)
    for args in (["info", store], ["info", "--store", store], ["validate", "--store", store], ["validate", store],
                 ["leases", store], ["leases", "--store", store]):
        result = fstore(*args)
        assert result.exit_code == 0, (args, result.output)
    assert fstore("info", store, "--store", tmp_path / "other.zarr").exit_code == 2  # two different stores
    assert json.loads(fstore("info", "--store", store, "--json").stdout)["models"]["fake"]["songs"] == 2
    report = json.loads(fstore("validate", store, "--json").stdout)
    assert report["ok"] and report["checked"] == 2
    out = tmp_path / "npy"
    assert fstore("export-npy", store, "--output-base", out).exit_code == 0 and (out / "fake" / "a.npy").exists()


def test_models_json_has_licences(fake_models):
    rows = {r["model"]: r for r in json.loads(fstore("models", "--json").stdout)}
    assert "non-commercial" in rows["madmom"]["weights_license"] and "CC BY-NC-SA" in rows["madmom"]["weights_license"]
    assert "CC BY-NC 4.0" in rows["mert"]["weights_license"] and rows["crepe"]["weights_license"].startswith("MIT")
    assert rows["openl3"]["weights_license"].startswith("CC BY 4.0") and rows["madmom"]["available"] is True


def test_the_group_records_the_weights_licence(tmp_path, audio):
    fstore("extract", audio, "-m", "madmom", "--store", tmp_path / "s.zarr")
    assert "CC BY-NC-SA" in FeatureStore(str(tmp_path / "s.zarr")).model_attrs("madmom")["weights_license"]
