"""No command destroys or mixes data: writing commands touch only fstore stores, and only
``fstore extract`` creates one, at a path that does not exist or is an empty folder; a changed
input is recomputed; exports say what they kept; recorded failures stay recorded; awkward inputs
cost only themselves."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import zarr

from featurestore.errors import StoreError
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import fstore, output


def _snapshot(folder):
    """Every file under ``folder`` with its bytes: what a command must leave as it found it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def foreign(tmp_path):
    """A Zarr store made by another program: two arrays and a root attribute."""
    path = tmp_path / "foreign.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs["experiment"] = "mine"
    root.create_array("experiment1/labels", data=np.arange(10, dtype=np.int32))
    root.create_array("experiment1/weights", data=np.ones((3, 4), dtype=np.float32))
    return path


@pytest.fixture
def plain_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 not a store")
    return folder


@pytest.fixture
def audio(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    return tmp_path / "audio"


WRITING_COMMANDS = [
    pytest.param(["validate", "{store}", "--fix"], id="validate-fix"),
    pytest.param(["leases", "{store}", "--release-stale"], id="leases-release-stale"),
    pytest.param(["leases", "{store}", "--release", "somerun"], id="leases-release"),
    pytest.param(["extract", "{audio}", "--store", "{store}", "--models", "fake"], id="extract"),
    pytest.param(["extract", "{audio}", "--store", "{store}", "--models", "fake", "--overwrite"], id="extract-overwrite"),
]


@pytest.mark.parametrize("command", WRITING_COMMANDS)
@pytest.mark.parametrize("target", ["foreign", "plain_folder"])
def test_writing_commands_refuse_what_is_not_an_fstore_store(request, fake_models, audio, command, target):
    path = request.getfixturevalue(target)
    before = _snapshot(path)
    result = fstore(*[a.format(store=path, audio=audio) for a in command])
    assert result.exit_code == 1, result.output
    assert "not an fstore store" in output(result)
    assert _snapshot(path) == before


@pytest.mark.parametrize("target", ["foreign", "plain_folder"])
def test_read_only_commands_say_the_same(request, target):
    path = request.getfixturevalue(target)
    for command in (["validate", path], ["info", path], ["leases", path], ["export-npy", path]):
        result = fstore(*command)
        assert result.exit_code == 1 and "not an fstore store" in output(result), (command, result.output)


def test_the_foreign_arrays_survive_validate_fix(foreign):
    fstore("validate", foreign, "--fix")
    root = zarr.open_group(str(foreign), mode="r")
    assert root.attrs.asdict() == {"experiment": "mine"}
    np.testing.assert_array_equal(root["experiment1/labels"][...], np.arange(10))
    assert root["experiment1/weights"].shape == (3, 4)


@pytest.mark.parametrize("command", [["validate", "{path}", "--fix"], ["validate", "{path}"], ["info", "{path}"],
                                     ["leases", "{path}", "--release-stale"], ["export-npy", "{path}"]])
def test_a_typo_is_an_error_not_a_new_store(tmp_path, command):
    path = tmp_path / "typo.zarr"
    result = fstore(*[a.format(path=path) for a in command])
    assert result.exit_code == 1 and "no fstore store here" in output(result), result.output
    assert not path.exists()


def test_only_a_missing_path_or_an_empty_folder_becomes_a_store(tmp_path, fake_models, audio):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    for path in (tmp_path / "new.zarr", empty):
        result = fstore("extract", audio, "--store", path, "--models", "fake")
        assert result.exit_code == 0, result.output
        assert FeatureStore(str(path)).songs("fake") == ["a"]
    with pytest.raises(StoreError, match="no fstore store here"):
        FeatureStore(str(tmp_path / "other.zarr"), mode="r+")
    assert not (tmp_path / "other.zarr").exists()


def test_an_empty_zarr_group_is_no_foreign_data(tmp_path):
    """A root group with no attributes and no members (a create interrupted before fstore's attributes)."""
    zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    with pytest.raises(StoreError, match="no fstore store here"):
        FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    assert json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]["schema_version"] == store.root_attrs()["schema_version"]


def _extract(*args: object) -> dict:
    """``fstore extract ARGS... --json``: the summary."""
    result = fstore("extract", *args, "--json")
    return json.loads(result.stdout)


# -- a source rewritten with its size and mtime kept: --hash-sources -----------------------------------
def test_hash_sources_sees_a_file_rewritten_with_its_size_and_mtime_kept(tmp_path, fake_models):
    song = write_wav(tmp_path / "audio" / "a.wav", 0.5, freq=440.0)
    store = tmp_path / "s.zarr"
    assert _extract(song.parent, "--store", store, "-m", "fake")["models"]["fake"]["done"] == 1
    before = song.stat()
    write_wav(song, 0.5, freq=660.0)  # other samples, the same size
    os.utime(song, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (song.stat().st_size, song.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    assert _extract(song.parent, "--store", store, "-m", "fake")["models"]["fake"]["cached"] == 1  # the cheap rule
    assert _extract(song.parent, "--store", store, "-m", "fake", "--hash-sources")["models"]["fake"]["done"] == 1
    stored = FeatureStore(str(store)).array("fake", "a").attrs["source"]
    assert stored["sha256"] == hashlib.sha256(song.read_bytes()).hexdigest()
    assert _extract(song.parent, "--store", store, "-m", "fake", "--hash-sources")["models"]["fake"]["cached"] == 1
