"""FeatureWindows through a DataLoader: windows per second and peak memory per worker, on Zarr and HDF5.

    python bench/bench_windows.py                          # 1,000 songs, 0/1/2/4 workers, Zarr and HDF5
    python bench/bench_windows.py --songs 100 --workers 0,2 --batches 10
    python bench/bench_windows.py --store /data/features.zarr --models openl3,madmom --align madmom

Without ``--store`` it builds a temporary store of ``--songs`` 30-s songs of random float32 arrays of
the real shapes, OpenL3 (296, 512) at 10 Hz and madmom (3000,) at 100 Hz, and exports it to HDF5
(``featurestore.export.export_hdf5``). Each configuration runs in a fresh process (so memory is
not the builder's): ``FeatureWindows(store, models, window_s, align=..., pad="drop")`` through
``DataLoader(batch_size, shuffle=True, num_workers=N, collate_fn=collate_windows)`` on Linux's
default ``fork``. "windows/s" counts the windows of ``--batches`` batches after the first; "first
batch" is the time to the first batch (worker start, store opening, first reads); "index" is the
time to build the dataset (metadata only). "peak RSS" is ``getrusage(RUSAGE_SELF).ru_maxrss`` of each
process that reads (the main one with 0 workers, else the largest of the workers), which counts
pages shared with the main process (torch's libraries) in every worker; "USS" (psutil, when
installed) is the memory a reading process holds alone at the end, what each extra worker costs.
Random values compress little: reads cost about what real embeddings cost, decompression a little more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

OPENL3 = (48000, 4800, 0, (296, 512), ("time", "feature"))  # (sample rate, hop, t0, shape, dims) of 30 s
MADMOM = (44100, 441, 0, (3000,), ("time",))


def build(folder: str, songs: int) -> tuple[str, str]:
    """A Zarr store of ``songs`` random OpenL3- and madmom-shaped songs, and its HDF5 export: their paths."""
    from featurestore.clock import TimeAxis
    from featurestore.export import export_hdf5
    from featurestore.store import FeatureStore

    url, h5 = os.path.join(folder, "bench.zarr"), os.path.join(folder, "bench.h5")
    store = FeatureStore(url, mode="a")
    rng = np.random.default_rng(0)
    for group, (rate, hop, t0, shape, dims) in {"openl3": OPENL3, "madmom": MADMOM}.items():
        axis = TimeAxis(rate, hop, t0)
        attrs = {"model": group, "fingerprint": "bench", "dims": list(dims), "dtype": "float32", "group": group,
                 **axis.as_attrs()}
        store.ensure_model(group, attrs)
        for i in range(songs):
            store.write(group, f"album{i // 10:03d}/song{i % 10}", rng.standard_normal(shape, dtype=np.float32),
                        {**attrs, "duration_s": 30.0, "n_samples": 30 * rate, "source": {}})
    export_hdf5(FeatureStore(url), h5)
    return url, h5


def with_memory(item: dict[str, Any]) -> dict[str, Any]:
    """The ``transform``: each item says which process read it and that process's peak RSS (KiB) so far."""
    item["_pid"], item["_rss_kib"] = os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``collate_windows``, with what ``with_memory`` added set aside as ``_memory``: (pid, peak RSS) per item."""
    from featurestore.torch import collate_windows

    memory = [(item.pop("_pid"), item.pop("_rss_kib")) for item in items]
    batch = collate_windows(items)
    batch["_memory"] = memory
    return batch


def uss_mib(pids: list[int]) -> float | None:
    """The largest unique set size (MiB) of the processes ``pids`` (psutil), or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return max(psutil.Process(pid).memory_full_info().uss for pid in pids) / 2**20


def measure(store: str, models: list[str], align: str | None, window_s: float, workers: int, batch_size: int,
            batches: int) -> dict[str, Any]:
    """One configuration, in this process: the dataset, then ``batches`` + 1 batches through a DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from featurestore.torch import FeatureWindows

    start = time.perf_counter()
    windows = FeatureWindows(store, models, window_s=window_s, align=align, pad="drop", transform=with_memory)
    index_s = time.perf_counter() - start
    loader = DataLoader(windows, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    iterator = iter(loader)
    batch = next(iterator)
    first_s = time.perf_counter() - start
    shapes = {m: list(batch[m].shape) for m in windows.models}
    peaks: dict[int, int] = {}
    start, counted = time.perf_counter(), 0
    for n in range(batches + 1):
        if n:  # the batch before is let go: the main process holds one at a time
            batch = next(iterator)
            counted += len(batch["song_id"])
        for pid, rss in batch["_memory"]:
            peaks[pid] = max(peaks.get(pid, 0), rss)
    elapsed = time.perf_counter() - start
    uss = uss_mib(list(peaks))  # while the workers live: the iterator holds them
    return {"windows": len(windows), "index_s": index_s, "first_s": first_s, "per_s": counted / elapsed,
            "readers": len(peaks), "rss_mib": max(peaks.values()) / 1024, "uss_mib": uss, "shapes": shapes}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=1000, help="songs of the temporary store (default 1000)")
    parser.add_argument("--store", action="append", help="existing stores to read instead (repeatable)")
    parser.add_argument("--models", default="openl3,madmom")
    parser.add_argument("--align", default="madmom", help="the clock to align on, or 'none' for each its own")
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--workers", default="0,1,2,4")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="batches timed after the first")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one configuration (JSON)
    args = parser.parse_args()
    models, align = args.models.split(","), None if args.align == "none" else args.align
    if args.one:
        store, workers = json.loads(args.one)
        print(json.dumps(measure(store, models, align, args.window_s, workers, args.batch_size, args.batches)))
        return
    print(f"{os.cpu_count()} CPUs ({cpu_model()}), load {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            stores = args.store
        else:
            start = time.perf_counter()
            stores = list(build(tmp, args.songs))
            print(f"built {args.songs} songs of OpenL3 (296, 512) + madmom (3000,) float32 and their HDF5 export "
                  f"in {time.perf_counter() - start:.0f} s")
        print(f"window {args.window_s:g} s, align {align}, pad drop, batch {args.batch_size}, shuffled, "
              f"{args.batches} batches timed")
        print(f"{'store':<6} {'workers':>7} {'windows':>8} {'index':>7} {'first batch':>11} {'windows/s':>10} "
              f"{'peak RSS':>9} {'USS':>8}  shapes")
        for store in stores:
            kind = "HDF5" if store.endswith(".h5") else "Zarr"
            for workers in (int(w) for w in args.workers.split(",")):
                one = json.dumps([store, workers])
                done = subprocess.run([sys.executable, __file__, "--one", one, "--models", args.models, "--align",
                                       args.align, "--window-s", str(args.window_s), "--batch-size",
                                       str(args.batch_size), "--batches", str(args.batches)],
                                      capture_output=True, text=True, check=True)
                r = json.loads(done.stdout.splitlines()[-1])
                uss = f"{r['uss_mib']:.0f} MiB" if r["uss_mib"] is not None else "n/a"
                print(f"{kind:<6} {workers:>7} {r['windows']:>8} {r['index_s']:>6.1f}s {r['first_s']:>10.2f}s "
                      f"{r['per_s']:>10.0f} {r['rss_mib']:>5.0f} MiB {uss:>8}  "
                      + " ".join(f"{m} {tuple(s)}" for m, s in r["shapes"].items()), flush=True)
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
