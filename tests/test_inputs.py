"""Inputs the way people give them: files and folders as arguments, lists of files, the classic spellings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import featurestore as fs
from featurestore.discover import gather, read_file_list

from .conftest import write_wav
from .helpers import fstore

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def audio(tmp_path):
    folder = tmp_path / "music"
    write_wav(folder / "a.wav", 1.0)
    write_wav(folder / "sub" / "b.wav", 0.6)
    write_wav(tmp_path / "single.wav", 0.5)
    return folder


@pytest.mark.parametrize("order", ["path first", "models first"])
def test_paths_beside_several_model_names(tmp_path, audio, order):
    store = tmp_path / "s.zarr"
    models = ["--models", "madmom", "crepe", "--crepe-capacity", "tiny"]
    args = [audio, *models] if order == "path first" else [*models, audio]
    result = fstore("extract", *args, "--store", store)
    assert result.exit_code == 0, result.output
    reader = fs.open_store(str(store))
    assert reader.models() == ["crepe", "madmom"] and reader.songs("madmom") == ["a", "sub/b"]


def test_files_and_folders_mixed(tmp_path, audio):
    store = tmp_path / "s.zarr"
    result = fstore("extract", tmp_path / "single.wav", audio, "-m", "madmom", "--store", store)
    assert result.exit_code == 0, result.output
    reader = fs.open_store(str(store))
    assert reader.songs("madmom") == ["a", "single", "sub/b"]
    assert reader.load("single", "madmom").attrs["source"].startswith('{"path": "single.wav"')


def test_list_with_a_missing_file_goes_on(tmp_path, audio):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my songs\n{audio / 'a.wav'}\n{tmp_path / 'gone.wav'}\n\n{tmp_path / 'single.wav'}\n")
    store = tmp_path / "s.zarr"
    result = fstore("extract", "--files-from", listing, "-m", "madmom", "--store", store)
    assert result.exit_code == 1  # one input failed
    text = " ".join(result.output.split())  # rich wraps long paths' lines at the terminal width
    assert "gone.wav: no such file" in text
    assert fs.open_store(str(store)).songs("madmom") == ["a", "single"]


def test_csv_list_with_ids_from_standard_input(tmp_path, audio):
    store = tmp_path / "s.zarr"
    csv_text = f"path,song_id\n{audio / 'a.wav'},albums/first\n{audio / 'sub' / 'b.wav'},\n"
    result = fstore("extract", "--files-from", "-", "-m", "madmom", "--store", store, input=csv_text)
    assert result.exit_code == 0, result.output
    assert fs.open_store(str(store)).songs("madmom") == ["albums/first", "b"]


def test_clashing_ids(tmp_path, audio):
    other = tmp_path / "other"
    write_wav(other / "a.wav", 0.5)
    write_wav(other / "a.flac", 0.5, fmt="FLAC")
    found = gather([audio, other])
    ids = [f.song_id for f in found.files]
    assert ids == ["a", "sub/b", "a.flac", "a.wav"]  # same stem in one folder: extensions kept
    found = gather([audio, audio / "a.wav"])
    assert [f.song_id for f in found.files] == ["a", "sub/b"]
    assert "already taken" in found.errors[0][1]


def test_read_file_list_forms(tmp_path):
    plain = tmp_path / "l.txt"
    plain.write_text("x.wav\n  y.mp3  \n# comment\n")
    assert read_file_list(plain) == [("x.wav", None), ("y.mp3", None)]
    table = tmp_path / "l.csv"
    table.write_text("path,song_id\nx.wav,first\ny.mp3,\n")
    assert read_file_list(table) == [("x.wav", "first"), ("y.mp3", None)]


def test_classic_script_spelling(tmp_path, audio):
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "cli.py", "extract", "--audio_dir", str(audio), "--models", "madmom", "crepe",
           "--crepe-capacity", "tiny", "--skip_existing", "--verbose", "--store", str(store)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert fs.open_store(str(store)).songs("crepe") == ["a", "sub/b"]
