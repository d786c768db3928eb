"""``kernelcomp demo --out DIR``: an existing output folder is kept unless ``--force``."""

from __future__ import annotations

import kernelcomp.demo
from kernelcomp.cli import main


def _record_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(kernelcomp.demo, "run_demo", lambda out, **kw: calls.append(out))
    return calls


def test_a_folder_with_files_needs_force(tmp_path, monkeypatch, capsys):
    calls = _record_calls(monkeypatch)
    out = tmp_path / "d"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["demo", "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "--force" in err and len(err.splitlines()) == 1
    assert calls == [] and (out / "summary.json").read_text() == "{}"
    assert main(["demo", "--out", str(out), "--quick", "--force", "--quiet"]) == 0
    assert len(calls) == 1


def test_a_new_or_empty_folder_needs_no_force(tmp_path, monkeypatch):
    calls = _record_calls(monkeypatch)
    assert main(["demo", "--out", str(tmp_path / "new"), "--quiet"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["demo", "--out", str(tmp_path / "empty"), "--quiet"]) == 0
    assert len(calls) == 2


def test_a_file_is_no_output_folder(tmp_path, monkeypatch, capsys):
    calls = _record_calls(monkeypatch)
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["demo", "--out", str(f), "--force"]) == 2
    assert "not a folder" in capsys.readouterr().err and calls == []
