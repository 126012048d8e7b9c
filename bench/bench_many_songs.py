"""How long listing, info, loading one song and export-npy take on a store of many tiny songs.

    python bench/bench_many_songs.py /tmp/many.zarr 10000

Writes N arrays of shape (10, 2) into a fresh group ``fake`` at the given path (removed first),
then times each read operation once, each from a freshly opened store.
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


def main(url: str, n: int) -> None:
    shutil.rmtree(url, ignore_errors=True)
    store = FeatureStore(url, mode="a")
    store.ensure_model("fake", {"model": "fake", "fingerprint": "x", "dims": ["time", "feature"],
                                "dtype": "float32", "group": "fake", **AXIS})
    start = time.perf_counter()
    for i in range(n):
        store.write("fake", f"song{i:05d}", np.full((10, 2), i, np.float32), ("time", "feature"),
                    {"model": "fake", "fingerprint": "x", "duration_s": 0.1, "n_samples": 800, "source": {}, **AXIS})
    print(f"write {n} songs: {time.perf_counter() - start:.1f} s", flush=True)
    timed("FeatureStore.songs()", lambda: FeatureStore(url).songs("fake"))
    timed("open_store().songs()", lambda: open_store(url).songs("fake"))
    timed("info", lambda: open_store(url).info())
    timed("load one song", lambda: open_store(url).load("song00042", "fake"))
    with tempfile.TemporaryDirectory() as out:
        timed("export-npy", lambda: export_npy(FeatureStore(url), out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
