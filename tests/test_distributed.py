"""kernelcomp.distributed and NTKRegressor(solver="falkon") on Dask arrays.

Dask is an optional extra: the tests are skipped where it is absent (`make test`
installs it). kc.gram is the oracle; the cluster tests start a LocalCluster of two
single-threaded worker processes (spawned, never forked: numba's OpenMP layer does
not survive a fork).
"""

from __future__ import annotations

import numpy as np
import pytest

import kernelcomp as kc

da = pytest.importorskip("dask.array", reason="the optional Dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the optional Dask extra is absent")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)  # fmt: skip
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_distributed_gram_equals_kc_gram_threaded(rng, dtype):
    X = rng.standard_normal((230, 5)).astype(dtype)
    Y = rng.standard_normal((70, 5)).astype(dtype)
    k = kc.NTK(depth=2, bias_std=0.3)
    G = kc.distributed.gram(k, X, chunks=64)
    assert G.chunks == ((64, 64, 64, 38), (64, 64, 64, 38)) and G.dtype == dtype
    K = G.compute(scheduler="threads")
    np.testing.assert_array_equal(K, K.T)  # each off-diagonal block once, mirrored
    np.testing.assert_allclose(K, kc.gram(k, X), rtol=1e-12 if dtype == np.float64 else 1e-5)
    G2 = kc.distributed.gram(k, X, Y, chunks=((100, 130), (30, 40)))
    assert G2.chunks == ((100, 130), (30, 40))
    np.testing.assert_allclose(G2.compute(), kc.gram(k, X, Y),
                               rtol=1e-12 if dtype == np.float64 else 1e-5)
    # a Dask input keeps its chunks
    Xd = da.from_array(X, chunks=(50, 5))
    assert kc.distributed.gram(k, Xd).chunks[0] == (50, 50, 50, 50, 30)
    # symmetric: the lower blocks are transposes of the upper ones (not recomputed)
    graph = dict(kc.distributed.gram(k, X, chunks=64).__dask_graph__())
    assert sum("_tile" in str(key) for key in graph) == 4 * 5 // 2


def test_distributed_gram_errors(rng):
    X = rng.standard_normal((20, 3))
    with pytest.raises(ValueError, match="add up to its 20 rows"):
        kc.distributed.gram(kc.NTK(), X, chunks=[5, 5])
    with pytest.raises(ValueError, match="positive int"):
        kc.distributed.gram(kc.NTK(), X, chunks=0)
    with pytest.raises(TypeError, match="kernelcomp kernel"):
        kc.distributed.gram("ntk", X)
    with pytest.raises(ValueError, match="NaN"):
        kc.distributed.gram(kc.NTK(), np.full((4, 3), np.nan))


def test_distributed_gram_and_falkon_on_a_local_cluster(rng, client):
    X = rng.standard_normal((400, 6))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(400)
    Xt = rng.standard_normal((90, 6))
    net = kc.FCNetwork.init(6, [300], seed=0)
    for k in (kc.NTK(depth=2), kc.EmpiricalNTK(net)):
        G = kc.distributed.gram(k, X, chunks=128).compute()  # on the workers
        np.testing.assert_allclose(G, kc.gram(k, X), rtol=1e-12)
    kw = dict(alpha=1e-2, solver="falkon", n_centers=120, random_state=0, tol=1e-10)
    k = kc.NTK(depth=2)
    local = kc.NTKRegressor(k, **kw).fit(X, y)
    Xd, yd = da.from_array(X, chunks=(100, 6)), da.from_array(y, chunks=100)
    dist = kc.NTKRegressor(k, **kw).fit(Xd, yd)
    np.testing.assert_array_equal(dist.center_indices_, local.center_indices_)
    assert dist.n_features_in_ == 6
    np.testing.assert_allclose(dist.predict(Xt), local.predict(Xt), rtol=1e-9, atol=1e-12)
    lazy = dist.predict(da.from_array(Xt, chunks=(30, 6)))
    np.testing.assert_allclose(lazy.compute(), local.predict(Xt), rtol=1e-9, atol=1e-12)
    # sample weights, and mismatched chunks
    sw = rng.uniform(0.5, 2.0, 400)
    np.testing.assert_allclose(
        kc.NTKRegressor(k, **kw).fit(Xd, yd, sample_weight=sw).predict(Xt),
        kc.NTKRegressor(k, **kw).fit(X, y, sample_weight=sw).predict(Xt), rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="row chunks of X"):
        kc.NTKRegressor(k, **kw).fit(Xd, da.from_array(y, chunks=80))
    with pytest.raises(ValueError, match="solver='falkon'"):
        kc.NTKRegressor(k).fit(Xd, yd)
