"""kernelcomp._parallel: the thread-count context and the one progress-bar helper."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from kernelcomp._parallel import progress


class _Boom(Exception):
    pass


def test_progress_shows_and_closes_a_bar_even_when_the_block_raises():
    out = io.StringIO()
    with pytest.raises(_Boom), progress(True, total=4, unit="block", desc="K", file=out) as bar:
        bar.update(1)
        bar.set_postfix(loss=0.5)
        raise _Boom
    assert bar.disable  # tqdm's close() disables the bar
    text = out.getvalue()
    assert "K:" in text and "1/4" in text and "loss=0.5" in text


def test_progress_initial_counts_work_done_before():
    out = io.StringIO()
    with progress(True, total=5, initial=3, file=out) as bar:
        bar.update(2)
    assert bar.n == 5 and "5/5" in out.getvalue()


def test_progress_off_is_silent_and_does_not_import_tqdm(capsys):
    probe = (
        "import sys\n"
        "from kernelcomp._parallel import progress\n"
        "with progress(False, total=2, unit='it') as bar:\n"
        "    bar.update(1); bar.set_postfix(x=1); bar.close()\n"
        "print('tqdm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False" and out.stderr == ""
