"""The suite's pytest-xdist scheduling (tests/conftest.py): MNIST-size tests share a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mnist_size_scope

ROOT = Path(__file__).resolve().parents[1]

_PROBE = '''
import os
from pathlib import Path

import pytest

OUT = Path(__file__).parent / "workers"


@pytest.mark.parametrize("i", range(6))
def test_big_at_mnist_size(i):
    (OUT / f"big{i}").write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))


@pytest.mark.parametrize("i", range(6))
def test_small(i):
    (OUT / f"small{i}").write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
'''


def test_mnist_size_names_are_recognised():
    assert mnist_size_scope("tests/test_x.py::test_gram_at_mnist_size") == "mnist_size"
    assert mnist_size_scope("tests/test_x.py::test_n20000_cnn_in_a_subprocess") == "mnist_size"
    assert mnist_size_scope("tests/t.py::test_cross_gram_at_issue_size[float32]") == "mnist_size"
    assert mnist_size_scope("tests/test_x.py::test_large_gram_in_a_subprocess") == "mnist_size"
    # the file name does not count, only the test's
    assert mnist_size_scope("tests/test_mnist_size.py::test_small") is None


def test_mnist_size_tests_run_in_one_worker(tmp_path):
    # two workers, six MNIST-size tests and six others: the six run in the same worker (without
    # the scheduler, xdist's load balancing splits them over both: checked 3/3)
    pytest.importorskip("xdist")
    (tmp_path / "workers").mkdir()
    (tmp_path / "test_probe.py").write_text(_PROBE)
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {p.name: p.read_text() for p in (tmp_path / "workers").iterdir()}
    assert len(workers) == 12
    big = {w for name, w in workers.items() if name.startswith("big")}
    assert len(big) == 1 and big != {"none"}, workers
    # and the run was parallel: the other tests also went to the other worker
    assert len(set(workers.values())) == 2, workers
