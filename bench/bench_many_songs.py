"""How long listing, info, loading one song and export-npy take on a store of many tiny songs.

    python bench/bench_many_songs.py /tmp/many.zarr 10000
    python bench/bench_many_songs.py --s3 1000      # into s3://bench/many.zarr on a local moto server

Writes N arrays of shape (10, 2) into a fresh group ``fake`` (a local path is removed first), then
times each read operation once, each from a freshly opened store. Imports (xarray, dask) happen
before the clock starts. ``--s3`` needs moto[server] and s3fs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from featurestore.export import export_npy
from featurestore.read import open_store
from featurestore.store import FeatureStore

AXIS = {"sample_rate": 8000, "hop_samples": 80, "t0_samples": 40}


def timed(name: str, op: Callable[[], Any]) -> None:
    start = time.perf_counter()
    op()
    print(f"{name}: {time.perf_counter() - start:.2f} s", flush=True)


def moto_endpoint() -> dict[str, Any]:
    """storage_options for a fresh bucket ``bench`` on a moto S3 server started in this process."""
    import logging
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="bench")
    return {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}


def main(url: str, n: int, options: dict[str, Any] | None = None) -> None:
    import xarray  # noqa: F401  (imported here so that "load one song" times the store, not the import)

    if "://" not in url:
        shutil.rmtree(url, ignore_errors=True)
    store = FeatureStore(url, mode="a", storage_options=options)
    store.ensure_model("fake", {"model": "fake", "fingerprint": "x", "dims": ["time", "feature"],
                                "dtype": "float32", "group": "fake", "frame_rate_hz": 100.0, "hop_s": 0.01,
                                "t0_s": 0.005, **AXIS})  # what `fstore info URL` prints, so it runs on this store too
    start = time.perf_counter()
    for i in range(n):
        store.write("fake", f"song{i:05d}", np.full((10, 2), i, np.float32),
                    {"model": "fake", "fingerprint": "x", "duration_s": 0.1, "n_samples": 800, "source": {},
                     "dims": ["time", "feature"], **AXIS})
    print(f"write {n} songs: {time.perf_counter() - start:.1f} s", flush=True)
    timed("FeatureStore.songs()", lambda: FeatureStore(url, storage_options=options).songs("fake"))
    timed("open_store().songs()", lambda: open_store(url, storage_options=options).songs("fake"))
    timed("info", lambda: open_store(url, storage_options=options).info())
    timed("load one song", lambda: open_store(url, storage_options=options).load("song00042", "fake"))
    with tempfile.TemporaryDirectory() as out:
        timed("export-npy", lambda: export_npy(FeatureStore(url, storage_options=options), out))


if __name__ == "__main__":
    if sys.argv[1] == "--s3":
        main("s3://bench/many.zarr", int(sys.argv[2]), moto_endpoint())
    else:
        main(sys.argv[1], int(sys.argv[2]))
