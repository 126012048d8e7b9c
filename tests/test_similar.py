"""Similar songs: exact cosine top-k in blocks, the store-facing query, and the optional approximate index."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

import featurestore as fs
from featurestore.run import run
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.extractors.base import TimeAxis
from featurestore.export import export_hdf5
from featurestore.similar import QUERY_BLOCK, ApproximateIndex, SongIndex, cosine_top_k, recall_at_k
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import write_group

OPENL3 = TimeAxis(48000, 4800, 0)  # a 10 Hz clock
MERT = TimeAxis(24000, 320, 200)
SONGS = [f"album{i // 4}/track{i % 4}" for i in range(10)]


def clustered(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 points around ``clusters`` random centres, like embeddings of related songs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    return (centres[rng.integers(clusters, size=n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def reference_ranking(query: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row by float64 cosine with ``query``, best first, ties by row: (rows, scores)."""
    x = vectors.astype(np.float64)
    q = query.astype(np.float64)
    scores = x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    order = np.lexsort((np.arange(len(x)), -scores))
    return order, scores[order]


@pytest.fixture
def store(tmp_path, fake_models) -> FeatureStore:
    """``slow`` (one value per frame) from the pipeline; ``emb`` (time, 16) songs of different lengths
    whose means fall into 3 clusters; ``layered`` (layer 4 and 12, time, 8)."""
    audio = tmp_path / "audio"
    write_wav(audio / "tone.wav", 1.0)
    extractor = registry.create("slow")
    extractor.load("cpu")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    run(store, discover(audio).files, [extractor])
    rng = np.random.default_rng(1)
    centres = clustered(len(SONGS), 16, 3)
    write_group(store, "emb", {s: c + 0.5 * rng.standard_normal((int(rng.integers(5, 40)), 16)).astype(np.float32)
                               for s, c in zip(SONGS, centres)}, ("time", "feature"), OPENL3)
    write_group(store, "layered", {s: rng.standard_normal((2, int(rng.integers(5, 30)), 8)).astype(np.float32)
                                   for s in SONGS}, ("layer", "time", "feature"), MERT, {"layer": [4, 12]})
    return store


def test_every_song_is_its_own_nearest_neighbour(store):
    reader = fs.open_store(store.url)
    for song in SONGS:
        result = reader.similar(song, "emb", k=3, exclude_self=False)
        assert result["song"].values[0] == song and result.values[0] == pytest.approx(1.0, abs=1e-6)
        assert song not in reader.similar(song, "emb", k=3)["song"].values  # the default leaves it out
    vectors = clustered(300, 24, 5)
    indices, scores = cosine_top_k(vectors, vectors, 1, block_rows=64)
    np.testing.assert_array_equal(indices[:, 0], np.arange(300))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)


def test_scores_are_numpy_cosine_on_pooled_in_order(store):
    reader = fs.open_store(store.url)
    for stat in ("mean", "max"):
        pooled = reader.pooled("emb", stat=stat)
        for q, song in enumerate(SONGS):
            result = reader.similar(song, "emb", k=len(SONGS), stat=stat)
            order, expected = reference_ranking(pooled.values[q], pooled.values)
            assert order[0] == q  # itself; the rest is the result
            assert list(result["song"].values) == [SONGS[i] for i in order[1:]]
            np.testing.assert_allclose(result.values, expected[1:], rtol=0, atol=1e-6)
            assert result.dtype == np.float32 and result.dims == ("song",) and result.name == "cosine"
            assert result.attrs["query"] == song and result.attrs["stat"] == stat and result.attrs["group"] == "emb"


def test_top_k_is_the_head_of_the_full_ranking(store):
    reader = fs.open_store(store.url)
    everything = reader.similar(SONGS[5], "emb", k=100)
    assert everything.sizes["song"] == len(SONGS) - 1  # k beyond the group: all the others
    head = reader.similar(SONGS[5], "emb", k=3)
    assert list(head["song"].values) == list(everything["song"].values[:3])
    np.testing.assert_array_equal(head.values, everything.values[:3])
    assert np.all(np.diff(everything.values) <= 0)
    assert dict(zip(head["song"].values, head.values)) == head.to_pandas().to_dict()


@pytest.mark.parametrize("block_rows", [1, 7, 64, 499, 500, 10_000])
def test_block_size_does_not_change_the_result(block_rows):
    vectors = clustered(500, 24, 8, seed=2)
    queries = clustered(QUERY_BLOCK + 44, 24, 8, seed=3)  # two query blocks
    k = 12
    indices, scores = cosine_top_k(queries, vectors, k, block_rows=block_rows)
    assert indices.shape == scores.shape == (len(queries), k)
    for q in (0, 1, QUERY_BLOCK - 1, QUERY_BLOCK, len(queries) - 1):
        order, expected = reference_ranking(queries[q], vectors)
        np.testing.assert_array_equal(indices[q], order[:k])
        np.testing.assert_allclose(scores[q], expected[:k], rtol=0, atol=1e-6)
    one_block = cosine_top_k(queries, vectors, k, block_rows=len(vectors))
    np.testing.assert_array_equal(indices, one_block[0])
    np.testing.assert_allclose(scores, one_block[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("block_rows", [1, 2, 3, 4, 6])
def test_equal_scores_go_to_the_lower_row_and_undefined_ones_last(block_rows):
    # one-hot rows: every cosine is exactly 0, 1 or undefined (the zero row), whatever the float rounding
    e = np.eye(3, dtype=np.float32)
    vectors = np.stack([e[1], e[0], e[2], e[0], np.zeros(3, np.float32), e[0]])
    for k, rows in ((2, [1, 3]), (3, [1, 3, 5]), (4, [1, 3, 5, 0])):
        np.testing.assert_array_equal(cosine_top_k(e[:1], vectors, k, block_rows=block_rows)[0], [rows])
    indices, scores = cosine_top_k(e[:1], vectors, 6, block_rows=block_rows)
    np.testing.assert_array_equal(indices, [[1, 3, 5, 0, 2, 4]])
    np.testing.assert_array_equal(scores, [[1, 1, 1, 0, 0, np.nan]])
    indices, scores = cosine_top_k(np.zeros((1, 3)), vectors, 2, block_rows=block_rows)  # an undefined query
    np.testing.assert_array_equal(indices, [[0, 1]])
    assert np.isnan(scores).all()


@pytest.mark.parametrize("block_rows", [1, 7, 64, 1000])
def test_many_equal_scores_keep_row_order_across_blocks(block_rows):
    # hundreds of exact ties (one-hot and zero rows), more than a partition or a small sort keeps in order,
    # and 63 rows of distinct scores x = i/64 (well apart from float rounding) for the cut to fall between
    rng = np.random.default_rng(5)
    e = np.vstack([np.eye(3), np.zeros((1, 3))])
    vectors = e[rng.choice(4, size=1000, p=[0.35, 0.35, 0.2, 0.1])]
    x = np.arange(1, 64) / 64
    vectors[rng.choice(1000, size=63, replace=False)] = np.stack([x, np.sqrt(1 - x**2), 0 * x], axis=1)
    vectors = vectors.astype(np.float32)
    for q in range(2):
        norms = np.linalg.norm(vectors, axis=1)
        score = np.where(norms > 0, vectors.astype(np.float64) @ e[q] / np.maximum(norms, 1e-30), -np.inf)
        want = np.lexsort((np.arange(1000), -score))  # zero rows last
        for k in (5, (score == 1).sum() + 10, 400, 1000):
            indices, _ = cosine_top_k(e[q:q + 1], vectors, k, block_rows=block_rows)
            np.testing.assert_array_equal(indices[0], want[:k])


def test_arguments_are_checked():
    vectors = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="width 3"):
        cosine_top_k(np.ones((1, 2)), vectors, 2)
    with pytest.raises(ValueError, match="at least 1"):
        cosine_top_k(np.ones((1, 3)), vectors, 0)
    with pytest.raises(ValueError, match="3 norms for 4 vectors"):
        cosine_top_k(np.ones((1, 3)), vectors, 1, norms=np.ones(3))


def test_zarr_and_hdf5_give_the_same_result(tmp_path, store):
    export_hdf5(store, tmp_path / "x.h5")
    zarr_reader, h5_reader = fs.open_store(store.url), fs.open_store(str(tmp_path / "x.h5"))
    for song in SONGS:
        for group, layer in (("emb", None), ("layered", 12)):
            a = zarr_reader.similar(song, group, k=5, layer=layer)
            b = h5_reader.similar(song, group, k=5, layer=layer)
            assert list(a["song"].values) == list(b["song"].values)
            np.testing.assert_array_equal(a.values, b.values)


def test_layers_are_chosen_or_refused(store):
    reader = fs.open_store(store.url)
    with pytest.raises(ValueError, match=r"layers \[4, 12\]: choose one"):
        reader.similar(SONGS[0], "layered")
    with pytest.raises(ValueError, match=r"layers \[4, 12\], not 5"):
        reader.similar(SONGS[0], "layered", layer=5)
    with pytest.raises(ValueError, match="no layer dim"):
        reader.similar(SONGS[0], "emb", layer=4)
    pooled = reader.pooled("layered").sel(layer=4)
    result = reader.similar(SONGS[2], "layered", k=len(SONGS), layer=4)
    order, expected = reference_ranking(pooled.values[2], pooled.values)
    assert list(result["song"].values) == [SONGS[i] for i in order[1:]] and result.attrs["layer"] == 4
    np.testing.assert_allclose(result.values, expected[1:], rtol=0, atol=1e-6)
    averaged = SongIndex.from_pooled(reader.pooled("layered").mean("layer")).query(SONGS[2], k=3)
    assert averaged.sizes["song"] == 3


def test_one_value_per_song_and_unknown_songs_are_refused(store):
    reader = fs.open_store(store.url)
    with pytest.raises(ValueError, match="needs one vector per song"):
        reader.similar("tone", "slow")
    with pytest.raises(KeyError, match="'nope' is not among the 10 songs of 'emb'"):
        reader.similar("nope", "emb")


def test_a_zero_vector_cannot_be_queried_and_ranks_last():
    pooled = xr.DataArray(np.array([[1, 0], [0, 0], [1, 1]], np.float32), dims=("song", "feature"),
                          coords={"song": ["a", "zero", "b"]}, name="toy_mean")
    index = SongIndex.from_pooled(pooled)
    with pytest.raises(ValueError, match="'zero' has a zero or non-finite vector"):
        index.query("zero")
    result = index.query("a", k=5)
    assert list(result["song"].values) == ["b", "zero"] and np.isnan(result.values[1])


def test_recall_counts_the_true_neighbours_found():
    truth = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    found = np.array([[3, 2, 9, -1], [4, 5, 6, 7]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 4 + 1) / 2)


def test_a_missing_backend_names_its_package(monkeypatch):
    for name in ("hnswlib", "faiss"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError, as when not installed
    with pytest.raises(ImportError, match="hnswlib or faiss: `pip install hnswlib` or `pip install faiss-cpu`"):
        ApproximateIndex.build(np.ones((3, 2)))
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        ApproximateIndex.build(np.ones((3, 2)), backend="faiss")


@pytest.mark.parametrize("backend", ["hnswlib", "faiss"])
def test_approximate_index_finds_the_exact_neighbours(backend):
    pytest.importorskip(backend)
    vectors = clustered(5000, 32, 50, seed=4)
    vectors[17] = 0  # left out of the graph
    index = ApproximateIndex.build(vectors, backend=backend, block_rows=1000)
    assert len(index) == len(vectors) - 1 and index.backend == backend
    queries = np.delete(vectors, 17, axis=0)[::25]
    exact, exact_scores = cosine_top_k(queries, vectors, 10)
    found, scores = index.search(queries, 10)
    assert recall_at_k(found, exact) >= 0.95
    assert 17 not in found
    hit = found == exact
    np.testing.assert_allclose(scores[hit], exact_scores[hit], rtol=0, atol=1e-5)
    missing, none = index.search(np.zeros((1, 32)), 3)
    assert (missing == -1).all() and np.isnan(none).all()


@pytest.mark.parametrize("backend", ["hnswlib", "faiss"])
def test_song_index_can_search_approximately(store, backend):
    pytest.importorskip(backend)
    reader = fs.open_store(store.url)
    index = SongIndex.from_store(reader, "emb", approximate=backend)
    for song in SONGS:
        approx = index.query(song, k=4)
        exact = reader.similar(song, "emb", k=4)
        assert approx.attrs["search"] == backend and exact.attrs["search"] == "exact"
        assert list(approx["song"].values) == list(exact["song"].values)  # 10 songs: the graph is exhaustive
        np.testing.assert_allclose(approx.values, exact.values, rtol=0, atol=1e-5)


def test_the_command_lists_the_same_songs_as_the_api(store):
    import json

    from .helpers import fstore, output

    want = fs.open_store(store.url).similar(SONGS[0], "emb", k=3)
    listed = json.loads(fstore("similar", SONGS[0], "-m", "emb", "-k", "3", "--store", store.url, "--json").stdout)
    assert [row["song_id"] for row in listed] == list(want["song"].values)
    np.testing.assert_allclose([row["score"] for row in listed], want.values, atol=1e-6)
    table = fstore("similar", SONGS[0], "-m", "emb", "-k", "3", "--store", store.url)
    assert table.exit_code == 0 and all(song in table.stdout for song in want["song"].values)
    unknown = fstore("similar", "nope", "-m", "emb", "--store", store.url)
    assert unknown.exit_code == 1 and "nope" in output(unknown)
    layered = fstore("similar", SONGS[0], "-m", "layered", "--store", store.url)
    assert layered.exit_code == 1 and "layer" in output(layered)  # several layers stored: choose one
    assert fstore("similar", SONGS[0], "-m", "layered", "--layer", "12", "--store", store.url).exit_code == 0
