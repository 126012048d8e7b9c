"""The HDF5 export is a netCDF-4 file: ``ncdump``, xarray's h5netcdf engine (and so MATLAB's ``ncread``,
Panoply, any netCDF-4 reader) see each song as a group with its ``time`` coordinate in seconds and its dims
named, while ``fs.open_store`` reads it as a store; files of the previous layout (a bare dataset per song)
still read.

The exported content is the backend contract's reference (1-d, 2-d with feature names, 3-d with layers in
float16; nested and Unicode ids; failures) plus songs whose ids start a name with a space, which ``ncdump``
cannot print: they are written with a backslash in front, and a song of two frames of two features."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import featurestore as fs
from featurestore.errors import StoreError
from featurestore.export import export_hdf5
from featurestore.extractors.base import TimeAxis
from featurestore.store import FeatureStore, open_backend
from featurestore.testing import reference_array, reference_array_attrs, write_reference

DATA = Path(__file__).parent / "data"
#: songs whose ids start a path component with a space (added to the reference content, in ``pitch``)
SPACED = (" intro", "live/ encore")

requires_ncdump = pytest.mark.skipif(shutil.which("ncdump") is None,
                                     reason="ncdump is not installed (netCDF's command-line tools: Debian's netcdf-bin)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[fs.StoreReader, Path]:
    """The Zarr store (read) and its export."""
    folder = tmp_path_factory.mktemp("netcdf")
    store = FeatureStore(str(folder / "features.zarr"), mode="a")
    write_reference(store)
    for song in SPACED:
        store.write("pitch", song, reference_array("pitch", "a"), reference_array_attrs("pitch", "a"))
    # as many frames as features: only the attached dimension scales tell which dim is which
    store.write("pitch", "duo", reference_array("pitch", "a")[:2], {**reference_array_attrs("pitch", "a"), "shape": [2, 2]})
    store.record_failure("beat", " intro", "cannot decode: not audio", "AudioError", None)
    export_hdf5(store, folder / "features.h5")
    return fs.open_store(store.url), folder / "features.h5"


def _songs(reader: fs.StoreReader) -> list[tuple[str, str]]:
    return [(model, song) for model in reader.models() for song in reader.songs(model)]


def _group(model: str, song: str) -> str:
    """A song's netCDF group, as the README says: a component that starts with a space gets a backslash in front."""
    return "/".join(["\\" + part if part.startswith(" ") else part for part in f"{model}/{song}".split("/")])


def _cdl_groups(cdl: str) -> dict[str, str]:
    """``ncdump -h``'s CDL split by group: the group's path (its names unescaped) -> the lines directly in it."""
    groups: dict[str, list[str]] = {"": []}
    path: list[str] = []
    for line in cdl.splitlines():
        opened = re.fullmatch(r"\s*group: (.*) \{", line)
        if opened:
            path.append(re.sub(r"\\(.)", r"\1", opened.group(1)))
            groups["/".join(path)] = []
        elif re.fullmatch(r"\s*\} // group .*", line):
            path.pop()
        else:
            groups["/".join(path)].append(line.strip())
    return {name: "\n".join(lines) for name, lines in groups.items()}


@requires_ncdump
def test_ncdump_shows_every_song_with_its_time_in_seconds_and_named_dims(exported):
    reader, h5 = exported
    done = subprocess.run(["ncdump", "-h", str(h5)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "phony_dim" not in done.stdout
    groups = _cdl_groups(done.stdout)
    assert {" intro", "live/ encore"} <= set(reader.songs("pitch"))
    for model, song in _songs(reader):
        da = reader.load(song, model)
        cdl = groups[_group(model, song)]
        where = f"{model}/{song}"
        assert f"time = {da.sizes['time']} ;" in cdl, where
        assert "double time(time) ;" in cdl and 'time:units = "s" ;' in cdl, where
        assert f"float features({', '.join(da.dims)}) ;" in cdl, where
        assert f'string :song_id = "{song}" ;' in cdl, where
        for dim in set(da.dims) - {"time"}:
            assert f"{dim} = {da.sizes[dim]} ;" in cdl, where
    assert "string feature(feature) ;" in groups["pitch/a"] and "int64 layer(layer) ;" in groups["embed/a"]
    assert "feature(feature)" not in groups["embed/a"]  # a dim without labels is a bare netCDF dimension
    assert 'string :song_id = " intro" ;' in groups["_failures/beat/\\ intro"]


def test_each_dim_is_a_dimension_scale_attached_to_the_song(exported):
    """netCDF-4's dimensions, written as the format says (readers that guess unattached dims by their length
    would not tell ``duo``'s two dims of 2 apart)."""
    reader, h5 = exported
    import h5py

    with h5py.File(h5, "r") as f:
        for model, song in _songs(reader):
            variable = f[f"{_group(model, song)}/features"]
            attached = [[scale.name for scale in variable.dims[axis].values()] for axis in range(variable.ndim)]
            assert attached == [[f"/{_group(model, song)}/{dim}"] for dim in reader.load(song, model).dims], song
        assert f["pitch/duo/time"].attrs["NAME"] == b"time"
        assert f["embed/a/feature"].attrs["NAME"].startswith(b"This is a netCDF dimension but not a netCDF variable.")


@requires_ncdump
def test_netcdf_reads_the_values_through_the_filters(exported):
    """netCDF-C itself (as in MATLAB's ncread) decompresses and checks the values and times."""
    reader, h5 = exported
    song = "café ♪"
    done = subprocess.run(["ncdump", "-v", f"/pitch/{song}/time,/pitch/{song}/features", str(h5)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = _cdl_groups(done.stdout)[f"pitch/{song}"].split("data:")[1]
    values = {name: np.array(text.replace("\n", " ").split(","), dtype=float)
              for name, text in re.findall(r"^(time|features) =\s*(.*?) ;", data, re.M | re.S)}
    da = reader.load(song, "pitch")
    np.testing.assert_allclose(values["time"], da["time"].values, rtol=1e-14)
    np.testing.assert_allclose(values["features"], da.values.ravel(), rtol=1e-6)


def test_xarray_opens_each_song_with_the_time_of_load(exported):
    pytest.importorskip("h5netcdf", reason="h5netcdf is not installed (pip install 'fstore-audio[netcdf]')")
    reader, h5 = exported
    for model, song in _songs(reader):
        da = reader.load(song, model)
        with xr.open_dataset(h5, group=_group(model, song), engine="h5netcdf") as ds:
            where = f"{model}/{song}"
            assert ds["features"].dims == da.dims and ds.attrs["song_id"] == song, where
            assert ds["time"].dtype == np.float64 and ds["time"].attrs["units"] == "s", where
            np.testing.assert_array_equal(ds["time"].values, da["time"].values, err_msg=where)
            np.testing.assert_array_equal(ds["features"].values.astype(np.float32), da.values, err_msg=where)
            assert fs.decode_attrs(ds["features"].attrs) == {**fs.decode_attrs(da.attrs), "complete": True}, where
            for dim in set(da.dims) - {"time"}:
                assert (dim in ds.coords) == (dim in da.coords), where
                if dim in da.coords:
                    assert list(ds[dim].values) == list(da[dim].values), where
    with xr.open_dataset(h5, group="embed/a", engine="h5netcdf") as ds:
        assert ds["features"].dtype == np.float16 and list(ds["layer"].values) == [4, 12]


def test_open_store_reads_the_export_as_the_store(exported):
    reader, h5 = exported
    import h5py

    with h5py.File(h5, "r") as f:
        assert f.attrs["hdf5_layout"] == 2
    with fs.open_store(str(h5)) as back:
        assert "hdf5_layout" not in back.backend.root_attrs()  # the file's, not the store's
        assert back.models() == reader.models()
        for model in reader.models():
            assert back.songs(model) == reader.songs(model)
        for model, song in _songs(reader):
            got, want = back.load(song, model), reader.load(song, model)
            xr.testing.assert_identical(got, want)
        assert back.failures() == reader.failures()


@pytest.mark.skipif(shutil.which("nccopy") is None, reason="nccopy is not installed (netCDF's command-line tools: Debian's netcdf-bin)")
def test_a_copy_made_by_nccopy_reads_as_the_export(tmp_path):
    """netCDF-C rewrites every attribute as a one-element array and adds its own (_NCProperties): fs.open_store
    reads the copy as the export it came from. (nccopy refuses names that do not start with a letter, a digit
    or _, such as the escaped " intro": the reference content has none.)"""
    store = FeatureStore(str(tmp_path / "features.zarr"), mode="a")
    write_reference(store)
    h5, copy = tmp_path / "features.h5", tmp_path / "copy.h5"
    export_hdf5(store, h5)
    subprocess.run(["nccopy", "-k", "nc4", str(h5), str(copy)], check=True, capture_output=True)
    with fs.open_store(str(h5)) as original, fs.open_store(str(copy)) as back:
        assert back.backend.root_attrs() == original.backend.root_attrs()
        assert back.models() == original.models()
        for model in original.models():
            assert back.model_attrs(model) == original.model_attrs(model)
            assert back.songs(model) == original.songs(model)
            for song in original.songs(model):
                xr.testing.assert_identical(back.load(song, model), original.load(song, model))
        assert back.failures() == original.failures() != []


def test_a_file_of_the_previous_layout_still_reads(tmp_path):
    """tests/data/export1.h5 was written by the previous release's export (a dataset per song, no clock that netCDF
    tools see); read as it is, and exported again into the netCDF layout."""
    old = tmp_path / "old.h5"
    shutil.copy(DATA / "export1.h5", old)
    import h5py

    with h5py.File(old, "r") as f:
        assert "hdf5_layout" not in f.attrs and isinstance(f["fake/rock/deep/c"], h5py.Dataset)
        stored = f["fake/a"][...]
    with fs.open_store(str(old)) as reader:
        assert reader.models() == ["fake", "slow"]
        assert reader.songs("fake") == reader.songs("slow") == ["a", "café ♪", "rock/deep/c"]
        da = reader.load("a", "fake")
        assert da.dims == ("time", "feature") and list(da["feature"].values) == ["rms", "mean"]
        np.testing.assert_array_equal(da["time"].values, TimeAxis(8000, 80, 40).times(100))
        np.testing.assert_array_equal(da.values, stored)
        np.testing.assert_allclose(da.sel(feature="rms").values, 0.3 / np.sqrt(2), rtol=0.02)  # a 0.3 sine's RMS
        assert fs.decode_attrs(da.attrs)["source"]["path"] == "a.wav"
        assert reader.load("rock/deep/c", "slow").shape == (5,)
        assert [(f["model"], f["song_id"]) for f in reader.failures()] == [("fake", "bad"), ("slow", "bad")]
        export_hdf5(reader.backend, tmp_path / "new.h5")
    with h5py.File(tmp_path / "new.h5", "r") as f:
        np.testing.assert_array_equal(f["fake/café ♪/time"][...], TimeAxis(8000, 80, 40).times(25))
    with fs.open_store(str(tmp_path / "new.h5")) as again:
        np.testing.assert_array_equal(again.load("a", "fake").values, stored)


def test_a_file_of_a_newer_layout_is_refused(tmp_path, exported):
    _, h5 = exported
    newer = tmp_path / "newer.h5"
    shutil.copy(h5, newer)
    import h5py

    with h5py.File(newer, "r+") as f:
        f.attrs["hdf5_layout"] = 3
    with pytest.raises(StoreError, match="newer fstore"):
        open_backend(newer)
