"""Similar-song search: exact cosine top-k per query, its memory and precision, and the approximate index.

    python bench/bench_similar.py                           # 10k and 100k songs, 512-d and 768-d
    python bench/bench_similar.py --sizes 1000000 --dims 512 --backend none
    python bench/bench_similar.py --pool-songs 200           # + what pooling a store costs per song

The vectors stand for pooled embeddings: songs around n/20 random centres ("albums"), unit-variance
centres plus noise of standard deviation 0.5, float32. Exact times are the best of 3 (after one
warm-up) on one query with the norms computed in the call (``cosine_top_k``, as ``store.similar``
does after pooling) and with them kept (``SongIndex.query``), and per query in a batch. Peak
memory is what numpy allocates during one call beyond the vectors (tracemalloc). Precision is the
largest difference of the returned scores from float64 cosine. The approximate index (hnswlib or
faiss, if installed) is built with its defaults and its recall@10 measured against the exact
search on 200 queries. Pooling a store is timed on a temporary store of songs of 296 x 512 float32
(30 s of OpenL3).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds  # noqa: E402

from featurestore.similar import ApproximateIndex, approximate_backend, cosine_top_k, recall_at_k, row_norms  # noqa: E402

K = 10
BATCH = 64
RECALL_QUERIES = 200


def pooled_like(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 vectors around n/20 random centres, built a block at a time (no float64 copy)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 20, 1), d), dtype=np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        out[start:stop] = centres[rng.integers(len(centres), size=stop - start)]
        out[start:stop] += 0.5 * rng.standard_normal((stop - start, d), dtype=np.float32)
    return out


def peak_mib(fn) -> float:
    """MiB numpy allocated at the peak of ``fn()`` beyond what was allocated before."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def max_error(queries: np.ndarray, vectors: np.ndarray, indices: np.ndarray, scores: np.ndarray) -> float:
    """Largest |score - float64 cosine| over the returned (query, row) pairs."""
    q = queries.astype(np.float64)
    v = vectors[indices].astype(np.float64)  # (q, k, d)
    exact = np.einsum("qd,qkd->qk", q, v) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(v, axis=2))
    return float(np.max(np.abs(exact - scores)))


def exact_row(vectors: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    queries = vectors[rng.choice(len(vectors), size=BATCH, replace=False)]
    norms = row_norms(vectors)
    one = queries[:1]
    indices, scores = cosine_top_k(queries, vectors, K, norms=norms)
    return {
        "query_ms": 1e3 * best_seconds(lambda: cosine_top_k(one, vectors, K)),
        "kept_ms": 1e3 * best_seconds(lambda: cosine_top_k(one, vectors, K, norms=norms)),
        "batch_ms": 1e3 * best_seconds(lambda: cosine_top_k(queries, vectors, K, norms=norms), repeats=2) / BATCH,
        "peak_mib": peak_mib(lambda: cosine_top_k(one, vectors, K)),
        "error": max_error(queries, vectors, indices, scores),
    }


def approximate_row(vectors: np.ndarray, backend: str, rng: np.random.Generator) -> dict[str, float]:
    start = time.perf_counter()
    index = ApproximateIndex.build(vectors, backend=backend)
    build_s = time.perf_counter() - start
    queries = vectors[rng.choice(len(vectors), size=RECALL_QUERIES, replace=False)]
    truth, _ = cosine_top_k(queries, vectors, K)
    found, _ = index.search(queries, K)
    one_ms = 1e3 * best_seconds(lambda: index.search(queries[:1], K))
    return {"build_s": build_s, "ann_ms": one_ms, "recall": recall_at_k(found, truth)}


def pooling_ms_per_song(songs: int) -> float:
    """Milliseconds per song of ``StoreReader.pooled`` on a fresh local store of OpenL3-shaped songs."""
    import featurestore as fs
    from featurestore.extractors.base import TimeAxis
    from featurestore.store import FeatureStore

    axis = TimeAxis(48000, 4800, 0)
    attrs = {"model": "openl3", "fingerprint": "bench", "dims": ["time", "feature"], "dtype": "float32",
             "group": "openl3", **axis.as_attrs()}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(os.path.join(tmp, "pool.zarr"), mode="a")
        store.ensure_model("openl3", attrs)
        for i in range(songs):
            store.write("openl3", f"song{i:05d}", rng.standard_normal((296, 512), dtype=np.float32),
                        {**attrs, "duration_s": 30.0, "n_samples": 30 * 48000, "source": {}})
        reader = fs.open_store(store.url)
        reader.pooled("openl3", songs=reader.songs("openl3")[:2])  # imports and dask warm-up
        start = time.perf_counter()
        reader.pooled("openl3")
        return 1e3 * (time.perf_counter() - start) / songs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="numbers of songs, comma-separated")
    parser.add_argument("--dims", default="512,768", help="vector widths, comma-separated")
    parser.add_argument("--backend", default="auto",
                        help="approximate index: auto (the first installed), hnswlib, faiss, all, or none")
    parser.add_argument("--pool-songs", type=int, default=0, metavar="N",
                        help="also time pooling a temporary store of N OpenL3-shaped songs")
    args = parser.parse_args()
    backends = {"none": [], "all": ["hnswlib", "faiss"], "auto": ["auto"]}.get(args.backend, [args.backend])
    available = []
    for backend in backends:
        try:
            available.append(approximate_backend(backend))
        except ImportError as e:
            print(f"note: {e}")
    load = os.getloadavg()[0]
    print(f"exact cosine top-{K}, float32; {os.cpu_count()} CPUs, load {load:.2f} at start")
    print(f"{'songs':>8} {'d':>4} {'1 query':>9} {'norms kept':>11} {f'in {BATCH}s':>9} {'peak':>9} {'max err':>8}"
          + "".join(f" | {b:>8} {'build':>7} {'query':>8} {'recall':>6}" for b in available))
    for n in (int(s) for s in args.sizes.split(",")):
        for d in (int(s) for s in args.dims.split(",")):
            vectors = pooled_like(n, d)
            rng = np.random.default_rng(1)
            row = exact_row(vectors, rng)
            line = (f"{n:>8} {d:>4} {row['query_ms']:>6.1f} ms {row['kept_ms']:>8.1f} ms {row['batch_ms']:>6.2f} ms"
                    f" {row['peak_mib']:>5.1f} MiB {row['error']:>8.1e}")
            for backend in available:
                ann = approximate_row(vectors, backend, rng)
                line += f" | {backend:>8} {ann['build_s']:>6.1f}s {ann['ann_ms']:>5.2f} ms {ann['recall']:>6.3f}"
            print(line, flush=True)
    if args.pool_songs:
        per_song = pooling_ms_per_song(args.pool_songs)
        print(f"pooling (StoreReader.pooled, mean) of {args.pool_songs} songs of 296 x 512 float32 "
              f"on local disk: {per_song:.1f} ms per song")
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
