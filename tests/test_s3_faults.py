"""Runs on S3 through a proxy that injects faults (``FaultProxy`` in tests/helpers.py): HTTP 500, 503
SlowDown, connections reset after the server applied the request, answers held past the read timeout.

A run must retry what may pass, fail only the songs that still cannot be written (recorded in the store
when it takes the record, in the summary in any case), go on with the others and leave no lease behind;
once the faults stop, the same run completes the store exactly as a run that never met a fault.
"""

from __future__ import annotations

import errno
import json
import subprocess
import time

import pytest

import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.errors import StoreError, TransientStoreError
from featurestore.store import FeatureStore
from featurestore.store.leases import BEAT_ENV, Leases
from featurestore.store.remote import S3_CONFIG, is_transient, storage_options, store_errors

from .conftest import write_wav
from .fakes import assert_same_contents, computes, counted_env, counted_run, store_contents
from .helpers import (BROKEN, DELAY, FORBIDDEN, INTERNAL_ERROR, RESET, S3_BUCKET, SLOW_DOWN, FaultProxy, FaultRates,
                      moto_s3)

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fstore[s3]')")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")

#: the client's timeouts here: an answer held past them costs half a second, not fstore's default 15 s
TIMEOUTS = {"connect_timeout": 1, "read_timeout": 0.5}
#: how long the proxy holds a delayed answer: past the read timeout
HELD_S = 1.5
FAULT_KINDS = (INTERNAL_ERROR, SLOW_DOWN, RESET, DELAY)


@pytest.fixture(scope="module")
def s3():
    """storage_options for a fresh bucket on a moto S3 server."""
    with moto_s3() as options:
        yield options


def _endpoint(options: dict) -> str:
    return options["client_kwargs"]["endpoint_url"]


def _songs(folder, n: int) -> list:
    for i in range(n):
        write_wav(folder / f"s{i}.wav", 0.3, freq=300 + 25 * i)
    return discover(folder).files


def _run(url: str, options: dict, files: list) -> fsrun.Summary:
    return fsrun.run(FeatureStore(url, mode="a", storage_options=options), files, [registry.create("fake")])


def _wait_for(condition, timeout_s: float = 10.0) -> bool:
    """Whether ``condition()`` came true within ``timeout_s`` (polled: the heartbeat thread has no event to wait on)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_run_through_faults_fails_only_what_still_fails_and_completes_once_they_stop(tmp_path, s3, fake_models):
    files = _songs(tmp_path / "audio", 4)
    reference = f"s3://{S3_BUCKET}/reference.zarr"
    assert _run(reference, s3, files).ok
    url = f"s3://{S3_BUCKET}/faulty.zarr"
    rates = FaultRates(internal_error=0.025, slow_down=0.025, reset=0.025, delay=0.025)
    # every write of s3's array fails; fewer retries than fstore's 4 (2), so that song gives up in about 1.5 s
    with FaultProxy(_endpoint(s3), rates, seed=1, delay_s=HELD_S, broken=("PUT", r"/faulty\.zarr/fake/s3/")) as proxy:
        options = proxy.storage_options(**TIMEOUTS, retries={"max_attempts": 2})
        summary = _run(url, options, files)
        assert summary.stopped is None and not summary.interrupted
        assert all(proxy.counts[kind] > 0 for kind in (*FAULT_KINDS, BROKEN)), proxy.counts
        store = FeatureStore(url, storage_options=s3)  # seen directly, past the proxy
        complete, failed = set(store.songs("fake")), {r.song_id for r in summary.failures}
        assert "s3" in failed and complete | failed == {f.song_id for f in files} and not complete & failed
        assert summary.totals["fake"].done == len(complete)
        assert set(store.songs("fake", complete_only=False)) - complete <= failed  # unfinished writes: failed songs
        recorded = {f["song_id"] for f in store.failures("fake")}
        assert "s3" in recorded and recorded <= failed
        assert all(r.song_id in recorded or "not recorded in the store" in r.error for r in summary.failures)
        assert Leases(url, s3).held() == []

        proxy.faulty = False  # the same run again, through the same proxy, with the same options
        again = _run(url, options, files)
    assert again.ok and again.totals["fake"].done == len(failed) and again.totals["fake"].cached == len(complete)
    assert_same_contents(store_contents(url, s3, ("fake",)), store_contents(reference, s3, ("fake",)))
    assert FeatureStore(url, storage_options=s3).failures() == []
    assert Leases(url, s3).held() == []


def test_a_store_that_refuses_a_write_stops_the_run(tmp_path, s3, fake_models):
    """403 is no network failure: retrying it, or going on song after song, would not help."""
    files = _songs(tmp_path / "audio", 3)
    url = f"s3://{S3_BUCKET}/refused.zarr"
    with FaultProxy(_endpoint(s3), script={("PUT", r"/refused\.zarr/fake/s1/"): [FORBIDDEN] * 10}) as proxy:
        with pytest.raises(StoreError) as stopped:
            _run(url, proxy.storage_options(**TIMEOUTS), files)
        assert proxy.counts[FORBIDDEN] == 1  # not retried
    assert not isinstance(stopped.value, TransientStoreError) and "Access Denied" in str(stopped.value)
    assert "s1" not in FeatureStore(url, storage_options=s3).songs("fake")
    assert Leases(url, s3).held() == []


def test_a_lease_whose_create_was_answered_into_a_reset_is_this_runs(s3, monkeypatch):
    """The create reached the server, its answer was lost, and the client's retry found the lease there."""
    monkeypatch.setenv(BEAT_ENV, "0.2")
    url = f"s3://{S3_BUCKET}/lost-create.zarr"
    FeatureStore(url, mode="a", storage_options=s3)
    with FaultProxy(_endpoint(s3), script={("PUT", r"/_leases/song/zarr\.json$"): [RESET]}) as proxy:
        leases = Leases(url, proxy.storage_options(**TIMEOUTS))
        assert leases.acquire("song", "run-a") is None
        assert proxy.counts[RESET] == 1
        first = leases.owner("song")["time"]
        assert _wait_for(lambda: leases.owner("song")["time"] > first), "the heartbeat does not keep the lease"
        assert Leases(url, s3).acquire("song", "run-b")["run"] == "run-a"
        leases.release("song", "run-a")
    assert Leases(url, s3).held() == []


def test_a_lease_the_store_will_not_delete_goes_stale_and_is_taken_over(s3, monkeypatch):
    monkeypatch.setenv(BEAT_ENV, "0.2")
    url = f"s3://{S3_BUCKET}/undeletable.zarr"
    FeatureStore(url, mode="a", storage_options=s3)
    with FaultProxy(_endpoint(s3), broken=("DELETE", r"/_leases/song/zarr\.json$")) as proxy:
        leases = Leases(url, proxy.storage_options(**TIMEOUTS, retries={"max_attempts": 1}))
        assert leases.acquire("song", "run-a") is None
        leases.release("song", "run-a")  # fails past the retries: left to go stale, not raised
        assert proxy.counts[BROKEN] == 2 and Leases(url, s3).owner("song")["run"] == "run-a"
        other = Leases(url, s3)
        assert _wait_for(lambda: other.acquire("song", "run-b") is None), "the lease is still renewed"
        other.release("song", "run-b")
    assert Leases(url, s3).held() == []


def test_a_takeover_whose_marker_was_answered_into_a_reset_goes_on(s3):
    url = f"s3://{S3_BUCKET}/lost-marker.zarr"
    store = FeatureStore(url, mode="a", storage_options=s3)
    dead = {"run": "dead-run", "host": "elsewhere", "pid": 1, "time": 0.0, "beat": 30.0}  # long stale
    store.leases.fs.pipe_file(f"{store.leases.root}/_leases/song/zarr.json",
                              json.dumps({"zarr_format": 3, "node_type": "group", "attributes": dead}).encode())
    with FaultProxy(_endpoint(s3), script={("PUT", r"/_leases/__takeover/song/"): [RESET]}) as proxy:
        leases = Leases(url, proxy.storage_options(**TIMEOUTS))
        assert leases.acquire("song", "run-a") is None  # the marker is this run's: the takeover went on
        assert proxy.counts[RESET] == 1
        assert leases.owner("song")["run"] == "run-a"
        leases.release("song", "run-a")
    assert Leases(url, s3).held() == []


@pytest.mark.slow
def test_two_cli_runs_through_heavy_faults_then_one_without_complete_the_store(tmp_path, s3):
    """40 songs, 30 % of requests faulty, two ``fstore extract`` runs at once configured the way a user
    would (fsspec's environment variables), then the same command once the faults stop."""
    audio, log, models = tmp_path / "audio", tmp_path / "log", ("cfake",)
    for i in range(40):
        write_wav(audio / f"s{i}.wav", 0.4, freq=250 + 10 * i)
    done = subprocess.run(counted_run(audio, str(tmp_path / "ref.zarr"), models=models),
                          env=counted_env(tmp_path / "reflog", 0), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    url = f"s3://{S3_BUCKET}/heavy.zarr"
    rates = FaultRates(internal_error=0.075, slow_down=0.075, reset=0.075, delay=0.075)
    with FaultProxy(_endpoint(s3), rates, seed=7, delay_s=HELD_S, broken=("PUT", r"/heavy\.zarr/cfake/s1[05]/")) as proxy:
        env = counted_env(log, 0.05, FSSPEC_S3_ENDPOINT_URL=proxy.endpoint, FSSPEC_S3_CONFIG_KWARGS=json.dumps(TIMEOUTS))
        command = counted_run(audio, url, "--json", models=models)
        runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        summaries = []
        for run in runs:
            out, err = run.communicate(timeout=900)
            assert run.returncode in (0, 1, 3), err  # 1: failed songs, reported; 3: songs left to the other run
            summaries.append(json.loads(out))
        assert all(s["stopped"] is None for s in summaries)
        assert all(proxy.counts[kind] > 0 for kind in (*FAULT_KINDS, BROKEN)), proxy.counts
        # a song one run reported failed may have been done by the other since; every song not done was reported
        missing = {f"s{i}" for i in range(40)} - set(FeatureStore(url, storage_options=s3).songs("cfake"))
        assert {"s10", "s15"} <= missing <= {f["song_id"] for s in summaries for f in s["failures"]}
        assert Leases(url, s3).held() == []
        first = len(computes(log))

        proxy.faulty = False
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert final.returncode == 0, final.stderr
        assert len(computes(log)) - first == len(missing)  # only what was missing is computed again
    assert_same_contents(store_contents(url, s3, models), store_contents(str(tmp_path / "ref.zarr"), models=models))
    assert FeatureStore(url, storage_options=s3).failures() == []
    assert Leases(url, s3).held() == []


def _answered(status: int, code: str) -> OSError:
    """What s3fs raises for an S3 error answer: botocore's ClientError turned into an OSError, as its cause."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    return translate_boto_error(ClientError({"Error": {"Code": code, "Message": code},
                                             "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"))


def test_store_errors_that_may_pass_are_told_from_those_that_will_not():
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    may_pass = [_answered(500, "InternalError"), _answered(503, "SlowDown"), _answered(400, "RequestTimeout"),
                ConnectionClosedError(endpoint_url="http://s3"), ReadTimeoutError(endpoint_url="http://s3"),
                EndpointConnectionError(endpoint_url="http://s3"), ConnectionResetError(), TimeoutError()]
    will_not = [_answered(403, "AccessDenied"), _answered(404, "NoSuchBucket"), OSError(errno.ENOSPC, "No space left"),
                PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EROFS, "Read-only file system"),
                OSError(errno.EIO, "Input/output error")]
    assert [is_transient(e) for e in may_pass] == [True] * len(may_pass)
    assert [is_transient(e) for e in will_not] == [False] * len(will_not)
    for error, kind in ((may_pass[0], TransientStoreError), (will_not[0], StoreError)):
        with pytest.raises(StoreError) as raised, store_errors("cannot write"):
            raise error
        assert type(raised.value) is kind and raised.value.__cause__ is error


def test_s3_stores_open_with_fstores_retry_settings_under_the_users(s3, monkeypatch):
    import fsspec
    from fsspec.config import set_conf_env

    url = f"s3://{S3_BUCKET}/settings.zarr"
    store = FeatureStore(url, mode="a", storage_options=s3)
    assert store.leases.acquire("song", "run") is None  # the leases' client, as botocore built it
    store.leases.release("song", "run")
    config = store.leases.fs.s3.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": S3_CONFIG["retries"]["max_attempts"] + 1}
    assert (config.connect_timeout, config.read_timeout) == (S3_CONFIG["connect_timeout"], S3_CONFIG["read_timeout"])
    # the user's own win, key by key, also inside retries; what is not S3 is left as given
    given = storage_options(url, {"anon": True, "config_kwargs": {"read_timeout": 60, "retries": {"max_attempts": 9}}})
    assert given == {"anon": True, "config_kwargs": {**S3_CONFIG, "read_timeout": 60,
                                                      "retries": {"mode": "standard", "max_attempts": 9}}}
    assert storage_options("/data/features.zarr", {"auto_mkdir": True}) == {"auto_mkdir": True}
    # fsspec's configuration, here from the environment as a user of ``fstore extract`` sets it, is the user's too
    configured: dict = {}
    set_conf_env(configured, {"FSSPEC_S3_CONFIG_KWARGS": '{"connect_timeout": 2, "retries": {"mode": "adaptive"}}'})
    monkeypatch.setattr(fsspec.config, "conf", configured)
    assert storage_options(url)["config_kwargs"] == {**S3_CONFIG, "connect_timeout": 2,
                                                     "retries": {"mode": "adaptive", "max_attempts": 4}}
    assert storage_options(url, {"config_kwargs": {"connect_timeout": 3}})["config_kwargs"]["connect_timeout"] == 3
