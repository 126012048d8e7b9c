"""Stress: several ``fstore extract`` processes on one local store, one SIGKILLed again and again, then a
final run. Every song is computed once per model (but for what the killed processes had in flight), and
the store equals an uninterrupted run's, arrays bit for bit and attributes but for the write time."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from featurestore.store import LEASES, FeatureStore

from .conftest import write_wav
from .fakes import COUNTED, GATE_ENV, assert_same_contents, computes, counted_env, counted_run, store_contents


def _computing(run: subprocess.Popen, log: Path) -> bool:
    """Wait until ``run`` has computed a song (True) or has ended (False)."""
    while run.poll() is None:
        if log.exists() and any(pid == run.pid for _, pid, _ in computes(log)):
            return True
        time.sleep(0.02)
    return False


def stress(tmp_path: Path, n_songs: int, steady: int, kills: int, compute_s: float, seed: int | None) -> int:
    """Run the scenario and check it; returns how many kills hit a live run.

    ``seed`` None: each victim is held inside its first song's compute (tests/fakes.py's gate) and killed
    there, so every kill lands in a live run holding a lease; else it is killed at a random moment of
    computing, writing or decoding."""
    audio = tmp_path / "audio"
    for i in range(n_songs):
        write_wav(audio / ("sub" if i % 4 == 0 else "") / f"song {i:02d}.wav", 0.5, freq=200 + 37 * i)
    ref_log, log = tmp_path / "ref.log", tmp_path / "stress.log"
    ref = subprocess.run(counted_run(audio, str(tmp_path / "ref.zarr")), env=counted_env(ref_log, 0),
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    expected = Counter((m, d) for m, _, d in computes(ref_log))
    assert len(expected) == n_songs * len(COUNTED) and set(expected.values()) == {1}

    store, env, rng = tmp_path / "s.zarr", counted_env(log, compute_s), random.Random(seed)
    victim_env = env if seed is not None else {**env, GATE_ENV: str(tmp_path / "never")}
    def start_steady() -> list[subprocess.Popen]:
        return [subprocess.Popen(counted_run(audio, str(store)), env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for _ in range(steady)]

    runs: list[subprocess.Popen] = []
    killed: list[int] = []
    while len(killed) < kills:
        victim = subprocess.Popen(counted_run(audio, str(store)), env=victim_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        if not _computing(victim, log):  # nothing left for it: more kills would test nothing
            break
        # the steady runs start once the first victim computes: started before it, they could take every
        # song while it is still importing (a fast machine, or a slow interpreter start), and no kill would land
        runs = runs or start_steady()
        if seed is not None:
            time.sleep(rng.uniform(0, 2 * compute_s))  # a random moment of computing, writing or decoding
            if victim.poll() is not None:
                break
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed.append(victim.pid)
    for run in runs or start_steady():
        _, err = run.communicate(timeout=300)
        assert run.returncode in (0, 3), err  # 3: songs left to another live run
    final = subprocess.run(counted_run(audio, str(store)), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert killed, "no kill hit a live run"

    done = computes(log)
    counts = Counter((m, d) for m, _, d in done)
    assert set(counts) == set(expected), "a song was never computed, or a foreign one was"
    last = {(m, pid): d for m, pid, d in done}  # each process's last song per model
    in_flight = {(m, last[m, pid]) for pid in killed for m in COUNTED if (m, pid) in last}
    twice = {key for key, n in counts.items() if n > 1}
    assert twice <= in_flight, f"computed twice though no killed run had them in flight: {twice - in_flight}"
    assert all(n <= 2 for n in counts.values())
    assert_same_contents(store_contents(str(store)), store_contents(str(tmp_path / "ref.zarr")))
    assert not list((store / LEASES).glob("*/**/zarr.json")), "leases left behind"
    return len(killed)


def test_four_runs_one_killed_compute_each_song_once(tmp_path):
    assert stress(tmp_path, n_songs=8, steady=3, kills=1, compute_s=0.15, seed=None) == 1


@pytest.mark.slow
def test_four_runs_one_killed_many_times(tmp_path):
    assert stress(tmp_path, n_songs=60, steady=3, kills=6, compute_s=0.4, seed=11) >= 3


def test_runs_starting_together_on_a_fresh_store(tmp_path, monkeypatch):
    """Runs started at one moment all see "no store" / "no group" and all create it: zarr's
    look-then-create makes the losers fail with ContainsGroupError; they must open what the winner made."""
    import zarr

    url = str(tmp_path / "s.zarr")
    real_open, real_require = zarr.open_group, zarr.Group.require_group
    attrs = {"model": "m", "fingerprint": "x", "dtype": "float32"}

    def open_after_another_run(*args, **kwargs):
        monkeypatch.setattr(zarr, "open_group", real_open)
        real_open(url, mode="w")  # the other run wins the race
        return real_open(*args, **kwargs)

    monkeypatch.setattr(zarr, "open_group", open_after_another_run)
    store = FeatureStore(url, mode="a")

    def require_after_another_run(self, name, **kwargs):
        monkeypatch.setattr(zarr.Group, "require_group", real_require)
        FeatureStore(url, mode="a").ensure_model(name, attrs)
        return self.create_group(name)  # what zarr does after seeing no group: raises ContainsGroupError

    monkeypatch.setattr(zarr.Group, "require_group", require_after_another_run)
    store.ensure_model("m", attrs)
    assert store.models() == ["m"] and store.model_attrs("m") == attrs


def _operations(audio: Path, store: Path, out: Path, i: int) -> dict[str, list[str]]:
    """The commands a user may run on one store at any moment: runs, a replacement, maintenance, exports."""
    from .fakes import counted_fstore

    return {
        "extract": counted_run(audio, str(store)),
        "overwrite": counted_run(audio, str(store), "--overwrite"),
        "validate --fix": counted_fstore("validate", store, "--fix"),
        "export-npy": counted_fstore("export-npy", store, "--output-base", out / f"npy{i}"),
        "export-hdf5": counted_fstore("export-hdf5", out / f"x{i}.h5", "--store", store, "--overwrite"),
    }


def mixed(tmp_path: Path, rounds: int, at_once: int, seed: int | None) -> list[tuple[str, int]]:
    """``rounds`` rounds of ``at_once`` commands started together on one store (seed None: each kind of
    command in turn, so every kind meets every other; else chosen at random, started at random moments),
    then a final run. Returns (command, exit code) of each; asserts what must hold whatever the interleaving:
    no traceback, exit codes that say what happened, one configuration per group, a store that the final
    run completes and that validates clean."""
    audio, store, log = tmp_path / "audio", tmp_path / "s.zarr", tmp_path / "log"
    for i in range(6):
        write_wav(audio / f"song {i}.wav", 0.4, freq=220 + 30 * i)
    env, rng = counted_env(log, 0.05), random.Random(seed)
    assert subprocess.run(counted_run(audio, str(store)), env=env, capture_output=True).returncode == 0
    allowed = {"extract": {0, 3}, "overwrite": {0, 1, 3}, "validate --fix": {0, 1}, "export-npy": {0, 3},
               "export-hdf5": {0, 1, 3}}
    kinds = list(allowed)
    done: list[tuple[str, int]] = []
    for r in range(rounds):
        chosen = [kinds[(r * at_once + j) % len(kinds)] if seed is None else rng.choice(kinds) for j in range(at_once)]
        procs = []
        for j, kind in enumerate(chosen):
            if seed is not None:
                time.sleep(rng.uniform(0, 0.3))
            procs.append((kind, subprocess.Popen(_operations(audio, store, tmp_path, r * at_once + j)[kind], env=env,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for kind, proc in procs:
            out, err = proc.communicate(timeout=300)
            assert "Traceback" not in out + err, f"{kind}:\n{err[-3000:]}"
            assert proc.returncode in allowed[kind], f"{kind} exit {proc.returncode}:\n{err[-3000:]}"
            done.append((kind, proc.returncode))
    final = subprocess.run(counted_run(audio, str(store)), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr
    s = FeatureStore(str(store))
    for group in COUNTED:
        fingerprint = s.model_attrs(group)["fingerprint"]
        assert {s.array(group, song).attrs["fingerprint"] for song in s.songs(group)} == {fingerprint}
        assert len(s.songs(group)) == 6
    check = subprocess.run(_operations(audio, store, tmp_path, 999)["validate --fix"][:-1], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert not list((store / LEASES).glob("*/**/zarr.json")), "leases left behind"
    return done


def test_each_kind_of_command_beside_the_others(tmp_path):
    done = mixed(tmp_path, rounds=2, at_once=3, seed=None)
    assert {kind for kind, _ in done} == {"extract", "overwrite", "validate --fix", "export-npy", "export-hdf5"}


@pytest.mark.slow
def test_random_commands_at_random_moments(tmp_path):
    done = mixed(tmp_path, rounds=12, at_once=4, seed=5)
    print(f"{len(done)} commands:", Counter(done))
