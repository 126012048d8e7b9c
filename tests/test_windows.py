"""FeatureWindows: fixed-length windows of a store as a torch Dataset. Each item is the window's slice of
load (own clocks) or of load_song (aligned), the index comes from metadata alone, an item reads only its
chunks, and DataLoader workers (fork and spawn; Zarr, HDF5 and S3) give what the main process gives."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import ConcatDataset, DataLoader, Subset

import featurestore as fs
from featurestore.clock import TimeAxis, nearest_frames
from featurestore.errors import CorruptArray
from featurestore.export import export_hdf5
from featurestore.store import FeatureStore
from featurestore.torch import FeatureWindows, collate_windows

from .helpers import moto_s3, write_group

EMB = TimeAxis(48000, 4800, 0)  # 10 Hz, like OpenL3
ACT = TimeAxis(44100, 441, 0)  # 100 Hz, like madmom
MERT = TimeAxis(24000, 320, 200)  # 75 Hz, first frame at 1/120 s
#: frames per song: the 10-Hz model ends first, the last song is shorter than one window
SONGS = {"a": {"emb": 30, "act": 305, "mert": 228}, "b/c": {"emb": 23, "act": 241, "mert": 180},
         "d": {"emb": 9, "act": 95, "mert": 70}}
MODELS = ["emb", "act", "mert"]
FRAMES = {"emb": 10, "act": 100, "mert": 75}  # in a 1-s window


def write_store(store: FeatureStore) -> None:
    rng = np.random.default_rng(7)
    write_group(store, "emb", {s: rng.standard_normal((n["emb"], 4)).astype(np.float32) for s, n in SONGS.items()},
                ("time", "feature"), EMB)
    write_group(store, "act", {s: rng.random(n["act"]).astype(np.float32) for s, n in SONGS.items()}, ("time",), ACT)
    write_group(store, "mert", {s: rng.standard_normal((2, n["mert"], 3)).astype(np.float32) for s, n in SONGS.items()},
                ("layer", "time", "feature"), MERT, coords={"layer": [6, 12]})


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("windows") / "s.zarr")
    write_store(FeatureStore(path, mode="a"))
    return path


@pytest.fixture(scope="module")
def h5(url, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("export") / "s.h5"
    export_hdf5(FeatureStore(url), out)
    return str(out)


def rows(da: xr.DataArray) -> np.ndarray:
    return da.transpose("time", ...).values


@pytest.mark.parametrize("pad", ["drop", "nan"])
def test_items_on_their_own_clocks_are_load_of_the_window(url, pad):
    windows = FeatureWindows(url, MODELS, window_s=1.0, hop_s=0.5, pad=pad)
    reader = fs.open_store(url)
    assert windows.songs == ["a", "b/c", "d"]
    for song in windows.songs:
        # the windows kept, found by reading every candidate in full
        expected = []
        for j in range(12):
            counts = [reader.load(song, m, start=j * 0.5, end=j * 0.5 + 1).sizes["time"] for m in MODELS]
            if (pad == "drop" and counts == [FRAMES[m] for m in MODELS]) or (pad == "nan" and any(counts)):
                expected.append(j * 0.5)
        assert [windows.window(i) for i in windows.indices(song)] == [(song, s) for s in expected]
    assert [len(windows.indices(s)) for s in windows.songs] == ([5, 3, 0] if pad == "drop" else [7, 5, 2])
    for i in range(len(windows)):
        item = windows[i]
        assert (item["song_id"], item["start_s"]) == windows.window(i)
        for model in MODELS:
            want = rows(reader.load(item["song_id"], model, start=item["start_s"], end=item["start_s"] + 1.0))
            got = item[model].numpy()
            assert got.dtype == np.float32 and got.shape == (FRAMES[model],) + want.shape[1:]
            np.testing.assert_array_equal(got[: len(want)], want)
            assert np.isnan(got[len(want):]).all()


@pytest.mark.parametrize("pad", ["drop", "nan"])
def test_aligned_items_are_the_window_of_load_song(url, pad):
    windows = FeatureWindows(url, ["emb", "mert"], window_s=1.0, hop_s=0.5, align="act", pad=pad)
    assert windows.models == ["emb", "mert", "act"]  # the target is read too, as load_song does
    reader = fs.open_store(url)
    for song in windows.songs:
        whole = reader.load_song(song, windows.models, align="act")
        expected = []
        for j in range(12):
            part = whole.sel(time=(whole["time"] >= j * 0.5) & (whole["time"] < j * 0.5 + 1))
            full = part.sizes["time"] == 100 and not any(np.isnan(part[m].values).any() for m in windows.models)
            if (pad == "drop" and full) or (pad == "nan" and part.sizes["time"]):
                expected.append(j * 0.5)
        assert [windows.window(i) for i in windows.indices(song)] == [(song, s) for s in expected]
    assert len(windows) == (5 if pad == "drop" else 14)
    for i in range(len(windows)):
        item = windows[i]
        start = item["start_s"]
        whole = reader.load_song(item["song_id"], windows.models, align="act")
        part = whole.sel(time=(whole["time"] >= start) & (whole["time"] < start + 1.0))
        direct = reader.load_song(item["song_id"], windows.models, align="act", start=start, end=start + 1.0)
        for model in windows.models:
            # load_song of the window is the window of load_song: no NaN at its edges from a frame just outside
            np.testing.assert_array_equal(rows(direct[model]), rows(part[model]))
            got = item[model].numpy()
            assert got.shape == (100,) + rows(part[model]).shape[1:]
            np.testing.assert_array_equal(got[: part.sizes["time"]], rows(part[model]))
            assert np.isnan(got[part.sizes["time"]:]).all()


def test_a_window_holds_whole_frames_of_every_clock_it_is_read_on(url):
    with pytest.raises(ValueError, match=r"holds 5.5 of emb's, 41.25 of mert's frames.*multiple of 0.2 s"):
        FeatureWindows(url, MODELS, window_s=0.55)
    aligned = FeatureWindows(url, MODELS, window_s=0.55, hop_s=0.3, align="act")  # 55 frames of the target
    assert {tuple(t.shape[:1]) for k, t in aligned[0].items() if k in MODELS} == {(55,)}
    # MERT's first frame (1/120 s) is more than half its hop from 0 s: the first window would hold a NaN
    assert aligned.window(0) == ("a", 0.3)
    with pytest.raises(ValueError, match="pad must be"):
        FeatureWindows(url, MODELS, window_s=1.0, pad="zero")
    with pytest.raises(KeyError, match="'nope'"):
        FeatureWindows(url, ["emb", "nope"], window_s=1.0)


def test_the_index_is_read_from_metadata_alone(url, tmp_path):
    """A copy of the store without a single chunk has the same windows."""
    bare = tmp_path / "bare.zarr"
    shutil.copytree(url, bare)
    chunks = [p for p in bare.rglob("c") if p.is_dir() and not (p / "zarr.json").exists()]  # not song b/c
    assert chunks
    for folder in chunks:
        shutil.rmtree(folder)
    for align in (None, "act"):
        full = FeatureWindows(url, MODELS, window_s=1.0, hop_s=0.25, align=align)
        index = FeatureWindows(str(bare), MODELS, window_s=1.0, hop_s=0.25, align=align)
        assert len(index) == len(full) > 0
        assert [index.window(i) for i in range(len(index))] == [full.window(i) for i in range(len(full))]
        with pytest.raises(CorruptArray, match="missing chunk"):  # the items need the chunks, never read as zeros
            index[0]


def test_an_item_reads_only_the_chunks_of_its_window(tmp_path, monkeypatch):
    from zarr.storage import LocalStore

    store = FeatureStore(str(tmp_path / "big.zarr"), mode="a")
    # 8192 features: 128 frames per 4-MiB chunk, so a 6-s song at 100 Hz spans 5 chunks
    wide = np.repeat(np.arange(600, dtype=np.float32)[:, None], 8192, axis=1)
    write_group(store, "wide", {"song": wide}, ("time", "feature"), ACT)
    write_group(store, "emb", {"song": np.zeros((60, 4), np.float32)}, ("time", "feature"), EMB)
    read: list[str] = []
    get = LocalStore.get

    async def counting(self, key, *args, **kwargs):
        read.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting)
    for align in (None, "wide", "emb"):
        windows = FeatureWindows(store.url, ["wide", "emb"], window_s=1.0, align=align)
        read.clear()
        item = windows[2]  # 2.0 s to 3.0 s: frames 200..299, in chunks 1 (128..255) and 2 (256..383)
        assert sorted(k for k in read if k.startswith("wide/song/c/")) == ["wide/song/c/1/0", "wide/song/c/2/0"]
        assert item["start_s"] == 2.0 and float(item["wide"][0, 0]) == 200
        read.clear()
        windows[2]  # again: the arrays are open, only their chunks are read
        assert sorted(read) == ["emb/song/c/0/0", "wide/song/c/1/0", "wide/song/c/2/0"]


def assert_same_batches(serial: list, parallel: list, models: list[str]) -> None:
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel):
        assert a["song_id"] == b["song_id"] and torch.equal(a["start_s"], b["start_s"])
        for model in models:
            np.testing.assert_array_equal(a[model].numpy(), b[model].numpy())
            assert torch.equal(a["mask"][model], b["mask"][model])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_see_what_the_main_process_sees(url, h5, method):
    """Two workers on a Zarr store and on an HDF5 export whose file the main process has open, and has read,
    before the fork; the dataset given a StoreReader keeps only its URL."""
    import multiprocessing as mp

    both = ConcatDataset([FeatureWindows(store, ["emb", "mert"], window_s=1.0, hop_s=0.5, align="act", pad="nan")
                          for store in (url, fs.open_store(h5))])
    for windows in both.datasets:
        windows[0]  # the main process opens its own handle: a forked worker must not use it
    assert len(both) == 28
    serial = list(DataLoader(both, batch_size=3, collate_fn=collate_windows))
    parallel = list(DataLoader(both, batch_size=3, collate_fn=collate_windows, num_workers=2,
                               multiprocessing_context=mp.get_context(method)))
    assert_same_batches(serial, parallel, ["emb", "mert", "act"])


@pytest.fixture(scope="module")
def s3_store():
    """(url, storage_options) of the test store written to a moto S3 server."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fstore[s3]')")
    pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")
    with moto_s3("fstore-windows") as s3:
        remote = "s3://fstore-windows/w.zarr"
        write_store(FeatureStore(remote, mode="a", storage_options=s3))
        yield remote, s3


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_workers_read_a_store_on_s3(url, s3_store, method):
    """A fork copies the main process's S3 session (its event loop, its connections): each worker opens its own."""
    import multiprocessing as mp

    remote, s3 = s3_store
    here = FeatureWindows(url, MODELS, window_s=1.0, hop_s=0.5)
    there = FeatureWindows(remote, MODELS, window_s=1.0, hop_s=0.5, storage_options=s3)
    assert [there.window(i) for i in range(len(there))] == [here.window(i) for i in range(len(here))]
    there[0]  # the main process's session exists before the fork
    serial = list(DataLoader(here, batch_size=3, collate_fn=collate_windows))
    parallel = list(DataLoader(there, batch_size=3, collate_fn=collate_windows, num_workers=2,
                               multiprocessing_context=mp.get_context(method)))
    assert len(serial) == 3
    assert_same_batches(serial, parallel, MODELS)


def test_collate_stacks_items_with_masks(url):
    windows = FeatureWindows(url, MODELS, window_s=1.0, pad="nan")
    last = windows.indices("a")[-1]  # 3.0 s to 4.0 s: act has 5 frames, emb none, mert 3
    batch = collate_windows([windows[0], windows[last]])
    assert batch["song_id"] == ["a", "a"] and batch["start_s"].tolist() == [0.0, 3.0]
    assert batch["start_s"].dtype == torch.float64
    assert tuple(batch["emb"].shape) == (2, 10, 4) and tuple(batch["mert"].shape) == (2, 75, 2, 3)
    assert {m: batch["mask"][m].sum(dim=1).tolist() for m in MODELS} == {"emb": [10, 0], "act": [100, 5], "mert": [75, 3]}
    filled = collate_windows([windows[0], windows[last]], fill=0.0)
    assert not torch.isnan(filled["act"]).any() and filled["act"][1, 5:].eq(0).all()
    assert torch.equal(filled["act"][1, :5], batch["act"][1, :5])
    dropped = collate_windows([FeatureWindows(url, MODELS, window_s=1.0)[i] for i in range(3)])
    assert all(mask.all() for mask in dropped["mask"].values())


def test_the_index_splits_by_song(url):
    windows = FeatureWindows(url, MODELS, window_s=1.0, hop_s=0.25)
    train = Subset(windows, [i for song in ("a", "d") for i in windows.indices(song)])
    assert {train[i]["song_id"] for i in range(len(train))} == {"a"}  # d is too short for a window
    starts = [windows.window(i)[1] for i in windows.indices("b/c")]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert windows.window(-1) == windows.window(len(windows) - 1)
    with pytest.raises(IndexError):
        windows[len(windows)]
    only = FeatureWindows(url, MODELS, window_s=1.0, songs=["b/c"])
    assert only.songs == ["b/c"] and len(only) == 2
    with pytest.raises(KeyError, match="lack"):
        FeatureWindows(url, MODELS, window_s=1.0, songs=["b/c", "zz"])


def test_nearest_frames_is_xarray_nearest_reindex():
    """Ties (a 100-Hz time halfway between two 10-Hz frames), times beyond either end, a t0 offset."""
    for source_axis, target_axis, n_source, n_target in ((EMB, ACT, 30, 320), (MERT, ACT, 200, 290), (ACT, MERT, 250, 200)):
        source, target = source_axis.times(n_source), target_axis.times(n_target, first=-3)
        hop = source_axis.hop_s
        da = xr.DataArray(np.arange(n_source, dtype=np.float64), dims="time", coords={"time": source})
        want = da.reindex(time=target, method="nearest", tolerance=hop / 2 + 1e-9).values
        got = nearest_frames(source, target, hop)
        np.testing.assert_array_equal(np.where(got >= 0, got, np.nan), want)
        assert (got == -1).any() and (got >= 0).any()


def test_reading_a_store_imports_no_torch():
    code = ("import sys, featurestore as fs, featurestore.read, featurestore.layers, featurestore.windows; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
