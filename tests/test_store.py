"""The Zarr layout: song ids, complete-last writes, failures, schemas."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest
import zarr
from fsspec.implementations.memory import MemoryFileSystem

from featurestore.errors import InvalidSongId, StoreError
from featurestore.store import FeatureStore, validate_song_id
from featurestore.store.layout import time_chunk
from featurestore.validate import schema_errors, validate_store


@pytest.mark.parametrize("song_id", ["song", "rock/song 1", "a/b/c", "ünïcødé ♫", "x.wav", "_x"])
def test_valid_ids(song_id):
    assert validate_song_id(song_id) == song_id


@pytest.mark.parametrize(
    "song_id",
    ["", "/abs", "../up", "a/../b", "a//b", "./a", "a/.", "C:/x", "a\\b", "nul\x00", "tab\tx", "__meta", "_failures", "a/zarr.json"],
)
def test_invalid_ids(song_id):
    with pytest.raises(InvalidSongId):
        validate_song_id(song_id)


def _attrs(dims=("time",), **extra):
    return {
        "model": "m", "sample_rate": 100, "hop_samples": 1, "t0_samples": 0, "hop_s": 0.01, "t0_s": 0.0,
        "frame_rate_hz": 100.0, "duration_s": 0.05, "n_samples": 5, "fingerprint": "0" * 64,
        "source": {"path": "s.wav", "size": 1, "mtime": 0.0, "sha256": "f" * 64}, "dims": list(dims),
        "written": "2026-01-01T00:00:00+00:00", **extra,
    }


def test_write_sets_complete_last_and_dimension_names(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.write("m", "rock/song", np.arange(10, dtype=np.float32).reshape(5, 2), _attrs(("time", "feature")))
    arr = store.array("m", "rock/song")
    assert arr is not None and arr.attrs["complete"] is True
    assert arr.dimension_names == ("time", "feature")
    assert store.songs("m") == ["rock/song"]
    assert schema_errors("array", arr.attrs) == []
    assert schema_errors("root", store.root_attrs()) == []


def test_schema_2_attributes_are_checked():
    array = {**_attrs(), "dims": ["time"], "written": "2026-01-01T00:00:00+00:00", "complete": True}
    group = {**_attrs(), "dims": ["time"], "description": "d", "variant": "v", "config": {}, "units": "u", "weights": []}
    assert schema_errors("group", {**group, "group": "m_tiny", "dtype": "float16"}) == []
    assert len(schema_errors("group", {**group, "group": "a/b", "dtype": "float64"})) == 2
    assert schema_errors("array", {**array, "dtype": "float16"}) == []
    assert len(schema_errors("array", {**array, "dtype": "int8"})) == 1
    root = {"fstore_version": "0", "created": "2026-01-01T00:00:00+00:00"}
    assert schema_errors("root", {**root, "schema_version": 3, "upgraded_from": 2}) == []
    assert len(schema_errors("root", {**root, "schema_version": 4})) == 1


def test_incomplete_array_is_invisible_and_fixable(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.ensure_model("m", {"fingerprint": "0" * 64})
    store.write("m", "done", np.ones(5, np.float32), _attrs())
    # data written, never marked complete: an interrupted write
    half = zarr.open_group(store.url)["m"].create_array("half", shape=(5,), dtype="float32", dimension_names=("time",))
    half[...] = 1.0
    assert store.songs("m") == ["done"]
    assert store.songs("m", complete_only=False) == ["done", "half"]
    assert store.array("m", "half") is None
    report = validate_store(FeatureStore(store.url, mode="r+"), fix=True)
    assert [p.kind for p in report.problems if p.where.startswith("m/")] == ["incomplete"]
    assert report.fixed == ["m/half"]
    assert FeatureStore(store.url).songs("m", complete_only=False) == ["done"]


def test_failures_are_recorded_and_cleared(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.record_failure("m", "dir/bad", "cannot decode", "AudioError", None)
    (failure,) = store.failures()
    assert failure["song_id"] == "dir/bad" and failure["error"] == "cannot decode"
    assert schema_errors("failure", failure) == []
    assert store.models() == []  # the failures node is not a model
    store.clear_failure("m", "dir/bad")
    assert store.failures() == []


def test_failures_of_invalid_ids_clear_and_go_with_their_group(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.record_failure("m", "../escape", "not a valid path", "InvalidSongId", None)
    store.record_failure("n", "x", "cannot decode", "AudioError", {"path": "x.wav"})
    assert [f["song_id"] for f in store.failures("m")] == ["../escape"]
    store.clear_failure("m", "../escape")  # stored under a derived node name: cleared through the same name
    assert [(f["model"], f["source"]) for f in store.failures()] == [("n", {"path": "x.wav"})]
    store.ensure_model("m", {"fingerprint": "0" * 64})
    store.record_failure("m", "y", "boom", "RuntimeError", None)
    assert store.replace_model("m", {"fingerprint": "1" * 64}, "a-run") == (0, 1)
    assert [f["model"] for f in FeatureStore(store.url).failures()] == ["n"]


def test_reading_a_missing_or_foreign_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no fstore store here"):
        FeatureStore(str(tmp_path / "absent.zarr"))
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_group("x")
    with pytest.raises(StoreError, match="not an fstore store"):
        FeatureStore(str(tmp_path / "other.zarr"))


def test_song_id_cannot_collide_with_a_folder(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.write("m", "a/b", np.ones(5, np.float32), _attrs())
    with pytest.raises(InvalidSongId, match="folder"):
        store.write("m", "a", np.ones(5, np.float32), _attrs())
    with pytest.raises(InvalidSongId, match="song"):
        store.write("m", "a/b/c", np.ones(5, np.float32), _attrs())
    assert store.songs("m") == ["a/b"]


def test_time_chunks_bound_memory_per_chunk():
    assert time_chunk((3000,), 0) == (3000,)
    chunk = time_chunk((13, 90000, 768), 1)
    assert chunk[0] == 13 and chunk[2] == 768 and 13 * 768 * 4 * chunk[1] <= 8 << 20


def test_store_over_fsspec_memory_url():
    store = FeatureStore("memory://fstore-test.zarr", mode="a")
    store.write("m", "s", np.ones(5, np.float32), _attrs())
    assert FeatureStore("memory://fstore-test.zarr").songs("m") == ["s"]


class DeniedFileSystem(MemoryFileSystem):
    """fsspec's in-memory store, except that once ``deny`` is set, reading anything under a folder named
    ``denied`` is refused."""

    protocol = "fstore-denied"
    deny = False

    def cat_file(self, path, start=None, end=None, **kwargs):
        if self.deny and "/denied/" in path:
            raise PermissionError(13, "Permission denied", path)
        return super().cat_file(path, start, end, **kwargs)


def test_an_unreadable_array_is_an_error_not_absent():
    """Permission or network errors must surface: read as "absent", caching would recompute everything."""
    fsspec.register_implementation(DeniedFileSystem.protocol, DeniedFileSystem, clobber=True)
    store = FeatureStore("fstore-denied://s.zarr", mode="a")
    store.write("m", "denied/a", np.ones(5, np.float32), _attrs())
    DeniedFileSystem.deny = True
    with pytest.raises(StoreError, match="Permission denied"):
        store.array("m", "denied/a")


def test_validate_surfaces_a_failing_weights_read(monkeypatch):
    """Only "weights not here / not the published ones" skips the fingerprint check; a disk error is reported."""
    from featurestore import validate
    from featurestore.errors import WeightsUnavailable

    class Ext:
        config = None

        @classmethod
        def weights_info(cls, config):
            raise WeightsUnavailable("x", "gone")

    assert validate._current_fingerprint(Ext()) is None

    class Broken(Ext):
        @classmethod
        def weights_info(cls, config):
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        validate._current_fingerprint(Broken())
