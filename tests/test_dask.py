"""fastembed.dask on a real dask.distributed LocalCluster with worker processes, against the local results."""

import numpy as np
import pytest

import fastembed as fe

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastembed.dask as fed  # noqa: E402


def _close(got, local):
    """float32 agreement: workers run BLAS on one thread, so sums may round differently than locally."""
    np.testing.assert_allclose(got, local, rtol=2e-5, atol=2e-5 * np.abs(local).max())


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    return dict(
        table=rng.standard_normal((500, 16)).astype(np.float32),
        proj=rng.standard_normal((16, 48)).astype(np.float32),
        bias=rng.standard_normal(48).astype(np.float32),
        pos=rng.standard_normal((80, 48)).astype(np.float32),
    )


@pytest.mark.parametrize("chunks", [(4, 64), (3, 17)], ids=["batch-chunks", "sequence-split"])
def test_factorized_lookup_matches_local(client, tables, chunks):
    ids = np.random.default_rng(1).integers(0, 500, (12, 64))
    dids = da.from_array(ids, chunks=chunks)
    kw = dict(scale=2.0, bias=tables["bias"], pos_table=tables["pos"], offset=5)
    lazy = fed.factorized_lookup(dids, tables["table"], tables["proj"], **kw)
    assert lazy.shape == (12, 64, 48) and lazy.dtype == np.float32
    assert lazy.chunks[:2] == dids.chunks
    local = fe.factorized_lookup(ids, tables["table"], tables["proj"], **kw)
    _close(lazy.compute(), local)


@pytest.mark.parametrize("kind", ["int8", "float16", "bfloat16"])
def test_compact_tables_on_the_cluster_match_local(client, tables, kind):
    layer = fe.FactorizedEmbedding(tables["table"], tables["proj"]).quantize(kind)
    ids = np.random.default_rng(2).integers(0, 500, (12, 64))
    dids = da.from_array(ids, chunks=(4, 17))
    kw = dict(bias=tables["bias"], pos_table=tables["pos"], offset=3)
    local = fe.factorized_lookup(ids, layer.table, layer.proj, **kw)
    _close(fed.factorized_lookup(dids, layer.table, layer.proj, **kw).compute(), local)
    _close(fed.lookup(dids, layer.table).compute(), fe.lookup(ids, layer.table))


def test_tables_are_scattered_once_not_embedded_in_tasks(client, tables):
    ids = da.from_array(np.zeros((8, 10), np.int64), chunks=(1, 10))
    lazy = fed.factorized_lookup(ids, tables["table"], tables["proj"])
    graph = dict(lazy.__dask_graph__())
    big = tables["table"].nbytes
    import pickle

    task_sizes = [
        len(pickle.dumps(task))
        for key, task in graph.items()
        if key[0].startswith("_block_call") or "block_call" in str(key)
    ]
    assert task_sizes and max(task_sizes) < big / 4  # each task refers to the table, does not carry it


def test_dense_lookup_and_position_ids(client, tables):
    dense = tables["table"] @ tables["proj"]
    ids = np.random.default_rng(2).integers(0, 500, (6, 20))
    positions = np.random.default_rng(3).integers(0, 80, (1, 20))
    lazy = fed.lookup(da.from_array(ids, chunks=(2, 7)), dense, pos_table=tables["pos"], position_ids=positions)
    _close(lazy.compute(), fe.lookup(ids, dense, pos_table=tables["pos"], position_ids=positions))


def test_bad_id_in_one_block_raises_the_same_index_error(client, tables):
    ids = np.random.default_rng(4).integers(0, 500, (8, 16))
    ids[5, 3] = 500
    lazy = fed.factorized_lookup(da.from_array(ids, chunks=(2, 16)), tables["table"], tables["proj"])
    with pytest.raises(IndexError, match="outside \\[0, 500\\)"):
        lazy.compute()
    with pytest.raises(IndexError) as local:
        fe.factorized_lookup(ids, tables["table"], tables["proj"])
    assert "ids contains 500" in str(local.value)


def test_eager_argument_errors(tables):
    ids = da.zeros((2, 5), dtype=np.int64, chunks=1)
    with pytest.raises(ValueError):
        fed.factorized_lookup(ids, tables["table"], tables["proj"][:3])
    with pytest.raises(TypeError):
        fed.factorized_lookup(da.zeros((2, 5), chunks=1), tables["table"], tables["proj"])
    with pytest.raises(IndexError):
        fed.factorized_lookup(ids, tables["table"], tables["proj"], pos_table=tables["pos"][:3])


@pytest.mark.parametrize("method", ["randomized", "svd"])
@pytest.mark.parametrize("weighted", [False, True])
def test_factorize_on_the_cluster_is_within_two_percent(client, method, weighted):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3000, 12)) @ rng.standard_normal((12, 64)) + 0.3 * rng.standard_normal((3000, 64))
    W = W.astype(np.float32)
    weights = rng.zipf(1.5, 3000).astype(np.float64) if weighted else None
    dW = da.from_array(W, chunks=(700, 64))
    fac = fed.factorize(dW, 16, seed=0, row_weights=weights, method=method)
    local = fe.factorize(W, 16, row_weights=weights)
    assert isinstance(fac.table, da.Array) and fac.proj.shape == (16, 64)
    err = fac.report.weighted_relative_error
    assert err <= 1.02 * local.report.weighted_relative_error
    table = fac.table.compute()
    direct = np.sqrt(
        (((W - table @ fac.proj) ** 2).sum(1) * (1 if weights is None else weights)).sum()
        / ((W**2).sum(1) * (1 if weights is None else weights)).sum()
    )
    assert err == pytest.approx(direct, rel=1e-4)
    if method == "svd":
        assert fac.report.optimal_relative_error == pytest.approx(local.report.optimal_relative_error, rel=1e-4)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(rank=3, row_weights=-np.ones(100)), "finite and >= 0"),
        (dict(rank=3, row_weights=np.r_[np.nan, np.ones(99)]), "finite and >= 0"),
        (dict(rank=3, row_weights=np.zeros(100)), "all zero"),
        (dict(rank=3, row_weights=np.ones(99)), r"shape \(100,\)"),
        (dict(rank=0), "rank"),
        (dict(rank=9), "min\\(V, d\\)"),
        (dict(rank=2, energy=0.5), "exactly one"),
    ],
)
def test_dask_factorize_refuses_what_factorize_refuses_with_the_same_words(client, change, match):
    W = np.random.default_rng(0).standard_normal((100, 8))
    with pytest.raises(ValueError, match=match):
        fe.factorize(W, **change)
    with pytest.raises(ValueError, match=match):
        fed.factorize(da.from_array(W, chunks=(30, 8)), **change)
    for bad in (W[:0], W[0]):  # empty, 1-D
        with pytest.raises(ValueError, match="W is empty|W must be 2-D") as local:
            fe.factorize(bad, 1)
        with pytest.raises(ValueError) as distributed_error:
            fed.factorize(bad, 1)
        assert str(distributed_error.value) == str(local.value)


def test_factorize_argument_errors(client):
    dW = da.ones((100, 8), chunks=(30, 8))
    with pytest.raises(ValueError):
        fed.factorize(dW, 0)
    with pytest.raises(ValueError):
        fed.factorize(dW, 9)
    with pytest.raises(ValueError):
        fed.factorize(dW, 3, row_weights=-np.ones(100))
    bad = da.from_array(np.where(np.eye(100, 8) > 0, np.nan, 1.0), chunks=(30, 8))
    with pytest.raises(ValueError, match="NaN"):
        fed.factorize(bad, 3)


def test_parquet_of_token_ids_to_embeddings(client, tables, tmp_path):
    """The README's guide, end to end: token ids in Parquet -> a dask array -> embeddings."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    dd = pytest.importorskip("dask.dataframe")
    L = 16
    ids = np.random.default_rng(6).integers(0, 500, (40, L))
    pd.DataFrame(ids, columns=[f"t{i}" for i in range(L)]).to_parquet(tmp_path / "ids.parquet")
    frame = dd.read_parquet(tmp_path / "ids.parquet")
    dids = frame.to_dask_array(lengths=True).rechunk({1: -1})
    emb = fed.factorized_lookup(dids, tables["table"], tables["proj"], pos_table=tables["pos"])
    _close(emb.compute(), fe.factorized_lookup(ids, tables["table"], tables["proj"], pos_table=tables["pos"]))
