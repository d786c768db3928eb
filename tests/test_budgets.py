"""Memory budgets from the memory available, and which route they chose (said and recorded)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import _falkon, _parallel


def test_available_memory_is_linux_memavailable():
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    expected = int(fields["MemAvailable"].split()[0]) * 1024
    got = _parallel.available_memory()
    # the figure moves between two reads: within 10% of it
    assert got is not None and abs(got - expected) <= 0.1 * expected
    assert 0 < got <= _parallel.physical_memory()


def test_bytes_text():
    assert _parallel.bytes_text(512) == "512 bytes"
    assert _parallel.bytes_text(1536) == "1.5 KiB"
    assert _parallel.bytes_text(3 * 2**30) == "3.0 GiB"
    assert _parallel.bytes_text(2**41) == "2.0 TiB"


def test_falkon_default_budget_is_half_the_available_memory(monkeypatch):
    monkeypatch.setattr(_falkon, "available_memory", lambda: 6 * 2**30)
    assert _falkon.default_max_memory() == 3 * 2**30
    monkeypatch.setattr(_falkon, "available_memory", lambda: None)  # unknown: physical
    monkeypatch.setattr(_falkon, "physical_memory", lambda: 16 * 2**30)
    assert _falkon.default_max_memory() == 8 * 2**30


def _lines(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4))
    return X, np.sin(X[:, 0]) + 0.1 * X[:, 1]


def test_falkon_says_and_records_whether_knm_was_stored(caplog, monkeypatch):
    X, y = _problem()
    # the memory available pinned: the machine's changes by GiBs between two reads while
    # other processes (a second test run) allocate and free
    monkeypatch.setattr(_falkon, "available_memory", lambda: 6 * 2**30)
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        stored = kc.NTKRegressor(solver="falkon", n_centers=40, random_state=0).fit(X, y)
    assert stored.knm_route_ == "stored"
    assert stored.max_memory_ == 3 * 2**30
    (line,) = [r.getMessage() for r in caplog.records if "K_nm" in r.getMessage()]
    assert "K_nm 120 x 40 float64 (37.5 KiB) stored" in line
    assert "default: half of the memory available" in line
    caplog.clear()
    small = 120 * 40 * 8 - 1  # one byte short of K_nm
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        redone = kc.NTKRegressor(solver="falkon", n_centers=40, random_state=0,
                                 max_memory=small).fit(X, y)
    assert redone.knm_route_ == "recomputed" and redone.max_memory_ == small
    (line,) = [r.getMessage() for r in caplog.records if "K_nm" in r.getMessage()]
    assert "recomputed block by block" in line and "(max_memory)" in line
    np.testing.assert_allclose(redone.predict(X), stored.predict(X), rtol=1e-10, atol=1e-12)
    # the default budget follows the memory available when fit starts
    monkeypatch.setattr(_falkon, "available_memory", lambda: 2 * (small + 1))
    est = kc.NTKRegressor(solver="falkon", n_centers=40, random_state=0).fit(X, y)
    assert est.knm_route_ == "stored" and est.max_memory_ == small + 1
    monkeypatch.setattr(_falkon, "available_memory", lambda: 2 * small)
    assert est.fit(X, y).knm_route_ == "recomputed"
    # another solver's fit leaves no Falkon attribute behind
    est.set_params(solver="cholesky").fit(X, y)
    assert not hasattr(est, "knm_route_") and not hasattr(est, "max_memory_")


def test_falkon_logs_nothing_unless_asked(caplog):
    X, y = _problem()
    with caplog.at_level(logging.WARNING, logger="kernelcomp"):
        kc.NTKRegressor(solver="falkon", n_centers=30, random_state=0).fit(X, y)
    assert not caplog.records


def test_torch_default_budget_follows_the_memory_available(monkeypatch):
    from kernelcomp import _torch_ntk

    for free, budget in ((64 * 2**30, 8 * 2**30), (8 * 2**30, 2 * 2**30),
                         (2**30, 2**28), (2**20, 64 * 2**20)):
        monkeypatch.setattr(_torch_ntk, "available_memory", lambda free=free: free)
        assert _torch_ntk.default_budget() == budget


def test_torch_ntk_says_its_budget_and_whether_factors_were_recomputed(caplog):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    X = np.random.default_rng(1).standard_normal((40, 5))
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        K = kc.gram(kc.EmpiricalNTK(net), X)
    (line,) = _lines(caplog, "TorchNTK: memory budget")
    assert "default: a quarter of the memory available" in line
    assert "factors of all 40 rows held" in line
    caplog.clear()
    k_small = kc.EmpiricalNTK(net, max_memory=4096)
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        K_small = kc.gram(k_small, X)
    (line,) = _lines(caplog, "TorchNTK: memory budget")
    assert "4.0 KiB (max_memory)" in line and "recomputed block by block" in line
    np.testing.assert_allclose(K_small, K, rtol=1e-12, atol=1e-12)
