"""No lost work: kills at random points, concurrent runs, stale leases, readers during writes,
write errors, and the bad inputs users actually have."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import featurestore as fs
from featurestore.errors import StoreError
from featurestore.store import LEASES, FeatureStore
from featurestore.validate import validate_store

from .helpers import fstore
from .conftest import write_wav

PACKAGE = Path(__file__).resolve().parents[1] / "featurestore"


def _extract_cmd(audio: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "featurestore.cli", "extract", "--audio-dir", str(audio), "--store", str(store),
            "--models", "madmom", *extra]


def _songs(audio: Path, n: int, seconds: float = 2.0) -> list[str]:
    for i in range(n):
        write_wav(audio / ("sub" if i % 3 == 0 else "") / f"song {i:02d}.wav", seconds, freq=150 + 25 * i)
    return sorted(fs_id for fs_id in (f"{'sub/' if i % 3 == 0 else ''}song {i:02d}" for i in range(n)))


def _arrays(store: Path) -> dict[str, np.ndarray]:
    s = FeatureStore(str(store))
    return {song: s.array("madmom", song)[...] for song in s.songs("madmom")}


def _complete(store: Path) -> int:
    """Songs complete in the store (0 while it does not exist yet)."""
    try:
        return len(FeatureStore(str(store)).songs("madmom"))
    except StoreError:
        return 0


def _assert_only_complete_arrays_visible(store: Path) -> None:
    s = FeatureStore(str(store)) if (store / "zarr.json").exists() else None
    if s is not None:
        for song in s.songs("madmom"):
            assert s.array("madmom", song).attrs["complete"] is True


def kill_at(audio: Path, store: Path, points: list[int]) -> None:
    """SIGKILL `fstore extract` once the store holds each of ``points`` complete songs (the run then
    computes or writes the next ones), resuming with --skip-existing each time, then finish."""
    cmd = _extract_cmd(audio, store, "--skip-existing")
    for point in points:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while _complete(store) < point:
            assert proc.poll() is None, f"the run ended before {point} songs were complete"
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_only_complete_arrays_visible(store)  # after every kill the store is valid
    final = subprocess.run(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr


def kill_and_resume(audio: Path, store: Path, kills: int, seed: int) -> int:
    """SIGKILL `fstore extract` at random moments `kills` times, resuming with --skip-existing each time.

    Returns how many kills hit a live run (the others found the run already finished).
    """
    rng = random.Random(seed)
    cmd = _extract_cmd(audio, store, "--skip-existing")
    t_full = None
    hits = 0
    for _ in range(kills):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.3, t_full or 4.0)
        try:
            proc.wait(timeout=delay)
            t_full = time.perf_counter() - start  # it finished: nothing was left to do
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            hits += 1
        _assert_only_complete_arrays_visible(store)  # after every kill the store is valid
    final = subprocess.run(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    return hits


@pytest.fixture
def reference(tmp_path):
    """An uninterrupted run's arrays on the same inputs."""
    audio = tmp_path / "audio"
    ids = _songs(audio, 9)
    ref_store = tmp_path / "ref.zarr"
    assert subprocess.run(_extract_cmd(audio, ref_store), capture_output=True).returncode == 0
    ref = _arrays(ref_store)
    assert sorted(ref) == ids
    return audio, ref


def _held_leases(store: Path) -> list[Path]:
    return [p for p in (store / LEASES).glob("*/**/zarr.json")]


def _check_against(store: Path, ref: dict[str, np.ndarray]) -> None:
    got = _arrays(store)
    assert sorted(got) == sorted(ref)
    for song, data in ref.items():
        np.testing.assert_array_equal(got[song], data)  # bit-identical
    s = FeatureStore(str(store))
    assert s.songs("madmom", complete_only=False) == s.songs("madmom")
    assert validate_store(s).ok


def test_kills_mid_run_lose_nothing(tmp_path, reference):
    """Killed before any song is complete, then after 1, 3 and 6 (each time while computing or writing the
    next): the resumed store equals an uninterrupted run's."""
    audio, ref = reference
    store = tmp_path / "killed.zarr"
    kill_at(audio, store, [0, 1, 3, 6])
    _check_against(store, ref)


@pytest.mark.slow
def test_kills_at_random_points_lose_nothing(tmp_path, reference):
    audio, ref = reference
    store = tmp_path / "killed.zarr"
    hits = kill_and_resume(audio, store, kills=5, seed=1)
    assert hits >= 3
    _check_against(store, ref)


@pytest.mark.slow
def test_many_kills_lose_nothing(tmp_path, reference):
    audio, ref = reference
    store = tmp_path / "killed.zarr"
    hits = kill_and_resume(audio, store, kills=30, seed=7)
    assert hits >= 20, f"only {hits} kills hit a live run"
    _check_against(store, ref)


def test_two_concurrent_runs_share_the_work(tmp_path, reference):
    audio, ref = reference
    store = tmp_path / "shared.zarr"
    procs = [subprocess.Popen(_extract_cmd(audio, store, "--skip-existing"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    # 3: a run left songs to the other, live one (which finished them)
    assert all(p.returncode in (0, 3) for p in procs), outputs
    _check_against(store, ref)
    assert _held_leases(store) == [], "leases left behind"


def test_stale_lease_of_a_dead_process_is_taken_over(tmp_path):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 1.0)
    store = tmp_path / "s.zarr"
    s = FeatureStore(str(store), mode="a")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = store / LEASES / "a" / "zarr.json"
    lease.parent.mkdir(parents=True)
    import socket

    lease.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
        "run": "old", "host": socket.gethostname(), "pid": dead.pid, "time": time.time()}}))
    assert s.leases.acquire("a", "us") is None  # taken over
    other = FeatureStore(str(store), mode="r+")
    assert other.leases.acquire("a", "them")["run"] == "us"  # and now held by us, alive
    s.leases.release("a", "us")
    assert other.leases.acquire("a", "them") is None


def test_reader_during_a_write_sees_only_complete_arrays(tmp_path):
    audio = tmp_path / "audio"
    _songs(audio, 8)
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen(_extract_cmd(audio, store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen, errors = set(), []
    while proc.poll() is None:
        try:
            reader = fs.open_store(str(store))
            for song in reader.songs("madmom"):
                da = reader.load(song, "madmom")
                if da.shape != (200,) or not np.isfinite(da.values).all():
                    errors.append((song, da.shape))
                seen.add(song)
        except Exception as e:  # the store may not exist yet
            if (store / "madmom").exists() and "no store" not in str(e):
                errors.append(repr(e))
        time.sleep(0.02)
    assert proc.returncode == 0 and not errors
    assert seen  # the reader did overlap the writer


def test_disk_full_stops_the_run_without_a_false_complete(tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    _songs(audio, 3, seconds=1.0)
    store = tmp_path / "s.zarr"
    import zarr

    real_setitem = zarr.Array.__setitem__
    writes = []

    def full_disk(self, key, value):
        writes.append(self.path)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", full_disk)
    result = fstore("extract", "--audio-dir", str(audio), "--store", str(store), "--models", "madmom")
    assert result.exit_code == 1 and "No space left" in result.output and "stopped" in result.output
    s = FeatureStore(str(store))
    assert s.songs("madmom") == ["song 01"]  # the first song is complete, the second never marked
    assert s.array("madmom", writes[1].split("/", 1)[1]) is None
    assert _held_leases(store) == [], "the stopped run left its lease"


def test_unwritable_store_is_a_clear_error(tmp_path):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    result = fstore("extract", "--audio-dir", str(audio), "--store", str(blocker / "s.zarr"), "--models", "madmom")
    assert result.exit_code == 1 and "s.zarr" in result.output


# -- bad inputs ------------------------------------------------------------------------------------
def _bad_inputs(audio: Path) -> dict[str, str | None]:
    """Write the awkward inputs; map each expected song id to None (must succeed) or an error pattern."""
    expect: dict[str, str | None] = {}
    (audio / "empty.wav").parent.mkdir(parents=True, exist_ok=True)
    (audio / "empty.wav").write_bytes(b"")
    expect["empty"] = "cannot decode"
    sf.write(audio / "zero.wav", np.zeros(0, np.float32), 44100)
    expect["zero"] = "no audio samples"
    (audio / "text.wav").write_text("just text")
    expect["text"] = "cannot decode"
    (audio / "text.mp3").write_text("just text")
    expect["text.mp3"] = "cannot decode"
    expect["text.wav"] = expect.pop("text")  # same stem, two extensions: ids keep the extension
    full = write_wav(audio / "trunc.wav", 2.0).read_bytes()
    (audio / "trunc.wav").write_bytes(full[: len(full) // 3])
    expect["trunc"] = r"truncated|^$"  # an error, or (libsndfile's choice) the readable part
    mp3 = write_wav(audio / "_tmp.mp3", 1.0, fmt="MP3", subtype="MPEG_LAYER_III")
    mp3.rename(audio / "really_mp3.wav")
    expect["really_mp3"] = r"cannot decode|^$"
    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        data = np.zeros(8000, np.float32)
        data[123] = bad
        sf.write(audio / f"{name}.wav", data, 16000, subtype="FLOAT")
        expect[name] = "NaN or infinite"
    sf.write(audio / "silence.wav", np.zeros(44100, np.float32), 44100)
    expect["silence"] = None
    write_wav(audio / "short.wav", 0.2)
    expect["short"] = None
    write_wav(audio / "low 8k.wav", 1.0, rate=8000)
    expect["low 8k"] = None
    write_wav(audio / "hi.flac", 1.0, rate=192000, subtype="PCM_24", fmt="FLAC")
    expect["hi"] = None
    write_wav(audio / "six.wav", 1.0, channels=6)
    expect["six"] = None
    write_wav(audio / "ünï cødé ♫ song.ogg", 1.0, subtype="VORBIS", fmt="OGG")
    expect["ünï cødé ♫ song"] = None
    write_wav(audio / "a" / "b" / "deep.wav", 0.5)
    expect["a/b/deep"] = None
    write_wav(audio / ".hidden.wav", 0.5)
    (audio / "dir.wav").mkdir()
    os.symlink(audio, audio / "a" / "loop")
    return expect


def test_bad_inputs_each_get_a_clear_result(tmp_path):
    audio = tmp_path / "audio"
    expect = _bad_inputs(audio)
    store = tmp_path / "s.zarr"
    result = subprocess.run(_extract_cmd(audio, store), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    reader = fs.open_store(str(store))
    failed = {f["song_id"]: f["error"] for f in reader.failures()}
    done = set(reader.songs("madmom"))
    assert set(failed) | done == set(expect), (failed, done)
    for song, pattern in expect.items():
        if pattern is None:
            assert song in done, failed.get(song)
            assert np.isfinite(reader.load(song, "madmom").values).all()
        elif song in failed:
            assert re.search(pattern, failed[song]), (song, failed[song])
        else:
            assert re.search(pattern, ""), f"{song} should have failed"
    assert reader.load("silence", "madmom").shape == (100,)
    assert "share the name" in result.stderr and "loop" in result.stderr
    retry = subprocess.run(_extract_cmd(audio, store, "--retry-failed"), capture_output=True, text=True)
    assert retry.returncode == 1 and "skipped" in retry.stderr


def test_unreadable_file_is_a_per_file_error(tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    write_wav(audio / "ok.wav", 0.5)
    locked = write_wav(audio / "locked.wav", 0.5)
    import soundfile

    real = soundfile.SoundFile.__init__

    def denied(self, file, *a, **k):  # permission bits do not stop root, so deny like the OS would
        if str(file) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(self, file, *a, **k)

    monkeypatch.setattr(soundfile.SoundFile, "__init__", denied)
    result = fstore("extract", "--audio-dir", str(audio), "--store", str(tmp_path / "s.zarr"), "--models", "madmom")
    assert result.exit_code == 1 and "Permission denied" in result.output
    assert fs.open_store(str(tmp_path / "s.zarr")).songs("madmom") == ["ok"]


# -- security --------------------------------------------------------------------------------------
def test_no_remote_code_and_no_pickle_loading_in_the_package():
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    for path, text in sources.items():
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "pickle.load" not in text, path


@pytest.mark.parametrize("name", ["..", "../escape", "/etc/passwd", "a/../../b", "x\\..\\y"])
def test_ids_from_names_never_escape(tmp_path, name):
    from featurestore.errors import InvalidSongId

    s = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    with pytest.raises(InvalidSongId):
        s.write("madmom", name, np.ones(3, np.float32), {"dims": ["time"]})
    assert not any(p.name == "escape" for p in tmp_path.rglob("*"))


def test_sigterm_stops_cleanly_with_exit_130(tmp_path):
    audio = tmp_path / "audio"
    _songs(audio, 12)
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen(_extract_cmd(audio, store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if (store / "madmom").exists() and FeatureStore(str(store)).songs("madmom"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    s = FeatureStore(str(store))
    assert 1 <= len(s.songs("madmom")) < 12
    for song in set(s.songs("madmom", complete_only=False)) - set(s.songs("madmom")):
        assert song not in fs.open_store(str(store)).songs("madmom")  # a half-written song stays invisible
    assert _held_leases(store) == []


# -- long files ------------------------------------------------------------------------------------
def _peak_rss_mib(audio: Path, store: Path, *models: str) -> float:
    """Peak RSS of a whole `fstore extract` process (MiB), read by the process itself at exit.

    VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across exec, so a child started by
    a large test process would report the parent's size.
    """
    code = (
        "import atexit, re, sys\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    print('PEAK_KIB', re.search(r'VmHWM:\\s+(\\d+)', status).group(1), file=sys.stderr)\n"
        "atexit.register(peak)\n"
        "from featurestore.cli import app\n"
        "app()\n"
    )
    cmd = [sys.executable, "-c", code, "extract", "--audio-dir", str(audio), "--store", str(store),
           "--models", ",".join(models), "--crepe-capacity", "tiny", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"PEAK_KIB (\d+)", result.stderr).group(1)) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux's /proc")
def test_twenty_minute_file_in_bounded_memory(tmp_path):
    """A 20-minute file costs what its samples and outputs take, not what one-pass models would.

    Beyond a 1-minute file's peak, 20 minutes may add the decoded song and its resampled
    copies (about 0.35 GiB here) and the outputs. Unbounded parts add GiBs: madmom's one-pass
    spectrograms needed 3 GiB more, onnxruntime's per-session arenas kept 1.7 GiB.
    """
    peaks = {}
    for minutes in (1, 20):
        audio = tmp_path / f"audio{minutes}"
        write_wav(audio / "long.wav", 60 * minutes, rate=44100, freq=220.0)
        peaks[minutes] = _peak_rss_mib(audio, tmp_path / f"s{minutes}.zarr", "madmom", "crepe")
        reader = fs.open_store(str(tmp_path / f"s{minutes}.zarr"))
        assert reader.load("long", "madmom").shape == (60 * minutes * 100,)
        assert reader.load("long", "crepe").shape == (60 * minutes * 100 + 1, 2)
    assert peaks[20] - peaks[1] < 1024, peaks
