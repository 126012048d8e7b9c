"""No command destroys or mixes data: writing commands touch only fstore stores, and only
``fstore extract`` creates one, at a path that does not exist or is an empty folder."""

from __future__ import annotations

import json

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

    from .fakes import assert_same_contents, counted_contents, counted_env, counted_run

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
    assert_same_contents(counted_contents(str(store)), counted_contents(str(tmp_path / "ref.zarr")))


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
