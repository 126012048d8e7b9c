"""No command destroys or mixes data: writing commands touch only fstore stores, and only
``fstore extract`` creates one, at a path that does not exist or is an empty folder; a changed
input is recomputed; exports say what they kept; recorded failures stay recorded; awkward inputs
cost only themselves."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import featurestore as fs
from featurestore.discover import gather, read_file_list
from featurestore.errors import InvalidSongId, StoreError
from featurestore.store import FeatureStore, validate_song_id

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


# -- maintenance and runs that overlap -------------------------------------------------------------------
def _counted_songs(folder, n: int) -> None:
    for i in range(n):
        write_wav(folder / f"s{i}.wav", 0.3, freq=300 + 40 * i)


def _hold_a_run(audio, store, gate, log, *extra):
    """A counted `fstore extract` held inside its first song's compute (its lease taken) until ``gate`` exists."""
    import subprocess

    from .fakes import GATE_ENV, computes, counted_env, counted_run

    run = subprocess.Popen(counted_run(audio, str(store), *extra), env=counted_env(log, 0, **{GATE_ENV: str(gate)}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (log.exists() and computes(log)):
        assert run.poll() is None, run.communicate()
    return run


def test_a_second_overwrite_cannot_interleave_with_the_first(tmp_path):
    """Two `extract --overwrite` at once used to lose finished songs: the second now stops at once, naming
    the run that replaces the group, and the first completes the store."""
    import subprocess

    from .fakes import assert_same_contents, store_contents, counted_env, counted_run

    audio, store, log = tmp_path / "audio", tmp_path / "s.zarr", tmp_path / "log"
    _counted_songs(audio, 4)
    ref = subprocess.run(counted_run(audio, str(tmp_path / "ref.zarr")), env=counted_env(tmp_path / "ref.log", 0))
    assert ref.returncode == 0
    assert subprocess.run(counted_run(audio, str(store)), env=counted_env(log, 0)).returncode == 0
    first = _hold_a_run(audio, store, tmp_path / "go", tmp_path / "first.log", "--overwrite")
    second = subprocess.run(counted_run(audio, str(store), "--overwrite"), env=counted_env(tmp_path / "second.log", 0),
                            capture_output=True, text=True)
    assert second.returncode == 1 and "being replaced by run" in " ".join(second.stderr.split()), second.stderr
    (tmp_path / "go").touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert_same_contents(store_contents(str(store)), store_contents(str(tmp_path / "ref.zarr")))


def test_overwrite_waits_for_no_one_and_changes_nothing_while_another_run_works_on_the_group(tmp_path):
    """An `--overwrite` with another configuration beside a live run on the same group used to leave the group
    with two configurations: it now stops before touching anything."""
    import subprocess

    from .fakes import counted_env, counted_run

    audio, store = tmp_path / "audio", tmp_path / "s.zarr"
    _counted_songs(audio, 3)
    normal = _hold_a_run(audio, store, tmp_path / "go", tmp_path / "log")
    before = FeatureStore(str(store)).model_attrs("cfake")
    replacing = subprocess.run(counted_run(audio, str(store), "--overwrite", "-o", "cfake.gain=2"),
                               env=counted_env(tmp_path / "log2", 0), capture_output=True, text=True)
    assert replacing.returncode == 1 and "needs the group to itself" in " ".join(replacing.stderr.split())
    assert FeatureStore(str(store)).model_attrs("cfake") == before
    (tmp_path / "go").touch()
    normal.communicate(timeout=120)
    assert normal.returncode == 0
    s = FeatureStore(str(store))
    assert {s.array("cfake", song).attrs["fingerprint"] for song in s.songs("cfake")} == {before["fingerprint"]}


def test_a_run_whose_group_was_replaced_meanwhile_stops_with_exit_2(tmp_path, fake_models, monkeypatch):
    """Each write checks the group's configuration under the song's lease: a group another run switched to
    another configuration (forced here, right before the second song's write) never gets an array of the
    old one; the run stops with exit 2."""
    from featurestore.extractors import registry
    from featurestore.store.attributes import group_attributes

    audio = tmp_path / "audio"
    _counted_songs(audio, 3)
    store = tmp_path / "s.zarr"
    real_check = FeatureStore.check_configuration

    def another_run_switched_the_group(self, group, attrs):
        if FeatureStore(str(store)).songs("fake"):  # after the first song: the switch lands before this write
            other = registry.create("fake", gain=2.0)
            FeatureStore(str(store), mode="r+")._put_group_attrs(group, group_attributes(other.describe(), group,
                                                                                         "float32"))
        return real_check(self, group, attrs)

    monkeypatch.setattr(FeatureStore, "check_configuration", another_run_switched_the_group)
    result = fstore("extract", audio, "--store", store, "--models", "fake", "--json")
    assert result.exit_code == 2, result.output
    assert "another configuration" in json.loads(result.stdout)["stopped"]
    assert FeatureStore(str(store)).songs("fake") == ["s0"]  # nothing written after the switch


def test_the_first_create_fixes_a_new_groups_configuration(tmp_path, fake_models):
    """Runs of two configurations starting together on a new store: exactly one creates the group; the
    other gets ConfigurationMismatch, whatever the interleaving (forced here with a barrier)."""
    import threading

    from featurestore.errors import ConfigurationMismatch
    from featurestore.extractors import registry
    from featurestore.store.attributes import group_attributes

    FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    configs = [group_attributes(registry.create("fake", gain=g).describe(), "fake", "float32") for g in (1.0, 2.0)]
    barrier, outcomes = threading.Barrier(2), [None, None]

    def create(i):
        store = FeatureStore(str(tmp_path / "s.zarr"), mode="r+")
        barrier.wait()
        try:
            store.ensure_model("fake", configs[i])
            outcomes[i] = "created"
        except ConfigurationMismatch:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=create, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created", "refused"]
    winner = configs[outcomes.index("created")]
    assert FeatureStore(str(tmp_path / "s.zarr")).model_attrs("fake") == winner


def test_validate_fix_leaves_the_songs_of_a_live_run_alone(tmp_path):
    """An incomplete array whose song a live run holds is being written: --fix reports it in progress and
    removes it only once no live lease covers it."""
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    half = zarr.open_group(store.url).create_array("m/writing", shape=(5,), dtype="float32", dimension_names=("time",))
    half[...] = 1.0
    store.leases.acquire("writing", "a-live-run", ("m",))
    busy = fstore("validate", store.url, "--fix")
    assert busy.exit_code == 1 and "in progress m/writing" in output(busy)
    assert FeatureStore(store.url).songs("m", complete_only=False) == ["writing"]
    store.leases.release("writing", "a-live-run")
    freed = fstore("validate", store.url, "--fix")
    assert "removed m/writing" in output(freed) and FeatureStore(store.url).songs("m", complete_only=False) == []


# -- readers during writes -----------------------------------------------------------------------------
class RewrittenAfterListing:
    """A store whose song ``b`` another run starts rewriting right after the group is listed (the interleaving
    that made exports crash), through the public backend interface."""

    def __init__(self, url: str) -> None:
        self.inner = FeatureStore(url)
        self.url, self.capabilities = url, self.inner.capabilities

    def states(self, model):
        states = self.inner.states(model)
        if self.inner.array(model, "b") is None:  # already being rewritten
            return states
        attrs = {k: v for k, v in self.inner.array(model, "b").attrs.items() if k != "complete"}
        data = self.inner.array(model, "b")[...]
        zarr.open_group(self.url)[model].create_array("b", shape=data.shape, dtype="float32", overwrite=True,
                                                      attributes=attrs)  # the rewrite has begun: no data yet
        return states

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def three_songs(tmp_path, fake_models):
    for song in ("a", "b", "c"):
        write_wav(tmp_path / "audio" / f"{song}.wav", 0.3)
    assert fstore("extract", tmp_path / "audio", "--store", tmp_path / "s.zarr", "--models", "fake").exit_code == 0
    return str(tmp_path / "s.zarr")


def test_exports_racing_a_rewrite_leave_the_song_out_with_a_note(three_songs, tmp_path):
    import shutil

    from featurestore.export import export_hdf5, export_npy

    other = str(tmp_path / "other.zarr")
    shutil.copytree(three_songs, other)
    report = export_npy(RewrittenAfterListing(three_songs), tmp_path / "npy")
    assert [e.song_id for e in report.rewritten] == ["b"] and report.written == {"fake": 2}
    assert not (tmp_path / "npy" / "fake" / "b.npy").exists()
    assert [row.split(",")[0] for row in (tmp_path / "npy" / "fake" / "index.csv").read_text().splitlines()[1:]] == \
        ["a", "c"]
    report = export_hdf5(RewrittenAfterListing(other), tmp_path / "x.h5")
    assert [e.song_id for e in report.rewritten] == ["b"]


def test_collections_racing_a_rewrite_leave_the_song_out_with_a_note(three_songs, tmp_path):
    import shutil

    import featurestore as fs
    from featurestore.errors import SkippedSongsWarning

    for collect in ("pooled", "stack"):
        copy = str(tmp_path / f"{collect}.zarr")
        shutil.copytree(three_songs, copy)
        reader = fs.StoreReader(RewrittenAfterListing(copy))
        with pytest.warns(SkippedSongsWarning, match="rewritten"):
            got = getattr(reader, collect)("fake")
        assert list(got["song"].values) == ["a", "c"] and json.loads(got.attrs["rewritten_songs"]) == ["b"]


def test_a_read_racing_a_rewrite_gives_the_old_or_the_new_array_never_a_crash(three_songs, fake_models):
    from featurestore.errors import SongRewritten
    from featurestore.extractors import registry
    from featurestore.store.attributes import array_attributes

    store = FeatureStore(three_songs, mode="r+")
    opened = store.array("fake", "b")
    old = store.array("fake", "b")[...]
    new = np.ones((old.shape[0] + 7, 2), np.float32)
    ext = registry.create("fake")
    store.write("fake", "b", new, array_attributes(ext.describe(), ext.dims, new.shape, 1, 0.5, {}, "float32"))
    try:
        values = opened[...]
    except SongRewritten as e:
        assert "fake/b was rewritten" in str(e)
    else:
        assert np.array_equal(values, old) or np.array_equal(values, new[: old.shape[0]])


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


# -- exports: index.csv describes the files on disk; the target is checked first; no temporary file stays ---------
def _index(folder) -> dict[str, dict[str, str]]:
    with open(folder / "index.csv", newline="") as f:
        return {row["song_id"]: row for row in csv.DictReader(f)}


def test_a_kept_export_that_differs_from_the_store_is_stale_and_indexed_as_it_is(tmp_path, fake_models):
    audio, store, out = tmp_path / "audio", tmp_path / "s.zarr", tmp_path / "npy"
    write_wav(audio / "a.wav", 3.0)
    write_wav(audio / "b.wav", 1.0, freq=440.0)
    write_wav(audio / "c.wav", 1.0)
    _extract(audio, "--store", store, "-m", "fake")
    assert "3 written" in fstore("export-npy", store, "--output-base", out).output
    write_wav(audio / "a.wav", 5.0)  # recomputed on 5 s: another shape
    write_wav(audio / "b.wav", 1.0, freq=660.0)  # recomputed: the same shape, other values
    assert _extract(audio, "--store", store, "-m", "fake")["models"]["fake"]["done"] == 2

    result = fstore("export-npy", store, "--output-base", out)
    assert result.exit_code == 0 and "0 written" in output(result) and "1 kept, 2 stale (use --overwrite): a, b" in output(result)
    index = _index(out / "fake")
    assert np.load(out / "fake" / "a.npy").shape == (300, 2) and index["a"]["n_frames"] == "300"
    assert [index[s]["stale"] for s in "abc"] == ["true", "true", "false"]
    stored = FeatureStore(str(store)).array("fake", "b").attrs
    assert index["b"]["written"] != stored["written"] or index["b"]["source_sha256"] != stored["source"]["sha256"]

    assert "3 written" in fstore("export-npy", store, "--output-base", out, "--overwrite").output
    index = _index(out / "fake")
    assert index["a"]["n_frames"] == "500" and [index[s]["stale"] for s in "abc"] == ["false"] * 3
    assert "3 kept" in output(fstore("export-npy", store, "--output-base", out))


def test_files_without_an_index_row_are_compared_by_content(tmp_path, fake_models):
    """``extract --output-base`` writes .npy files and no index: a later export checks them against the store."""
    audio, store, out = tmp_path / "audio", tmp_path / "s.zarr", tmp_path / "npy"
    write_wav(audio / "a.wav", 1.0)
    write_wav(audio / "b.wav", 1.0)
    _extract(audio, "--store", store, "-m", "fake", "--output-base", out)
    np.save(out / "fake" / "b.npy", np.zeros((100, 2), np.float32))  # same shape, other values
    result = fstore("export-npy", store, "--output-base", out)
    assert "1 kept, 1 stale (use --overwrite): b" in output(result)
    index = _index(out / "fake")
    assert index["a"]["n_frames"] == "100" and index["a"]["stale"] == "false" and index["a"]["written"]
    assert index["b"] == {**dict.fromkeys(index["b"], ""), "song_id": "b", "n_frames": "100", "stale": "true"}


@pytest.fixture
def exported(tmp_path, fake_models):
    """A store of one song, and an HDF5 export of it."""
    write_wav(tmp_path / "audio" / "a.wav", 1.0)
    _extract(tmp_path / "audio", "--store", tmp_path / "s.zarr", "-m", "fake")
    assert fstore("export-hdf5", tmp_path / "s.h5", "--store", tmp_path / "s.zarr").exit_code == 0
    return tmp_path


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nobody may write into; permission bits do not stop root, so ``os.access`` answers as they say."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder and mode & os.W_OK
                        else real(p, mode, **kw))
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("command, code, message", [
    (["export-npy", "{zarr}", "--output-base", "{base}/file.txt"], 4, "file.txt: a file, not a folder"),
    (["export-hdf5", "{base}/file.txt", "--store", "{zarr}"], 4, "file.txt exists; use --overwrite"),
    (["export-hdf5", "{base}/folder.h5", "--store", "{zarr}", "--overwrite"], 5, "folder.h5: a folder"),
    (["export-npy", "{zarr}", "--output-base", "{base}/locked"], 6, "locked: cannot be written"),
    (["export-npy", "{zarr}", "--output-base", "{base}/locked/npy"], 6, "npy: cannot be written"),
    (["export-hdf5", "{base}/locked/x.h5", "--store", "{zarr}"], 6, "x.h5: cannot be written"),
    (["export-npy", "{zarr}", "--output-base", "{zarr}"], 7, "is the store"),
    (["export-npy", "{zarr}", "--output-base", "{zarr}/fake"], 7, "lies inside the store"),
    (["export-hdf5", "{zarr}/x.h5", "--store", "{zarr}"], 7, "lies inside the store"),
    (["export-hdf5", "{base}/s.h5", "--store", "{base}/s.h5", "--overwrite"], 7, "is the store"),
    (["export-npy", "{base}/s.h5", "--output-base", "{base}/s.h5"], 7, "is the store"),
], ids=["npy-file", "h5-exists", "h5-folder", "npy-read-only", "npy-under-read-only", "h5-read-only",
        "npy-store", "npy-in-store", "h5-in-store", "h5-store", "npy-h5-store"])
def test_export_targets_are_checked_before_any_work(exported, read_only, command, code, message):
    (exported / "file.txt").write_text("mine")
    (exported / "folder.h5").mkdir()
    before = _snapshot(exported)
    result = fstore(*[a.format(zarr=exported / "s.zarr", base=exported) for a in command])
    assert result.exit_code == code and message in output(result), result.output
    assert _snapshot(exported) == before


INTERRUPTING_EXPORT = """
import os, signal, sys
import {module}
real = {module}.{function}
calls = []

def interrupted(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # while the second file is written
        os.kill(os.getpid(), signal.{signal})
    return real(*args, **kwargs)

{module}.{function} = interrupted
from featurestore.cli import app
sys.argv[0] = "fstore"
app()
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["export-npy", "export-hdf5"])
def test_an_interrupted_export_leaves_no_temporary_file(tmp_path, fake_models, command, sig):
    for name in "abcd":
        write_wav(tmp_path / "audio" / f"{name}.wav", 0.5)
    _extract(tmp_path / "audio", "--store", tmp_path / "s.zarr", "-m", "fake")
    out = tmp_path / "out"
    module, function, args = (("numpy", "save", ["--output-base", out]) if command == "export-npy"
                              else ("h5py", "Group.create_dataset", [out / "x.h5"]))
    code = INTERRUPTING_EXPORT.format(module=module, function=function, signal=sig)
    if "." in function:  # a method: patch it on its class
        cls, method = function.split(".")
        code = code.replace(f"{module}.{function} = interrupted", f"setattr({module}.{cls}, {method!r}, interrupted)")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, command, "--store", str(tmp_path / "s.zarr"), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr and "Traceback" not in done.stderr
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]
    if command == "export-npy":  # the index lists exactly the files the export left
        assert set(_index(out / "fake")) == {p.stem for p in (out / "fake").glob("*.npy")}
    else:
        assert not out.exists() or not list(out.iterdir())


def test_a_long_legal_song_id_exports(tmp_path, fake_models):
    """240 bytes of CJK: a legal file name, whose export's temporary name must stay within 255 bytes too."""
    song_id = "音" * 80
    write_wav(tmp_path / "a.wav", 0.5)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,song_id\n{tmp_path / 'a.wav'},{song_id}\n")
    assert _extract("--files-from", listing, "--store", tmp_path / "s.zarr", "-m", "fake")["exit_code"] == 0
    assert fstore("export-npy", tmp_path / "s.zarr", "--output-base", tmp_path / "npy").exit_code == 0
    assert (tmp_path / "npy" / "fake" / f"{song_id}.npy").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


# -- recorded failures: computing a song keeps the failures of the songs nested under its id ----------------------
def test_computing_a_song_keeps_the_failures_recorded_under_its_id(tmp_path, fake_models):
    audio, store = tmp_path / "audio", tmp_path / "s.zarr"
    (audio / "c").mkdir(parents=True)
    (audio / "c" / "x.wav").write_text("not audio")  # c/x fails first (the folder c sorts before c.wav) ...
    write_wav(audio / "c.wav", 0.5)  # ... then c is computed, which clears c's own record
    summary = _extract(audio, "--store", store, "-m", "fake")
    assert summary["models"]["fake"]["done"] == 1 and [f["song_id"] for f in summary["failures"]] == ["c/x"]
    assert [f["song_id"] for f in FeatureStore(str(store)).failures("fake")] == ["c/x"]

    retried = _extract(audio, "--store", store, "-m", "fake", "--retry-failed")  # only c/x is in the run
    assert [f["song_id"] for f in retried["failures"]] == ["c/x"] and retried["models"]["fake"]["cached"] == 0


def test_clearing_a_failure_clears_that_song_only(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    for song in ("c/x", "c", "c/x/y", "d"):
        store.record_failure("m", song, f"{song} failed", "AudioError", None)
    store.clear_failure("m", "c")
    assert [f["song_id"] for f in store.failures()] == ["c/x", "c/x/y", "d"]
    store.clear_failure("m", "c/x/y")
    store.clear_failure("m", "d")
    assert [(f["song_id"], f["error"]) for f in store.failures()] == [("c/x", "c/x failed")]


# -- song ids longer than a file name may be: an error for that file, found before any work --------------------
def test_a_song_id_too_long_for_a_file_name_costs_only_its_file(tmp_path, fake_models):
    for name in ("long", "ok"):
        write_wav(tmp_path / f"{name}.wav", 0.5)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,song_id\n{tmp_path / 'long.wav'},{'x' * 300}\n{tmp_path / 'ok.wav'},ok\n")
    store = tmp_path / "s.zarr"
    for _ in range(2):  # and every rerun of the list does the work of the others
        result = fstore("extract", "--files-from", listing, "--store", store, "-m", "fake")
        assert result.exit_code == 1 and "long.wav: invalid song id" in output(result), result.output
        assert "longer than a file name may be" in output(result)
        assert FeatureStore(str(store)).songs("fake") == ["ok"]


@pytest.mark.parametrize("song_id, valid", [
    ("a" * 251, True), ("a" * 252, False),  # the last component names the .npy export: 4 bytes less
    ("a" * 255 + "/b", True), ("a" * 256 + "/b", False),
    ("音" * 83, True), ("音" * 84, False),  # bytes in UTF-8, not characters
], ids=["251", "252", "255/b", "256/b", "cjk-249", "cjk-252"])
def test_song_id_components_fit_a_file_name(song_id, valid):
    if valid:
        assert validate_song_id(song_id) == song_id
    else:
        with pytest.raises(InvalidSongId, match="longer than a file name may be"):
            validate_song_id(song_id)


# -- playlists and MIDI files in a music folder are not audio -------------------------------------------------
def test_playlists_and_midi_files_are_skipped_as_non_audio(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "song.wav", 0.5)
    others = ["list.m3u", "list.M3U8", "radio.pls", "album.cue", "tune.mid", "tune.midi", "karaoke.kar"]
    for name in others:
        (audio / name).write_bytes(b"#EXTM3U\nsong.wav\n" if "m3u" in name.lower() else b"MThd\x00\x00\x00\x06")
    found = gather([audio])
    assert [f.song_id for f in found.files] == ["song"] and found.skipped_non_audio == len(others)
    result = fstore("extract", audio, "--store", tmp_path / "s.zarr", "-m", "fake")
    assert result.exit_code == 0 and f"({len(others)} non-audio" in output(result), result.output


# -- lists saved with a UTF-8 byte order mark (Excel's "CSV UTF-8") ------------------------------------------
def test_a_list_may_start_with_a_utf8_bom(tmp_path, fake_models):
    write_wav(tmp_path / "a.wav", 0.5)
    text = f"path,song_id\r\n{tmp_path / 'a.wav'},albums/first\r\n"
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_file_list(listing) == [(str(tmp_path / "a.wav"), "albums/first")]
    plain = tmp_path / "list.txt"
    plain.write_bytes(b"\xef\xbb\xbf" + f"{tmp_path / 'a.wav'}\n".encode())
    assert read_file_list(plain) == [(str(tmp_path / "a.wav"), None)]
    store = tmp_path / "s.zarr"
    result = fstore("extract", "--files-from", "-", "--store", store, "-m", "fake", input="\ufeff" + text)
    assert result.exit_code == 0, result.output
    assert FeatureStore(str(store)).songs("fake") == ["albums/first"]


# -- the read API: time ranges that can only be mistakes, one name as a string, what is not a store -----------
@pytest.fixture
def one_song(tmp_path, fake_models):
    """A store of song ``a`` (1 s) computed by ``fake`` (100 frames) and ``slow`` (10 frames)."""
    write_wav(tmp_path / "audio" / "a.wav", 1.0)
    _extract(tmp_path / "audio", "--store", tmp_path / "s.zarr", "-m", "fake,slow")
    return tmp_path / "s.zarr"


@pytest.mark.parametrize("start, end, message", [
    (5, 2, r"time range \[5, 2\): start is after end"),
    (float("nan"), None, r"time range \[nan, None\): start must be seconds"),
    (None, float("nan"), r"time range \[None, nan\): end must be seconds"),
    (None, -1, r"time range \[None, -1\): end must be seconds from the song's start, 0 or more"),
    (-1, None, r"start must be seconds"),
], ids=["inverted", "start-nan", "end-nan", "end-negative", "start-negative"])
def test_a_range_that_can_only_be_a_mistake_is_a_value_error(one_song, start, end, message):
    reader = fs.open_store(str(one_song))
    with pytest.raises(ValueError, match=message):
        reader.load("a", "fake", start=start, end=end)
    with pytest.raises(ValueError, match=message):
        reader.load_song("a", start=start, end=end)


def test_a_range_beyond_the_end_is_empty(one_song):
    reader = fs.open_store(str(one_song))
    assert reader.load("a", "fake", start=5).shape == (0, 2)
    assert reader.load("a", "fake", start=5, end=float("inf")).shape == (0, 2)
    assert reader.load("a", "fake", start=0.5, end=0.5).shape == (0, 2)
    assert reader.load("a", "fake", start=0.5, end=0.6).shape == (10, 2)


def test_one_name_may_be_given_as_a_string(one_song):
    reader = fs.open_store(str(one_song))
    assert set(reader.load_song("a", models="fake").data_vars) == {"fake"}
    assert list(reader.pooled("fake", songs="a")["song"].values) == ["a"]
    assert list(reader.stack("slow", songs="a")["song"].values) == ["a"]


def test_plot_refuses_a_wrong_range_or_an_output_it_cannot_write(one_song, tmp_path):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "p.png"
    inverted = fstore("plot", "a", "--store", one_song, "-o", picture, "--start", "5", "--end", "2")
    assert inverted.exit_code == 2 and "start is after end" in output(inverted) and not picture.exists()
    nowhere = fstore("plot", "a", "--store", one_song, "-o", tmp_path / "nodir" / "x.png")
    assert nowhere.exit_code == 1 and "nodir is not a folder" in output(nowhere)
    assert fstore("plot", "a", "--store", one_song, "-o", picture, "--start", "0.2").exit_code == 0


def test_a_zarr_store_in_a_folder_named_h5_opens_as_zarr(tmp_path, fake_models):
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    _extract(tmp_path / "audio", "--store", tmp_path / "features.h5", "-m", "fake")
    assert fs.open_store(str(tmp_path / "features.h5")).songs("fake") == ["a"]
    assert fstore("info", tmp_path / "features.h5").exit_code == 0


def test_an_hdf5_file_that_is_no_fstore_export_is_refused_at_open(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("fake/a", data=np.zeros((10, 2), np.float32))
    with pytest.raises(StoreError, match="other.h5: an HDF5 file, but not one written by fstore export-hdf5"):
        fs.open_store(str(other))
    for command in (["info", other], ["show", "a", "--store", other], ["export-npy", other, "--output-base", tmp_path / "n"]):
        result = fstore(*command)
        assert result.exit_code == 1 and "not one written by fstore export-hdf5" in output(result), command


# -- Ctrl-C while the models load: exit 130 and the summary, whatever the interrupted import raised ------------
INTERRUPTING_IMPORTS = {
    "interrupt": "raise KeyboardInterrupt\n",
    # what an interrupted extension module can leave: an ImportError whose context is the interrupt
    "initialization-failed": "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt:\n"
                             "    raise ImportError('initialization failed')\n",
}


@pytest.mark.parametrize("source", INTERRUPTING_IMPORTS.values(), ids=INTERRUPTING_IMPORTS.keys())
def test_ctrl_c_while_the_models_load_exits_130_with_the_summary(tmp_path, fake_models, monkeypatch, source):
    from featurestore.extractors import registry

    from .fakes import INTERRUPTED_IMPORT_ENV

    registry.register("interrupted", "tests.fakes:InterruptedLoad")
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "fstore_test_interrupting.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    monkeypatch.setenv(INTERRUPTED_IMPORT_ENV, "fstore_test_interrupting")
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    result = fstore("extract", tmp_path / "audio", "--store", tmp_path / "s.zarr", "-m", "fake,interrupted", "--json")
    assert result.exit_code == 130, result.output
    summary = json.loads(result.stdout)
    assert summary["interrupted"] is True and summary["exit_code"] == 130 and set(summary["models"]) == {"fake", "interrupted"}


def test_a_model_that_cannot_be_imported_stops_the_run_with_the_reason(tmp_path, fake_models, monkeypatch):
    from featurestore.extractors import registry

    from .fakes import INTERRUPTED_IMPORT_ENV

    registry.register("interrupted", "tests.fakes:InterruptedLoad")
    monkeypatch.setenv(INTERRUPTED_IMPORT_ENV, "fstore_test_no_such_module")
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    result = fstore("extract", tmp_path / "audio", "--store", tmp_path / "s.zarr", "-m", "fake,interrupted", "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 1 and "a model could not be loaded: No module named 'fstore_test_no_such_module'" in summary["stopped"]


# -- leases leave no empty folders behind ----------------------------------------------------------------------
def test_released_leases_leave_no_empty_folders(tmp_path):
    from featurestore.store.leases import LEASES, Leases

    store = tmp_path / "s.zarr"
    FeatureStore(str(store), mode="a")
    leases = Leases(str(store))
    assert leases.acquire("a/b/c", "run1") is None
    assert (store / LEASES / "a" / "b" / "c" / "zarr.json").exists()
    leases.release("a/b/c", "run1")
    assert sorted(p.name for p in (store / LEASES).iterdir()) == ["zarr.json"]

    dead = store / LEASES / "a" / "b" / "c" / "zarr.json"  # a run that died holding a/b/c: taken over
    dead.parent.mkdir(parents=True)
    dead.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
        "run": "dead", "host": "elsewhere", "pid": 1, "time": 0.0, "beat": 1.0}}))
    assert leases.acquire("a/b/c", "run2") is None
    assert (store / LEASES / "__takeover" / "a" / "b" / "c").is_dir()
    leases.release("a/b/c", "run2")
    assert sorted(p.name for p in (store / LEASES).iterdir()) == ["zarr.json"]


def test_extract_refuses_an_output_base_in_its_store(tmp_path, fake_models):
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    store = tmp_path / "s.zarr"
    assert _extract(tmp_path / "audio", "--store", store, "-m", "fake")["exit_code"] == 0
    before = _snapshot(store)
    for target in (store, store / "fake"):
        result = fstore("extract", tmp_path / "audio", "--store", store, "-m", "fake", "--output-base", target,
                        "--overwrite")
        assert result.exit_code == 2 and "exports never go into a store" in output(result), result.output
    assert _snapshot(store) == before
