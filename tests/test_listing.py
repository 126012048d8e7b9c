"""Listing songs and failures in bulk (featurestore/_listing.py) says what a node-by-node zarr walk says."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from featurestore.store import zarr_store as store_module
from featurestore.read import open_store
from featurestore.store import FeatureStore

AXIS = {"sample_rate": 8000, "hop_samples": 80, "t0_samples": 40}


def _write(store: FeatureStore, song: str, value: float = 0.0) -> None:
    store.write("fake", song, np.full((3, 2), value, np.float32),
                {"model": "fake", "fingerprint": "x", "duration_s": 0.1, "n_samples": 800, "source": {},
                 "dims": ["time", "feature"], **AXIS})


def _walk(store: FeatureStore, model: str) -> dict[str, bool]:
    """The reference: zarr's own member walk, then the attrs of each array."""
    return {name: node.attrs.get("complete") is True
            for name, node in zarr.open_group(store.url, mode="r")[model].members(max_depth=None)
            if isinstance(node, zarr.Array)}


@pytest.fixture
def messy(tmp_path) -> FeatureStore:
    """A store with nested ids, an array without ``complete``, one with truncated metadata, and failures."""
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.ensure_model("fake", {"model": "fake", "fingerprint": "x", "dtype": "float32", **AXIS})
    for song in ("a", "rock/b", "rock/deep/c", "z"):
        _write(store, song)
    zarr.open_group(store.url)["fake"].create_array("rock/half", shape=(3, 2), dtype="float32")  # never marked
    _write(store, "broken")
    store.record_failure("fake", "bad", "boom", "DecodeError", None)
    store.record_failure("fake", "rock/worse", "boom", "DecodeError", None)
    store.record_failure("other", "x", "boom", "DecodeError", None)
    return store


def _truncate(store: FeatureStore, song: str) -> None:
    """The array's metadata as a write killed mid-way leaves it (zarr's own walk then fails)."""
    with open(f"{store.url}/fake/{song}/zarr.json", "w") as f:
        f.write('{"node_type": "arr')


def test_song_states_agree_with_the_zarr_walk(messy):
    assert messy.song_states("fake") == _walk(messy, "fake")
    _truncate(messy, "broken")
    assert messy.song_states("fake") == {"a": True, "rock/b": True, "rock/deep/c": True, "z": True,
                                         "rock/half": False, "broken": False}
    assert messy.songs("fake") == ["a", "rock/b", "rock/deep/c", "z"]
    assert messy.songs("fake", complete_only=False) == ["a", "broken", "rock/b", "rock/deep/c", "rock/half", "z"]
    assert messy.songs("absent") == []


def test_a_rewrite_in_progress_is_not_complete(messy):
    """A song rewritten (``--overwrite``) is incomplete from its new metadata until ``complete`` is set again:
    nothing cached can show it as complete."""
    assert "a" in messy.songs("fake")
    zarr.open_group(messy.url)["fake"].create_array("a", shape=(3, 2), dtype="float32", overwrite=True)
    assert "a" not in messy.songs("fake")
    _write(messy, "a", 1.0)
    assert "a" in messy.songs("fake")


def test_failures_and_info(messy):
    _truncate(messy, "broken")
    assert [(f["model"], f["song_id"]) for f in messy.failures()] == [("fake", "bad"), ("fake", "rock/worse"),
                                                                      ("other", "x")]
    assert [f["song_id"] for f in messy.failures("fake")] == ["bad", "rock/worse"]
    info = open_store(messy.url).info()
    assert info["failures"] == 3
    assert {k: info["models"]["fake"][k] for k in ("songs", "incomplete", "failed")} == {
        "songs": 4, "incomplete": 2, "failed": 2}
    from zarr.core.sync import sync

    assert info["models"]["fake"]["bytes"] == sync(zarr.open_group(messy.url).store.getsize_prefix("fake")) > 0


def test_loading_one_song_lists_nothing(messy, monkeypatch):
    def refuse(*args):
        raise AssertionError("listed the group to load one song")

    monkeypatch.setattr(store_module, "node_metadata", refuse)
    monkeypatch.setattr(zarr.Group, "members", refuse)
    reader = open_store(messy.url)
    np.testing.assert_array_equal(reader.load("rock/deep/c", "fake").values, np.zeros((3, 2), np.float32))
    with pytest.raises(KeyError):
        reader.load("rock/half", "fake")
