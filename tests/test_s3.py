"""Stores on an S3 endpoint (moto's server on localhost, through s3fs): extract, leases, read, export."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import pipeline
from featurestore.discover import discover
from featurestore.export import export_npy
from featurestore.extractors import registry
from featurestore.leases import Leases
from featurestore.read import open_store
from featurestore.store import FeatureStore

from .conftest import write_wav

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fstore[s3]')")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """storage_options for a fresh bucket on a moto S3 server at 127.0.0.1 (random port)."""
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="fstore-test")
    yield {"client_kwargs": {"endpoint_url": endpoint}}
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_extract_read_and_export_on_s3(tmp_path, s3, fake_models):
    audio = tmp_path / "audio"
    for i in range(3):
        write_wav(audio / f"s{i}.wav", 0.3, freq=300 + 50 * i)
    local = FeatureStore(str(tmp_path / "ref.zarr"), mode="a")
    pipeline.run(local, discover(audio).files, [registry.create("fake")])
    url = "s3://fstore-test/features.zarr"
    store = FeatureStore(url, mode="a", storage_options=s3)
    summary = pipeline.run(store, discover(audio).files, [registry.create("fake")])
    assert summary.ok and summary.totals["fake"].done == 3
    assert Leases(url, s3).held() == []
    again = pipeline.run(FeatureStore(url, mode="a", storage_options=s3), discover(audio).files,
                         [registry.create("fake")])
    assert again.totals["fake"].cached == 3  # resumed: nothing computed twice
    reader = open_store(url, storage_options=s3)
    assert reader.songs("fake") == ["s0", "s1", "s2"]
    for song in ("s0", "s1", "s2"):
        np.testing.assert_array_equal(np.asarray(reader.load(song, "fake")), local.array("fake", song)[...])
    export_npy(FeatureStore(url, storage_options=s3), tmp_path / "npy")
    assert sorted(p.name for p in (tmp_path / "npy" / "fake").glob("*.npy")) == ["s0.npy", "s1.npy", "s2.npy"]


def test_two_runs_on_s3_never_hold_one_song(s3):
    url = "s3://fstore-test/leases.zarr"
    FeatureStore(url, mode="a", storage_options=s3)
    a, b = Leases(url, s3), Leases(url, s3)
    assert a.acquire("x", "run-a") is None  # a conditional put (If-None-Match: *) ...
    assert b.acquire("x", "run-b")["run"] == "run-a"  # ... that the second run loses
    a.release("x", "run-a")
    assert b.acquire("x", "run-b") is None
    b.release("x", "run-b")
    assert a.held() == []
