"""Similar songs: the nearest pooled embeddings by cosine similarity.

    import featurestore as fs
    store = fs.open_store("features.zarr")
    store.similar("rock/song1", "openl3", k=10)        # one query: pools the group, searches exactly

    from featurestore.similar import SongIndex
    index = SongIndex.from_store(store, "openl3")       # pool once, then query many times
    index.query("rock/song1", k=10)

The search itself works on plain arrays: :func:`cosine_top_k` is exact and reads the vectors a
block of rows at a time, so its memory does not grow with their number (they may be a memmap,
a Zarr or an HDF5 array); :class:`ApproximateIndex` wraps hnswlib or faiss (optional, for
millions of songs) and :func:`recall_at_k` measures it against the exact search.

Cosine similarity is undefined for a zero vector (and for one holding NaN or inf): such a
vector gets the score NaN against everything, and NaN ranks after every number.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: rows of ``vectors`` scored at a time by default: 8192 x 512 float32 is 16 MiB
BLOCK_ROWS = 8192
#: queries scored together against one block (bounds the block x queries score matrix)
QUERY_BLOCK = 256
BACKENDS = ("hnswlib", "faiss")


def row_norms(vectors: Any, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Euclidean norm of each row, summed in float64.

    Parameters
    ----------
    vectors : array-like, shape (n, d)
        Anything that slices into rows (numpy array, memmap, Zarr or HDF5 array).
    block_rows : int
        Rows read and converted at a time.

    Returns
    -------
    np.ndarray, shape (n,), float64
        NaN for a row holding NaN, inf for a row holding inf.
    """
    n = vectors.shape[0]
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, block_rows):
        block = np.asarray(vectors[start:start + block_rows], dtype=np.float32)
        out[start:start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
    return out


def _inverse(norms: np.ndarray) -> np.ndarray:
    """1 / norm as float32, NaN where the norm is zero or not finite (cosine undefined)."""
    ok = np.isfinite(norms) & (norms > 0)
    return np.where(ok, 1.0 / np.where(ok, norms, 1.0), np.nan).astype(np.float32)


def normalize_rows(x: Any) -> np.ndarray:
    """Rows scaled to unit length in float64 and returned as float32; NaN rows where undefined.

    Parameters
    ----------
    x : array-like, shape (m, d)

    Returns
    -------
    np.ndarray, shape (m, d), float32
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    ok = np.isfinite(norms) & (norms > 0)
    return np.where(ok[:, None], x / np.where(ok, norms, 1.0)[:, None], np.nan).astype(np.float32)


def _block_top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` largest keys of each row, in ascending column order; among equal keys
    at the cut, the lowest columns (so that ties go to the lower index, as in a full sort)."""
    rows, cols = keys.shape
    if k >= cols:
        return np.broadcast_to(np.arange(cols), (rows, cols))
    picked = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    cut = keys[np.arange(rows)[:, None], picked].min(axis=1)
    crowded = np.flatnonzero((keys >= cut[:, None]).sum(axis=1) > k)  # ties straddle the cut
    for r in crowded:  # rare: duplicate vectors, or zero vectors when k exceeds the others
        above = np.flatnonzero(keys[r] > cut[r])
        picked[r] = np.concatenate([above, np.flatnonzero(keys[r] == cut[r])[: k - len(above)]])
    return np.sort(picked, axis=1)


def cosine_top_k(queries: Any, vectors: Any, k: int, block_rows: int = BLOCK_ROWS,
                 norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` most cosine-similar to each query, exactly.

    ``vectors`` is read ``block_rows`` rows at a time and each block is scored against up to
    ``QUERY_BLOCK`` queries at once, so memory holds one block (``block_rows x d`` float32), its
    scores (``block_rows x 256`` float32) and the running results (``q x k``), whatever ``n``.
    Dot products are float32 (BLAS); the norms are summed in float64. Scores are within a few
    float32 rounding steps of float64 cosine (up to 6e-7 measured for d = 512 and 768; at most
    ``d * 2**-24``) and clipped to [-1, 1]. One query against 100k x 512 takes about 30 ms with
    ``norms`` given, 120 ms without (one core; see bench/bench_similar.py).

    Parameters
    ----------
    queries : array-like, shape (q, d)
    vectors : array-like, shape (n, d)
        Anything that slices into rows (numpy array, memmap, Zarr or HDF5 array).
    k : int
        Neighbours per query; at most ``n`` are returned.
    block_rows : int
        Rows of ``vectors`` scored at a time. The rows returned do not depend on it, but for
        scores within a rounding step of each other: BLAS sums in an order that depends on the
        block's shape, so one vector can score a step apart in blocks of other sizes (and exact
        duplicates in different blocks may then not come in row order).
    norms : np.ndarray, shape (n,), optional
        ``row_norms(vectors)``, when the caller keeps them for many calls (saves one float64
        pass over ``vectors`` per call).

    Returns
    -------
    indices : np.ndarray, shape (q, min(k, n)), int64
        Rows of ``vectors``, best first; equal scores in ascending row order.
    scores : np.ndarray, shape (q, min(k, n)), float32
        Cosine similarities; NaN where undefined (a zero or non-finite vector or query), ranked last.
    """
    queries = np.atleast_2d(np.asarray(queries))
    n, d = vectors.shape
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ValueError(f"queries of shape {queries.shape} do not match vectors of width {d}")
    if k < 1 or block_rows < 1:
        raise ValueError(f"k and block_rows must be at least 1, not {k} and {block_rows}")
    if norms is not None and len(norms) != n:
        raise ValueError(f"{len(norms)} norms for {n} vectors")
    unit_queries = normalize_rows(queries)
    q, k = len(queries), min(k, n)
    best_index = np.zeros((q, 0), dtype=np.int64)
    best_key = np.zeros((q, 0), dtype=np.float32)
    for start in range(0, n, block_rows):
        block = np.asarray(vectors[start:start + block_rows], dtype=np.float32)
        block_norms = norms[start:start + len(block)] if norms is not None else \
            np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        inverse = _inverse(block_norms)
        merged_index, merged_key = [], []
        for first in range(0, q, QUERY_BLOCK):
            scores = (unit_queries[first:first + QUERY_BLOCK] @ block.T) * inverse  # (queries, rows)
            keys = np.where(np.isnan(scores), -np.inf, scores)
            columns = _block_top_k(keys, k)
            # earlier blocks hold lower rows, so a stable sort of [kept, new] keeps ties in row order
            index = np.concatenate([best_index[first:first + QUERY_BLOCK], start + columns], axis=1)
            key = np.concatenate([best_key[first:first + QUERY_BLOCK],
                                  np.take_along_axis(keys, columns, axis=1)], axis=1)
            order = np.argsort(-key, axis=1, kind="stable")[:, :k]
            merged_index.append(np.take_along_axis(index, order, axis=1))
            merged_key.append(np.take_along_axis(key, order, axis=1))
        best_index, best_key = np.concatenate(merged_index), np.concatenate(merged_key)
    scores = np.clip(np.where(np.isneginf(best_key), np.nan, best_key), -1.0, 1.0).astype(np.float32)
    return best_index, scores


class ApproximateIndex:
    """An HNSW graph of unit vectors (hnswlib or faiss) for fast, approximate cosine search.

    Worth it from about a million vectors, where an exact query takes 0.2 s (norms kept) to 1 s;
    below that the exact search is fast enough and needs no build (100k x 512: 100 s on 2 cores).
    Vectors whose cosine is undefined (zero or non-finite) are left out of the graph. Results are
    not guaranteed to be the exact neighbours: :func:`recall_at_k` measures how many are. Recall
    depends on the data: 1.0 at k = 10 on clustered vectors like embeddings of related songs, far
    lower on structureless noise (0.2 to 0.6 for 20k x 512 Gaussian vectors, ef_search 64 to 256).
    """

    def __init__(self, backend: str, index: Any, rows: np.ndarray, dim: int, ef_search: int) -> None:
        self.backend, self._index, self._rows, self.dim, self.ef_search = backend, index, rows, dim, ef_search

    def __len__(self) -> int:
        return len(self._rows)

    @classmethod
    def build(cls, vectors: Any, backend: str = "auto", m: int = 16, ef_construction: int = 100,
              ef_search: int = 64, block_rows: int = BLOCK_ROWS) -> "ApproximateIndex":
        """Build the graph of ``vectors``.

        Parameters
        ----------
        vectors : array-like, shape (n, d)
            Read and normalised ``block_rows`` rows at a time; the graph holds n x d float32
            plus about ``2 * m`` links per vector.
        backend : {"auto", "hnswlib", "faiss"}
            "auto" takes hnswlib if it is installed, else faiss.
        m, ef_construction, ef_search : int
            HNSW parameters: links per node, candidate list while building and while searching
            (larger: better recall, slower). ``ef_search`` is raised to ``k`` when a search asks more.

        Raises
        ------
        ImportError
            When the backend (for "auto": neither) is installed, naming the pip package.
        """
        backend = approximate_backend(backend)
        n, d = vectors.shape
        if backend == "hnswlib":
            import hnswlib

            index = hnswlib.Index(space="ip", dim=d)
            index.init_index(max_elements=max(n, 1), M=m, ef_construction=ef_construction)
        else:
            import faiss

            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        rows, added = [np.zeros(0, np.int64)], 0  # rows[j]: the input row of graph label j
        for start in range(0, n, block_rows):
            unit = normalize_rows(vectors[start:start + block_rows])
            valid = np.flatnonzero(~np.isnan(unit).any(axis=1))
            if backend == "hnswlib":
                index.add_items(unit[valid], ids=added + np.arange(len(valid)))
            else:
                index.add(np.ascontiguousarray(unit[valid]))
            rows.append(start + valid)
            added += len(valid)
        return cls(backend, index, np.concatenate(rows), d, ef_search)

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The (approximately) ``k`` most cosine-similar vectors to each query.

        Parameters
        ----------
        queries : array-like, shape (q, d)
        k : int

        Returns
        -------
        indices : np.ndarray, shape (q, min(k, len(self))), int64
            Rows of the vectors the index was built from, best first; -1 where none was found
            (and for a zero or non-finite query).
        scores : np.ndarray, shape (q, min(k, len(self))), float32
            Cosine similarities (float32 inner products of unit vectors); NaN with -1.
        """
        unit = normalize_rows(np.atleast_2d(np.asarray(queries)))
        if unit.shape[1] != self.dim:
            raise ValueError(f"queries of shape {unit.shape} do not match an index of width {self.dim}")
        k = min(k, len(self))
        indices = np.full((len(unit), k), -1, dtype=np.int64)
        scores = np.full((len(unit), k), np.nan, dtype=np.float32)
        valid = np.flatnonzero(~np.isnan(unit).any(axis=1))
        if k == 0 or len(valid) == 0:
            return indices, scores
        ef = max(self.ef_search, k)
        if self.backend == "hnswlib":
            self._index.set_ef(ef)
            labels, distances = self._index.knn_query(unit[valid], k=k)
            found, similarity = labels.astype(np.int64), 1.0 - distances  # hnswlib's "ip" distance is 1 - dot
        else:
            self._index.hnsw.efSearch = ef
            similarity, found = self._index.search(np.ascontiguousarray(unit[valid]), k)
        hit = found >= 0
        indices[valid] = np.where(hit, self._rows[np.where(hit, found, 0)], -1)
        scores[valid] = np.where(hit, np.clip(similarity, -1.0, 1.0), np.nan)
        return indices, scores


def approximate_backend(backend: str = "auto") -> str:
    """The backend :meth:`ApproximateIndex.build` would use: ``backend`` if it imports, or for "auto"
    the first of hnswlib and faiss that does; ImportError naming the pip packages otherwise."""
    import importlib

    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"backend must be auto, hnswlib or faiss, not {backend!r}")
    candidates = BACKENDS if backend == "auto" else (backend,)
    for name in candidates:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    packages = {"hnswlib": "hnswlib", "faiss": "faiss-cpu"}
    wanted = " or ".join(f"`pip install {packages[name]}`" for name in candidates)
    raise ImportError(f"an approximate index needs {' or '.join(candidates)}: {wanted}")


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true neighbours that a search found.

    Parameters
    ----------
    found : np.ndarray, shape (q, k)
        Rows an approximate search returned (-1: none).
    truth : np.ndarray, shape (q, k)
        Rows of the exact search (:func:`cosine_top_k`) for the same queries and k.

    Returns
    -------
    float
        In [0, 1]. Where the exact k-th score is tied, another row of equal score counts as a miss.
    """
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"{found.shape[0]} rows of results for {truth.shape[0]} queries")
    hits = [np.isin(t, f[f >= 0]).sum() / max(len(t), 1) for f, t in zip(found, truth)]
    return float(np.mean(hits)) if hits else 1.0


class SongIndex:
    """The pooled vectors of one group, held in memory for repeated similar-song queries.

    Built from :meth:`StoreReader.pooled`: one vector per song (e.g. OpenL3's mean embedding,
    512 float32 = 2 KiB a song; 100k songs take 205 MB). Pooling reads the whole group, so it
    costs far more than a query; keep the index for as many queries as the store does not change.
    """

    def __init__(self, songs: Sequence[str], vectors: np.ndarray, attrs: dict[str, Any] | None = None,
                 approximate: str | None = None) -> None:
        """``songs`` (n,) ids and ``vectors`` (n, d) in the same order; ``attrs`` go on every result;
        ``approximate`` ("auto", "hnswlib" or "faiss") also builds an :class:`ApproximateIndex` that
        :meth:`query` then uses."""
        self.songs = list(songs)
        self.vectors = np.asarray(vectors)
        if self.vectors.ndim != 2 or len(self.songs) != len(self.vectors):
            raise ValueError(f"{len(self.songs)} songs for vectors of shape {self.vectors.shape}")
        self.attrs = dict(attrs or {})
        self._rows = {song: i for i, song in enumerate(self.songs)}
        self._norms = row_norms(self.vectors)
        self.approximate = ApproximateIndex.build(self.vectors, approximate) if approximate else None

    @classmethod
    def from_pooled(cls, pooled: Any, layer: int | None = None, approximate: str | None = None) -> "SongIndex":
        """An index of ``pooled`` (an ``xr.DataArray`` with dims ``("song", feature)``, as
        :meth:`StoreReader.pooled` gives).

        A ``layer`` dim (MERT with several layers) needs ``layer``: the layer index to use. A single
        stored layer is taken as it is. To combine layers, reduce them first, e.g.
        ``SongIndex.from_pooled(store.pooled("mert").mean("layer"))``.

        Raises ValueError for a ``layer`` the group does not have, several layers and no
        ``layer``, or one value per song (madmom: cosine needs a vector).
        """
        name = pooled.name or "pooled"
        attrs = {k: v for k, v in pooled.attrs.items() if k in ("model", "stat")}
        if "layer" in pooled.dims:
            layers = [int(v) for v in pooled["layer"].values] if "layer" in pooled.coords else list(range(pooled.sizes["layer"]))
            if layer is None and len(layers) > 1:
                raise ValueError(f"{name} has layers {layers}: choose one (layer=..., --layer on the "
                                 "command line), or reduce them first (e.g. pooled.mean('layer'))")
            chosen = layers[0] if layer is None else layer
            if chosen not in layers:
                raise ValueError(f"{name} has layers {layers}, not {layer}")
            pooled = pooled.isel(layer=layers.index(chosen))
            attrs["layer"] = chosen
        elif layer is not None:
            raise ValueError(f"{name} has no layer dim (dims {pooled.dims}); leave layer unset")
        if pooled.ndim != 2:
            raise ValueError(f"cosine similarity needs one vector per song; {name} has dims {pooled.dims}")
        pooled = pooled.transpose("song", ...)
        return cls([str(s) for s in pooled["song"].values], pooled.values, attrs, approximate)

    @classmethod
    def from_store(cls, reader: Any, group: str, stat: str = "mean", layer: int | None = None,
                   approximate: str | None = None) -> "SongIndex":
        """Pool every complete song of ``group`` with ``stat`` (see :meth:`StoreReader.pooled`) and index it."""
        index = cls.from_pooled(reader.pooled(group, stat=stat), layer=layer, approximate=approximate)
        index.attrs.update(group=group, store=reader.url)
        return index

    def query(self, song_id: str, k: int = 10, exclude_self: bool = True) -> Any:
        """The ``k`` songs whose vectors are most cosine-similar to ``song_id``'s.

        Parameters
        ----------
        song_id : str
        k : int
            Songs returned (fewer when the index has fewer).
        exclude_self : bool
            Leave ``song_id`` out of the results (default). With False it comes first, score 1.0,
            unless an identical vector of an earlier song ties with it.

        Returns
        -------
        xr.DataArray, dims ("song",), float32
            Cosine similarity in [-1, 1], best first (equal scores in store order), with the song
            ids as the ``song`` coordinate; ``attrs`` say the query, group, stat, layer and search.
            ``.to_pandas()`` gives a Series; ``zip(r.song.values, r.values)`` the (song, score) pairs.

        Raises
        ------
        KeyError
            ``song_id`` is not in the index (no complete array in the group).
        ValueError
            Its vector is zero or not finite, so no cosine can be computed.
        """
        import xarray as xr

        if song_id not in self._rows:
            where = f" in {self.attrs['store']}" if "store" in self.attrs else ""
            raise KeyError(f"song {song_id!r} is not among the {len(self.songs)} songs of "
                           f"{self.attrs.get('group', 'this index')!r}{where}")
        row = self._rows[song_id]
        if not (np.isfinite(self._norms[row]) and self._norms[row] > 0):
            raise ValueError(f"song {song_id!r} has a zero or non-finite vector: its cosine similarity is undefined")
        wanted = k + 1 if exclude_self else k
        query = self.vectors[row:row + 1]
        if self.approximate is not None:
            indices, scores = self.approximate.search(query, wanted)
        else:
            indices, scores = cosine_top_k(query, self.vectors, wanted, norms=self._norms)
        indices, scores = indices[0], scores[0]
        keep = (indices >= 0) & ~((indices == row) & exclude_self)
        indices, scores = indices[keep][:k], scores[keep][:k]
        search = self.approximate.backend if self.approximate is not None else "exact"
        return xr.DataArray(scores, dims=("song",), coords={"song": [self.songs[i] for i in indices]},
                            name="cosine", attrs={**self.attrs, "query": song_id, "metric": "cosine", "search": search})


def similar(reader: Any, song_id: str, group: str, k: int = 10, stat: str = "mean", layer: int | None = None,
            exclude_self: bool = True) -> Any:
    """The ``k`` songs of ``group`` most similar to ``song_id``: cosine similarity of their pooled
    vectors, searched exactly. See :meth:`SongIndex.query` for the result and errors.

    Each call pools the whole group (:meth:`StoreReader.pooled`), which reads every song's array;
    for many queries build a :class:`SongIndex` once.
    """
    return SongIndex.from_store(reader, group, stat=stat, layer=layer).query(song_id, k=k, exclude_self=exclude_self)
