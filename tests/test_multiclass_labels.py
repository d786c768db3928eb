"""Labels of three or more classes in kernel PCA: centred one-hot P_k and KSG mutual information."""

from __future__ import annotations

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import io
from kernelcomp.cli import main
from kernelcomp.diagnostics import class_indicators, kpca_record, mutual_information


def test_class_indicators_by_hand():
    Y, classes = class_indicators(np.array([2, 0, 1, 0, 0]))
    assert classes.tolist() == [0, 1, 2]
    expected = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]]) - [0.6, 0.2, 0.2]
    np.testing.assert_array_equal(Y, expected)
    np.testing.assert_allclose(Y.sum(axis=0), 0.0, atol=1e-15)  # centred
    with pytest.raises(ValueError, match="single class"):
        class_indicators(["a", "a"])
    with pytest.raises(ValueError, match="1-D array of class labels"):
        class_indicators(np.zeros((3, 2), dtype=int))


def test_three_classes_on_a_known_eigenbasis_by_hand():
    """K diagonal: its eigenvectors are the unit vectors, so c_rj = Y[r, j] and P_k = k/6."""
    K = np.diag([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    y = np.array([0, 1, 2, 0, 1, 2])
    rec = kpca_record(K, y, mi_k=1)
    assert rec["n_classes"] == 3
    # ||Y||^2 = 6 - 3 * 2^2 / 6 = 4; each row holds 2/3 and twice -1/3: 6/9 of it per eigenvector
    np.testing.assert_allclose(rec["cumulative_projection"], np.arange(1, 7) / 6, rtol=1e-14)
    c = rec["label_projection"]
    assert c.shape == (6, 3)
    np.testing.assert_allclose(np.abs(c), np.abs(np.eye(3)[y] - 1 / 3), rtol=1e-14)
    assert rec["label_mean_share"] == pytest.approx(0.0, abs=1e-15)
    assert rec["mi_method"] == "ksg" and rec["mutual_information"].shape == (6,)
    # the alignment with the centred indicators: <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)
    Y = np.eye(3)[y] - 1 / 3
    YY = Y @ Y.T
    assert rec["kernel_alignment"] == pytest.approx(
        np.sum(K * YY) / (np.linalg.norm(K) * np.linalg.norm(YY)), rel=1e-12)


@pytest.mark.parametrize("coding", ["int", "str"])
def test_three_classes_match_a_hand_computation_on_an_ntk(coding):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 3))
    codes = np.digitize(X[:, 0], [-0.4, 0.4])  # three classes along x_0
    y = codes if coding == "int" else np.array(["low", "mid", "top"])[codes]
    K = kc.NTK(depth=2)(X)
    rec = kpca_record(K, y, mi_components=5)
    _, V = np.linalg.eigh(K)
    V = V[:, ::-1]
    Y = np.eye(3)[codes] - np.bincount(codes) / 60
    c = V.T @ Y
    P = np.cumsum(np.sum(c**2, axis=1)) / np.sum(Y**2)
    np.testing.assert_allclose(rec["cumulative_projection"], P, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rec["label_projection"] ** 2, c**2, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(
        rec["mutual_information"],
        mutual_information(V[:, :5], codes, n_components=5, method="ksg"), atol=1e-3)
    # float labels stay real targets, projected as given (uncentred), and report their mean
    real = kpca_record(K, codes.astype(float))
    assert "n_classes" not in real and "mutual_information" not in real
    f = codes.astype(float)
    np.testing.assert_allclose(real["cumulative_projection"],
                               np.cumsum((V.T @ f) ** 2) / (f @ f), rtol=1e-9, atol=1e-12)
    assert real["label_mean_share"] == pytest.approx(60 * f.mean() ** 2 / (f @ f), rel=1e-12)


def test_two_classes_keep_the_papers_meaning_and_report_their_mean():
    K = np.diag(np.arange(8.0, 0.0, -1.0))
    y = np.array([1.0] * 6 + [-1.0] * 2)
    rec = kpca_record(K, y, mi_k=2)
    np.testing.assert_allclose(rec["cumulative_projection"], np.arange(1, 9) / 8)
    assert rec["label_mean_share"] == pytest.approx(0.25)  # 8 * 0.5^2 / 8
    assert rec["mi_method"] == "paper" and "n_classes" not in rec


def test_cli_kpca_three_classes_agrees_with_the_api(tmp_path, capsys):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((45, 3))
    codes = np.digitize(X[:, 0], [-0.4, 0.4])
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y3.npy", codes)
    np.save(tmp_path / "ys.npy", np.array(["a", "b", "c"])[codes])
    gram_file = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(gram_file), "-q"]) == 0
    K = io.load_gram(gram_file)
    expected = kpca_record(K, codes)
    for name in ("y3.npy", "ys.npy"):
        out = tmp_path / f"{name}.h5"
        assert main(["kpca", str(gram_file), "--labels", str(tmp_path / name),
                     "-o", str(out)]) == 0
        stdout, err = capsys.readouterr()
        assert "--labels: 3 classes" in err and "one-hot" in err
        assert "(one-hot, 3 classes)" in stdout and "(KSG)" in stdout
        e = io.load_diagnostics(out).entries[0]
        assert e["n_classes"] == 3 and e["mi_method"] == "ksg"
        np.testing.assert_allclose(e["cumulative_projection"],
                                   expected["cumulative_projection"], rtol=1e-12)
        np.testing.assert_allclose(e["mutual_information"], expected["mutual_information"])
    # real targets with a large mean: said on stderr
    np.save(tmp_path / "yf.npy", codes.astype(float) + 1.0)
    assert main(["kpca", str(gram_file), "--labels", str(tmp_path / "yf.npy"),
                 "-o", str(tmp_path / "f.h5")]) == 0
    err = capsys.readouterr().err
    assert "the labels' mean carries" in err and "uncentred" in err
    # figures: the label-projection figures are left out for several classes
    assert main(["kpca", str(gram_file), "--labels", str(tmp_path / "y3.npy"), "-o",
                 str(tmp_path / "p.h5"), "--plot", str(tmp_path / "figs"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "mutual_information.png", "spectrum.png"]
