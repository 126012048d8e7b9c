"""What the store promises: the HDF5 export's file handling, the clock in every export, writable attributes,
slices and collections, one configuration per group on the command line, stores of the previous schema."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import xarray as xr

import featurestore as fs
import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.extractors.base import TimeAxis
from featurestore.store import SCHEMA_VERSION, FeatureStore
from featurestore.validate import schema_errors

from .conftest import write_wav
from .helpers import fstore

DATA = Path(__file__).parent / "data"



def _loaded(*names, **options):
    exts = [registry.create(n, **options) for n in names]
    for e in exts:
        e.load("cpu")
    return exts


LAYERED = TimeAxis(24000, 320, 200)  # MERT's clock


@pytest.fixture
def full_store(tmp_path, fake_models):
    """A store with 1-D (slow), 2-D (fake) and 3-D (layer, time, feature) arrays, songs of different lengths,
    and a recorded failure."""
    audio = tmp_path / "audio"
    write_wav(audio / "long.wav", 3.0)
    write_wav(audio / "sub" / "short.wav", 1.2)
    (audio / "bad.wav").write_text("not audio")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    fsrun.run(store, discover(audio).files, _loaded("fake", "slow"))
    layered = {**store.model_attrs("fake"), "model": "layered", "dims": ["layer", "time", "feature"],
               "coords": {"layer": [4, 12]}, "feature_names": None, **LAYERED.as_attrs()}
    store.ensure_model("layered", layered)
    rng = np.random.default_rng(0)
    for song, frames in (("long", 224), ("sub/short", 89)):
        attrs = {"model": "layered", **LAYERED.as_attrs(), "duration_s": frames / 75, "n_samples": frames * 320,
                 "source": {"path": f"{song}.wav", "size": 1, "mtime": 0.0, "sha256": "0" * 64},
                 "fingerprint": layered["fingerprint"], "coords": {"layer": [4, 12]}, "dtype": "float32"}
        store.write("layered", song, rng.standard_normal((2, frames, 8)).astype(np.float32),
                    {**attrs, "dims": ["layer", "time", "feature"]})
    return store


def test_hdf5_export_is_atomic_and_refuses_to_overwrite(tmp_path, full_store):
    """What the CLI's export adds to the HDF5 backend (whose reads the backend contract checks): a file
    renamed into place with the user's file mode, never replaced without --overwrite, of the groups asked."""
    out = tmp_path / "features.h5"
    result = fstore("export-hdf5", out, "--store", full_store.url)
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".features.h5.*")), "the temporary file must be renamed away"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's private mode
    exported = out.read_bytes()
    assert fstore("export-hdf5", out, "--store", full_store.url).exit_code == 4  # exists: refused
    assert out.read_bytes() == exported
    assert fstore("export-hdf5", out, "--store", full_store.url, "--overwrite", "-m", "slow").exit_code == 0
    with fs.open_store(str(out)) as h5:
        assert h5.models() == ["slow"]


def test_npy_export_writes_the_clock_beside_the_files(tmp_path, full_store):
    out = tmp_path / "npy"
    assert fstore("export-npy", "--store", full_store.url, "--output-base", out).exit_code == 0
    with open(out / "layered" / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["song_id"] for r in rows] == ["long", "sub/short"]
    assert rows[0]["n_frames"] == "224" and float(rows[0]["t0_s"]) == 200 / 24000
    assert float(rows[0]["hop_s"]) == pytest.approx(1 / 75) and rows[0]["sample_rate"] == "24000"
    with open(out / "fake" / "index.csv", newline="") as f:
        fake = {r["song_id"]: r for r in csv.DictReader(f)}
    assert fake["long"]["source_path"] == "long.wav" and fake["long"]["n_frames"] == "300"
    assert fake["long"]["fingerprint"] == full_store.model_attrs("fake")["fingerprint"]
    # the .npy files themselves stay the classic bare float32 arrays
    a = np.load(out / "fake" / "long.npy")
    assert a.dtype == np.float32 and a.shape == (300, 2)


def test_loaded_arrays_write_to_netcdf_and_zarr(tmp_path, full_store):
    reader = fs.open_store(full_store.url)
    da = reader.load("long", "fake")
    da.to_netcdf(tmp_path / "a.nc")
    back = xr.open_dataarray(tmp_path / "a.nc")
    assert fs.decode_attrs(back.attrs)["source"]["path"] == "long.wav"
    np.testing.assert_array_equal(back.values, da.values)
    da.to_dataset(name="fake").to_zarr(tmp_path / "a.zarr", mode="w")
    reader.load_song("long").to_netcdf(tmp_path / "song.nc")
    assert fs.decode_attrs(xr.open_dataset(tmp_path / "song.nc")["layered"].attrs)["coords"] == {"layer": [4, 12]}


def test_slices_take_the_frames_centred_in_the_interval(full_store):
    reader = fs.open_store(full_store.url)
    whole = reader.load("long", "fake")  # t = 0.005 + 0.01 i
    part = reader.load("long", "fake", start=1.0, end=1.5)
    assert part["time"].values[0] == pytest.approx(1.005) and part["time"].values[-1] == pytest.approx(1.495)
    np.testing.assert_array_equal(part.values, whole.sel(time=slice(1.0, 1.4999)).values)
    assert reader.load("long", "fake", start=5.0).sizes["time"] == 0
    assert reader.load("long", "fake", lazy=True, end=0.5).compute().sizes["time"] == 50
    ds = reader.load_song("long", start=1.0, end=2.0)
    assert ds.sizes["time_slow"] == 10 and ds.sizes["time_fake"] == 100


def test_a_short_slice_of_a_long_array_reads_few_chunks(tmp_path, fake_models, monkeypatch):
    from zarr.storage import LocalStore

    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    frames = 60 * 75 * 20  # 20 minutes of 768-d frames at 75 Hz: 276 MB in 4 MiB chunks
    data = np.zeros((frames, 768), np.float32)
    data[:, 0] = np.arange(frames)
    attrs = {"model": "m", **LAYERED.as_attrs(), "duration_s": 1200.0, "n_samples": frames * 320}
    store.write("m", "long", data, {**attrs, "dims": ["time", "feature"]})
    n_chunks = len(list((tmp_path / "s.zarr" / "m" / "long" / "c").iterdir()))
    reads = []
    real_get = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        reads.append(key)
        return await real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    da = fs.open_store(str(tmp_path / "s.zarr")).load("long", "m", start=600.0, end=610.0)
    chunk_reads = [k for k in reads if "/c/" in k]
    assert n_chunks >= 60 and 1 <= len(chunk_reads) <= 2, (n_chunks, chunk_reads)
    assert da.values[0, 0] == np.ceil((600.0 * 24000 - 200) / 320)


def test_pooled_and_stacked_collections(full_store):
    reader = fs.open_store(full_store.url)
    mean = reader.pooled("fake")
    assert mean.dims == ("song", "feature") and list(mean["song"].values) == ["long", "sub/short"]
    np.testing.assert_allclose(mean.sel(song="long").values, reader.load("long", "fake").mean("time").values, rtol=1e-6)
    assert list(mean["n_frames"].values) == [300, 120]
    layered = reader.pooled("layered", stat="std")
    assert layered.dims == ("song", "layer", "feature") and list(layered["layer"].values) == [4, 12]
    np.testing.assert_allclose(layered.sel(song="sub/short").values,
                               reader.load("sub/short", "layered").std("time").values, rtol=1e-5)
    for stat in ("min", "max"):
        np.testing.assert_allclose(reader.pooled("slow", stat=stat).values,
                                   [getattr(reader.load(s, "slow").values, stat)() for s in ("long", "sub/short")])
    with pytest.raises(ValueError, match="stat"):
        reader.pooled("fake", stat="median")
    stacked = reader.stack("fake")
    assert stacked.dims == ("song", "time", "feature") and stacked.shape == (2, 300, 2)
    assert list(stacked["length"].values) == [300, 120]
    assert np.isnan(stacked.values[1, 120:]).all() and not np.isnan(stacked.values[1, :120]).any()
    np.testing.assert_array_equal(stacked["time"].values, reader.load("long", "fake")["time"].values)
    assert reader.stack("layered").dims == ("song", "time", "layer", "feature")


def test_info_shows_size_and_group_origin(tmp_path, full_store):
    summary = fs.open_store(full_store.url).info()["models"]
    assert summary["fake"]["bytes"] > 0 and summary["layered"]["model"] == "layered"
    result = fstore("info", full_store.url)
    assert result.exit_code == 0 and "KiB" in result.output and "float32" in result.output


def test_cli_refuses_another_configuration_and_offers_as_and_overwrite(tmp_path, fake_models):
    from dataclasses import dataclass

    from tests.fakes import FakeConfig, FakeFrames

    @dataclass(frozen=True)
    class Gain3(FakeConfig):
        gain: float = 3.0

    class LouderFake(FakeFrames):
        Config = Gain3

    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 1.0)
    write_wav(audio / "b.wav", 0.5)
    store = tmp_path / "s.zarr"
    first = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake")
    assert first.exit_code == 0 and "2 (song, model) pairs to compute, 0 cached" in first.output
    again = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake")
    assert again.exit_code == 0 and "0 (song, model) pairs to compute, 2 cached" in again.output
    written = FeatureStore(str(store)).song_attrs("fake", "a")["written"]

    # another option value: refused before any work, with both values and the ways out
    registry.register("fake", LouderFake)  # the same model run with another option value
    refused = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake")
    assert refused.exit_code == 2
    assert "gain" in refused.output and "1.0" in refused.output and "3.0" in refused.output
    assert "--overwrite" in refused.output and "--as" in refused.output
    assert FeatureStore(str(store)).song_attrs("fake", "a")["written"] == written
    half = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake", "--dtype", "float16")
    assert half.exit_code == 2 and "dtype" in half.output

    side = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake", "--as", "fake_x3")
    assert side.exit_code == 0, side.output
    assert fs.open_store(str(store)).models() == ["fake", "fake_x3"]
    assert fstore("validate", store).exit_code == 0  # the --as group is checked against its own model
    assert fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake,slow", "--as", "x").exit_code == 2

    replaced = fstore("extract", "--audio-dir", audio, "--store", store, "-m", "fake", "--overwrite")
    assert replaced.exit_code == 0 and "removed 2 arrays" in replaced.output
    assert FeatureStore(str(store)).model_attrs("fake")["config"] == {"gain": 3.0}


def _old_audio(folder: Path) -> Path:
    """The files the schema-1 fixture store was made from (same bytes, so their checksums match)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 8000
    sf.write(folder / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 8000)
    sf.write(folder / "b.wav", (0.2 * np.sin(2 * np.pi * 220 * t[:4000])).astype("float32"), 8000)
    (folder / "bad.wav").write_text("not audio")
    return folder


def test_a_store_of_the_previous_schema_is_read_and_upgraded(tmp_path, fake_models):
    old = tmp_path / "old.zarr"
    shutil.copytree(DATA / "schema1.zarr", old)
    reader = fs.open_store(str(old))
    assert reader.songs("fake") == ["a", "b"] and reader.load("a", "fake").shape == (100, 2)
    assert json.loads((old / "zarr.json").read_text())["attributes"]["schema_version"] == 1  # reading changes nothing
    summary = fsrun.run(FeatureStore(str(old), mode="a"), discover(_old_audio(tmp_path / "audio")).files,
                           _loaded("fake", "slow"))
    assert summary.totals["fake"].cached == 2 and summary.totals["fake"].done == 0
    attrs = json.loads((old / "zarr.json").read_text())["attributes"]
    assert attrs["schema_version"] == SCHEMA_VERSION and attrs["upgraded_from"] == 1
    assert schema_errors("root", attrs) == []
    assert fs.open_store(str(old)).load("b", "slow").shape == (5,)
