"""Progress that moves: bars advanced inside compiled passes, and the command line's policy."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import tqdm.auto

import kernelcomp as kc
from kernelcomp import _parallel, io
from kernelcomp._parallel import NO_TICKER, Ticker, active_ticks, ticking
from kernelcomp.cli import main


class _Bar:
    """A stand-in tqdm bar that records its updates."""

    instances: ClassVar[list[_Bar]] = []

    def __init__(self, *args, total=None, initial=0, unit="it", desc=None, **kwargs):
        self.total, self.n, self.unit, self.desc = total, initial, unit, desc
        self.initial = initial
        self.updates: list[int] = []
        self.postfix = ""
        _Bar.instances.append(self)

    def update(self, n=1):
        self.updates.append(n)
        self.n += n

    def set_postfix(self, *args, **kwargs):
        pass

    def set_postfix_str(self, text=""):
        self.postfix = text

    def close(self):
        pass


@pytest.fixture
def bars(monkeypatch):
    """Every bar :func:`kernelcomp._parallel.progress` opens, recorded; polling every 2 ms."""
    _Bar.instances = []
    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    monkeypatch.setattr(_parallel, "TICK_INTERVAL", 0.002)
    return _Bar.instances


def test_ticker_moves_the_bar_by_the_work_counted_in_a_span():
    bar = _Bar(total=15)
    ticker = Ticker(bar, interval=3600.0)  # refreshed by hand below
    try:
        with ticker.span(10):
            ticks = active_ticks()
            ticks[-1, 0] = 100  # the pass's total
            ticks[0, 0] = 30
            ticker.refresh()
            assert bar.n == 3
            ticks[1, 0] = 45  # another thread's share
            ticker.refresh()
            assert bar.n == 7
            ticks[0, 0] = 500  # never past the span's units
            ticker.refresh()
            assert bar.n == 10
        with ticker.span(5):  # a kernel that counts nothing: the whole span at its end
            ticker.refresh()
            assert bar.n == 10
        assert bar.n == 15 and sum(bar.updates) == 15
        assert active_ticks() is _parallel._UNWATCHED  # outside spans nobody watches
    finally:
        ticker.close()
    assert not ticker._thread.is_alive()


def test_ticking_without_a_bar_counts_nothing():
    with _parallel.progress(False) as bar, ticking(bar) as ticker:
        assert ticker is NO_TICKER
        with ticker.span(3):
            assert active_ticks() is _parallel._UNWATCHED


@pytest.mark.parametrize(
    "kernel",
    [kc.NTK(depth=2), kc.NNGP(depth=1, activation="erf", method="series"),
     kc.NTK(depth=1, activation="tanh", method="quadrature"),
     kc.ConvNTK(["conv3", "relu", "global_avgpool", "dense"], image_shape=(4, 4, 1))],
    ids=["closed", "series", "quadrature", "conv"],
)
@pytest.mark.parametrize("symmetric", [True, False])
def test_compiled_passes_count_every_entry_once(kernel, symmetric, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    d = 16 if isinstance(kernel, kc.ConvNTK) else 3
    X, Y = rng.standard_normal((37, d)), rng.standard_normal((21, d))
    Xc, Yc, _ = kernel._gram_inputs(X, None if symmetric else Y, None)
    px = kernel._prepare(Xc)
    py = px if symmetric else kernel._prepare(Yc)
    out = np.empty((37, 37 if symmetric else 21))
    ticker = Ticker(_Bar(total=1), interval=3600.0)
    try:
        with ticker.span(1):
            ticks = active_ticks()
            kernel._fill(px, py, out, symmetric)
    finally:
        ticker.close()
    entries = 37 * 38 // 2 if symmetric else 37 * 21  # symmetric: on and above the diagonal
    assert ticks[-1, 0] == entries
    assert ticks[:-1, 0].sum() == entries
    np.testing.assert_array_equal(out, kernel(X, None if symmetric else Y))


def test_a_slow_kernel_moves_the_bar_within_one_block(bars):
    """The issue's case: one row block of a slow kernel used to sit at 0 until its end."""
    X = np.random.default_rng(1).standard_normal((48, 4))
    k = kc.NTK(depth=2, activation="tanh", method="quadrature")
    ref = kc.gram(k, X)  # compiled, and the reference without a bar
    K = kc.gram(k, X, progress=True, n_jobs=1)
    (bar,) = bars
    assert bar.total == 48 and bar.unit == "row" and bar.n == 48
    assert len(bar.updates) > 2  # moved while the single block ran
    np.testing.assert_array_equal(K, ref)  # the count touches no value


@pytest.mark.parametrize("block_rows", [None, 7])
def test_bars_leave_every_value_bit_identical(bars, block_rows):
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((40, 70)), rng.standard_normal((15, 70))  # BLAS dots (d > 64)
    for k in (kc.NTK(depth=3), kc.NNGP(depth=2, activation="gelu")):
        for Yk in (None, Y):
            K = kc.gram(k, X, Yk, progress=True, block_rows=block_rows)
            np.testing.assert_array_equal(K, kc.gram(k, X, Yk, block_rows=block_rows))
    assert all(b.n == b.total for b in bars)


def test_gram_file_bar_counts_rows_and_starts_at_the_rows_already_stored(tmp_path, bars):
    X = np.random.default_rng(3).standard_normal((50, 3))
    k = kc.NTK(depth=2)
    stop_after = iter([True])
    with pytest.raises(io.GramInterrupted):
        io.compute_gram_file(k, X, None, tmp_path / "K.h5", block_rows=20, progress=True,
                             should_stop=lambda: next(stop_after, True))
    first = bars[-1]
    assert (first.total, first.unit, first.n) == (50, "row", 20)
    io.compute_gram_file(k, X, None, tmp_path / "K.h5", block_rows=20, progress=True,
                         resume=True)
    second = bars[-1]
    assert (second.initial, second.n, second.total) == (20, 50, 50)
    np.testing.assert_array_equal(io.load_gram(tmp_path / "K.h5"), k(X))


# -- the command line ---------------------------------------------------------------


def _two_checkpoints(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 4))
    np.save(tmp_path / "X.npy", X)
    for seed in (1, 2):
        kc.FCNetwork.init(4, [16], seed=seed).save(tmp_path / f"net{seed}.npz")
    return [str(tmp_path / "net1.npz"), str(tmp_path / "net2.npz"), "--data",
            str(tmp_path / "X.npy")]


def test_cli_is_quiet_when_stderr_is_not_a_terminal(tmp_path, capsys):
    args = _two_checkpoints(tmp_path)
    assert main(["kpca", *args, "-o", str(tmp_path / "d.h5")]) == 0
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5")]) == 0
    err = capsys.readouterr().err
    assert "row" not in err and "%" not in err  # capsys' stderr is no terminal: no bars


def test_cli_progress_flag_shows_a_bar_per_gram_and_per_checkpoint(tmp_path, capsys):
    args = _two_checkpoints(tmp_path)
    assert main(["kpca", *args, "-o", str(tmp_path / "d.h5"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "kernel PCA" in err and "2/2" in err  # the checkpoints
    assert err.count("EmpiricalNTK Gram") >= 2 and "30/30" in err  # a bar for each Gram
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5"),
                 "--progress"]) == 0
    err = capsys.readouterr().err
    assert "NTK Gram" in err and "30/30" in err and "row" in err


def test_cli_progress_and_quiet_exclude_each_other(tmp_path, capsys):
    code = main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5"), "-q",
                 "--progress"])
    err = capsys.readouterr().err
    assert code == 2 and "not allowed with argument" in err


def test_cli_shows_bars_on_a_terminal_and_none_with_quiet(tmp_path, capsys, monkeypatch):
    args = _two_checkpoints(tmp_path)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)  # stderr is a terminal
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5")]) == 0
    err = capsys.readouterr().err
    assert "NTK Gram" in err and "30/30" in err and "row" in err
    assert main(["kpca", *args, "-o", str(tmp_path / "d.h5")]) == 0
    err = capsys.readouterr().err
    assert "kernel PCA" in err and "2/2" in err and err.count("EmpiricalNTK Gram") >= 2
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K2.h5"), "-q"]) == 0
    assert main(["kpca", *args, "-o", str(tmp_path / "d2.h5"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "row" not in err and "%" not in err and "kernel PCA" not in err
