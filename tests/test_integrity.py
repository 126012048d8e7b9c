"""What is stored can be trusted: every chunk carries a checksum, damage is named by every reader (never
read as zeros, never a raw traceback, never exit 0 with a damaged song in the output), ``validate`` reads
everything and ``validate --fix`` then ``extract`` bring the store back to an undamaged run's."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import featurestore as fs
from featurestore.errors import CorruptArray, DamagedSongsWarning, StoreError
from featurestore.store import FeatureStore

from .conftest import write_wav
from .fakes import assert_same_contents
from .helpers import fstore, output

SONGS = ("a", "b", "c")
VICTIM = "b"


def _chunk(store: Path, group: str = "fake", song: str = VICTIM) -> Path:
    (path,) = [p for p in (store / group / song / "c").rglob("*") if p.is_file()]
    return path


def truncate_chunk(store: Path) -> str:
    data = _chunk(store).read_bytes()
    _chunk(store).write_bytes(data[: len(data) // 2])
    return "checksum mismatch"


def flip_a_byte(store: Path) -> str:
    data = bytearray(_chunk(store).read_bytes())
    data[len(data) // 2] ^= 0xFF
    _chunk(store).write_bytes(bytes(data))
    return "checksum mismatch"


def delete_chunk(store: Path) -> str:
    _chunk(store).unlink()
    return "missing chunk"


def junk_metadata(store: Path) -> str:
    (store / "fake" / VICTIM / "zarr.json").write_bytes(b"\x00\xffnot metadata at all")
    return "unreadable metadata"


def delete_metadata(store: Path) -> str:
    (store / "fake" / VICTIM / "zarr.json").unlink()
    return "unreadable metadata"


def change_shape(store: Path) -> str:
    meta = store / "fake" / VICTIM / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"][0] -= 1  # what it says no longer is what was written
    meta.write_text(json.dumps(doc))
    return "shape mismatch"


DAMAGE = [truncate_chunk, flip_a_byte, delete_chunk, junk_metadata, delete_metadata, change_shape]


def _run(audio: Path, store: Path):
    return fstore("extract", audio, "--store", store, "--models", "fake,slow")


@pytest.fixture
def made(tmp_path, fake_models):
    """(audio folder, a store made by fstore extract, an undamaged copy of it)."""
    for i, song in enumerate(SONGS):
        write_wav(tmp_path / "audio" / f"{song}.wav", 0.5, freq=200.0 + 100 * i)
    store = tmp_path / "s.zarr"
    assert _run(tmp_path / "audio", store).exit_code == 0
    shutil.copytree(store, tmp_path / "reference.zarr")
    return tmp_path / "audio", store, tmp_path / "reference.zarr"


def _contents(store: Path) -> dict:
    s = FeatureStore(str(store))
    return {(m, song): (s.array(m, song)[...], {k: v for k, v in s.array(m, song).attrs.items() if k != "written"})
            for m in ("fake", "slow") for song in s.songs(m)}


def test_new_arrays_carry_a_checksum_and_nan_fill(made):
    _, store, _ = made
    meta = json.loads((store / "fake" / "a" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][-1] == "crc32c" and meta["fill_value"] == "NaN"
    assert json.loads((store / "zarr.json").read_text())["attributes"]["schema_version"] == 3


@pytest.mark.parametrize("damage", DAMAGE)
def test_load_names_the_damage_never_returns_numbers(made, damage):
    _, store, _ = made
    cause = damage(store)
    reader = fs.open_store(str(store))
    with pytest.raises(CorruptArray) as err:
        reader.load(VICTIM, "fake").values
    message = str(err.value)
    assert err.value.cause == cause and str(store) in message and "fake" in message and VICTIM in message
    if cause in ("missing chunk", "checksum mismatch"):
        assert err.value.chunk and err.value.chunk.startswith(f"fake/{VICTIM}/c/") and err.value.chunk in message
    with pytest.raises(CorruptArray):
        reader.load_song(VICTIM, ["fake", "slow"])
    np.testing.assert_array_equal(reader.load("a", "fake").values, FeatureStore(str(made[2])).array("fake", "a")[...])


@pytest.mark.parametrize("damage", DAMAGE)
def test_collections_leave_the_damaged_song_out_and_say_so(made, damage):
    _, store, reference = made
    damage(store)
    reader, want = fs.open_store(str(store)), fs.open_store(str(reference))
    for collect in (lambda r: r.pooled("fake"), lambda r: r.stack("fake")):
        with pytest.warns(DamagedSongsWarning, match=VICTIM):
            got = collect(reader)
        assert json.loads(got.attrs["damaged_songs"]) == [VICTIM]
        assert VICTIM not in list(got["song"].values)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            full = collect(want)
        np.testing.assert_array_equal(got.values, full.sel(song=[s for s in SONGS if s != VICTIM]).values)


@pytest.mark.parametrize("damage", DAMAGE)
def test_exports_skip_the_damaged_song_name_it_and_exit_1(made, damage, tmp_path):
    _, store, _ = made
    damage(store)
    npy = fstore("export-npy", store, "--output-base", tmp_path / "npy")
    assert npy.exit_code == 1, npy.output
    assert not (tmp_path / "npy" / "fake" / f"{VICTIM}.npy").exists()  # never a partial or zero-filled file
    assert (tmp_path / "npy" / "fake" / "a.npy").exists() and (tmp_path / "npy" / "slow" / f"{VICTIM}.npy").exists()
    assert f"fake/{VICTIM}" in output(npy) and "damaged" in output(npy)
    h5 = fstore("export-hdf5", tmp_path / "x.h5", "--store", store)
    assert h5.exit_code == 1 and f"fake/{VICTIM}" in output(h5), h5.output
    exported = fs.open_store(str(tmp_path / "x.h5"))
    assert exported.songs("fake") == [s for s in SONGS if s != VICTIM] and exported.songs("slow") == list(SONGS)


@pytest.mark.parametrize("damage", DAMAGE)
def test_show_and_plot_name_the_damage(made, damage, tmp_path):
    pytest.importorskip("matplotlib")
    _, store, _ = made
    damage(store)
    for command in (["show", VICTIM, "--store", store], ["plot", VICTIM, "--store", store, "-o", tmp_path / "p.png"]):
        result = fstore(*command)
        text = output(result)
        assert result.exit_code == 1 and "damaged" in text and VICTIM in text, text
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("damage", DAMAGE)
def test_validate_reads_everything_and_fix_then_extract_restores_the_store(made, damage):
    audio, store, reference = made
    cause = damage(store)
    report = json.loads(fstore("validate", store, "--json").stdout)
    assert not report["ok"]
    (problem,) = [p for p in report["problems"] if p["kind"] == "corrupt"]
    assert problem["where"] == f"fake/{VICTIM}" and cause in problem["message"]
    assert report["checked"] == 2 * len(SONGS)  # the check went on past the damage
    fixed = fstore("validate", store, "--fix")
    assert fixed.exit_code == 1 and f"removed fake/{VICTIM}" in output(fixed)
    (failure,) = FeatureStore(str(store)).failures("fake")
    assert failure["song_id"] == VICTIM and failure["error_type"] == "CorruptArray"
    rerun = fstore("extract", audio, "--store", store, "--models", "fake,slow", "--json")
    totals = json.loads(rerun.stdout)["models"]
    assert rerun.exit_code == 0 and totals["fake"]["done"] == 1 and totals["fake"]["cached"] == len(SONGS) - 1
    assert totals["slow"]["done"] == 0  # exactly the damaged array is recomputed
    assert_same_contents(_contents(store), _contents(reference))
    assert fstore("validate", store).exit_code == 0 and FeatureStore(str(store)).failures() == []


def test_quick_validation_reads_metadata_only(made):
    _, store, _ = made
    flip_a_byte(store)
    assert fstore("validate", store, "--quick").exit_code == 0  # the chunks were not read
    assert fstore("validate", store).exit_code == 1


@pytest.mark.parametrize("damage", [junk_metadata, delete_metadata])
def test_info_counts_damaged_arrays_apart_from_interrupted_ones(made, damage):
    _, store, _ = made
    damage(store)
    info = json.loads(fstore("info", store, "--json").stdout)["models"]["fake"]
    assert (info["songs"], info["incomplete"], info["damaged"]) == (len(SONGS) - 1, 0, 1)
    meta = store / "fake" / "a" / "zarr.json"
    meta.write_text(meta.read_text()[:40])  # an interrupted write: the start of the document
    info = json.loads(fstore("info", store, "--json").stdout)["models"]["fake"]
    assert (info["incomplete"], info["damaged"]) == (1, 1)


def test_a_damaged_hdf5_export_is_named_too(made, tmp_path):
    _, store, _ = made
    out = tmp_path / "x.h5"
    assert fstore("export-hdf5", out, "--store", store).exit_code == 0
    import h5py

    with h5py.File(out, "r") as h5:
        dataset = h5[f"fake/{VICTIM}/features"]  # the song's netCDF group holds its array as `features`
        assert dataset.fletcher32
        offset = dataset.id.get_chunk_info(0).byte_offset
    data = bytearray(out.read_bytes())
    data[offset + 8] ^= 0xFF
    out.write_bytes(bytes(data))
    reader = fs.open_store(str(out))
    with pytest.raises(CorruptArray) as err:
        reader.load(VICTIM, "fake")
    assert err.value.cause == "checksum mismatch" and str(out) in str(err.value)
    npy = fstore("export-npy", out, "--output-base", tmp_path / "npy")
    assert npy.exit_code == 1 and not (tmp_path / "npy" / "fake" / f"{VICTIM}.npy").exists()
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(out.read_bytes()[: out.stat().st_size // 3])
    with pytest.raises(StoreError, match="cut.h5"):
        fs.open_store(str(truncated))
    result = fstore("show", "a", "--store", truncated)
    assert result.exit_code == 1 and "cut.h5" in output(result)


def test_a_store_of_schema_2_is_read_and_written_with_checksums(tmp_path, fake_models):
    """A store made by the previous release: read as it is; a run that writes to it records schema 3 and its new
    arrays carry checksums, while the old ones stay as written."""
    old = tmp_path / "old.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "schema2.zarr", old)
    reader = fs.open_store(str(old))
    assert reader.songs("fake") == ["a", "b"] and reader.load("a", "fake").shape == (100, 2)
    assert json.loads((old / "zarr.json").read_text())["attributes"]["schema_version"] == 2  # reading changes nothing
    write_wav(tmp_path / "audio" / "new.wav", 0.5)
    assert fstore("extract", tmp_path / "audio", "--store", old, "--models", "fake").exit_code == 0
    attrs = json.loads((old / "zarr.json").read_text())["attributes"]
    assert attrs["schema_version"] == 3 and attrs["upgraded_from"] == 2
    codecs = {song: [c["name"] for c in json.loads((old / "fake" / song / "zarr.json").read_text())["codecs"]]
              for song in ("a", "new")}
    assert "crc32c" not in codecs["a"] and codecs["new"][-1] == "crc32c"
    assert fstore("validate", old).exit_code == 0
