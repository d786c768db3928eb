"""kernelcomp._validation.check_labels: the one label/target validator."""

from __future__ import annotations

import numpy as np
import pytest

from kernelcomp._validation import check_bool, check_choice, check_labels


def test_binary_labels_come_back_as_float64():
    out = check_labels(np.array([1, -1, 1], dtype=np.int8), 3)
    assert out.dtype == np.float64 and out.tolist() == [1.0, -1.0, 1.0]


def test_real_targets_keep_their_values():
    y = np.array([0.5, -2.0, 3.25], dtype=np.float32)
    out = check_labels(y, 3, kind="real")
    assert out.dtype == np.float64 and out.tolist() == [0.5, -2.0, 3.25]


@pytest.mark.parametrize(
    ("y", "kind", "error", "message"),
    [
        ([1.0, 0.0, 1.0], "binary", ValueError, "y must hold labels -1 and \\+1 only, found 0.0"),
        ([1.0, -1.0], "binary", ValueError, "y has 2 labels, but there are 3 samples"),
        ([1.0, -1.0], "real", ValueError, "y has 2 targets, but there are 3 samples"),
        ([[1.0, -1.0, 1.0]], "binary", ValueError, "y must be 1-D of shape \\(3,\\), got shape"),
        ([True, False, True], "binary", TypeError, "y must hold the numbers -1 and \\+1"),
        (["a", "b", "c"], "real", TypeError, "y must hold real numbers, got dtype"),
        ([1.0, np.nan, 0.0], "real", ValueError, "y contains NaN or infinity"),
        ([1.0, np.inf, 1.0], "binary", ValueError, "found inf"),
        ([[1.0], [1.0, 2.0], [3.0]], "real", ValueError, "could not be converted"),
    ],
)
def test_bad_labels_get_one_line_errors(y, kind, error, message):
    with pytest.raises(error, match=message):
        check_labels(y, 3, kind=kind)


def test_name_and_kind_are_checked():
    with pytest.raises(ValueError, match="y_test has 1 labels"):
        check_labels([1.0], 2, "y_test")
    with pytest.raises(ValueError, match="kind must be one of"):
        check_labels([1.0], 1, kind="multiclass")


def test_one_square_gram_message_and_one_symmetry_tolerance():
    import kernelcomp as kc
    from kernelcomp._validation import check_gram, symmetry_tolerance

    rect = np.ones((3, 4))
    for call in (lambda: check_gram(rect),
                 lambda: kc.diagnostics.kernel_pca(rect, n_components=1),
                 lambda: kc.training.kernel_gradient_flow(rect, np.ones(3), alpha=1.0)):
        with pytest.raises(ValueError, match=r"K must be a square Gram matrix, got shape \(3, 4\)"):
            call()
    K = np.eye(4)
    for dt in (np.float64, np.float32):
        tol = symmetry_tolerance(dt)
        ok, bad = K.astype(dt), K.astype(dt)
        ok[0, 1] = 0.5 * tol
        bad[0, 1] = 2.0 * tol
        check_gram(ok)
        with pytest.raises(ValueError, match="K must be symmetric"):
            check_gram(bad)


def test_check_choice_is_the_one_wording():
    assert check_choice("b", "mode", ("a", "b")) == "b"
    assert check_choice("x", "data", {"x": 1, "y": 2}) == "x"  # a mapping's keys
    with pytest.raises(ValueError, match=r"^mode must be one of \['a', 'b'\], got 'c'$"):
        check_choice("c", "mode", ("a", "b"))
    with pytest.raises(ValueError, match=r"must be one of \['x', 'y'\] or a callable, got 'z'"):
        check_choice("z", "data", {"y": 2, "x": 1}, what="a callable")  # listed sorted
    # never a coincidence of equality: True == 1, and an array equals "a" elementwise
    for bad in (None, 2, True, ["a"], np.array(["a"]), {"a": 1}):
        with pytest.raises(ValueError, match="mode must be one of"):
            check_choice(bad, "mode", ("a", "b", 1))


def test_check_bool_takes_only_booleans():
    assert check_bool(True, "flag") is True
    assert check_bool(np.bool_(False), "flag") is False
    for bad in (0, 1, None, "yes", np.array([True])):
        with pytest.raises(TypeError, match="flag must be True or False, got"):
            check_bool(bad, "flag")
