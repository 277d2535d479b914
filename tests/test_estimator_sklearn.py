"""`dec_lightning.DEC` against scikit-learn's own estimator checks, and what the few it cannot pass would test."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.utils.estimator_checks import check_estimator

from dec_lightning import DEC
from dec_lightning.data.validation import ConfigError, DataValidationError
from tests.conftest import blobs_arrays
from tests.test_estimator import SMALL

# Tiny enough that all of scikit-learn's checks (about 40 fits) take seconds on one CPU thread.
TINY: dict[str, Any] = {
    "n_clusters": 3,
    "hidden_dims": (8,),
    "embedding_dim": 2,
    "pretrain_steps": 5,
    "cluster_steps": 5,
    "update_interval": 2,
    "n_init": 2,
    "batch_size": 32,
    "accelerator": "cpu",
}

# The one list of scikit-learn checks DEC is expected to fail, and why. Each is a conflict with
# what DEC is or a check that assumes a classifier; the property it would test is tested below.
_K1 = "sets n_clusters=1; DEC needs K >= 2 (a single cluster is no clustering: Q = P = 1, nothing to learn)"
EXPECTED_FAILED_CHECKS = {
    "check_dont_overwrite_parameters": _K1 + "; see test_fit_leaves_parameters_and_adds_only_fitted_attributes",
    "check_methods_subset_invariance": _K1 + "; see test_methods_are_invariant_to_batching",
    "check_fit2d_1feature": _K1 + "; see test_one_feature_and_one_dimensional_input",
    "check_fit2d_predict1d": _K1 + "; see test_one_feature_and_one_dimensional_input",
    "check_estimator_sparse_array": (
        "reads classifier_tags.multi_class whenever predict_proba exists; a clusterer has no classifier "
        "tags (AttributeError); see test_every_sparse_format_gives_the_dense_result"
    ),
    "check_estimator_sparse_matrix": (
        "reads classifier_tags.multi_class whenever predict_proba exists; a clusterer has no classifier "
        "tags (AttributeError); see test_every_sparse_format_gives_the_dense_result"
    ),
}


def test_scikit_learn_check_estimator() -> None:
    """All of `check_estimator` passes but the listed checks, and those really fail (the list stays honest)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty-cluster warnings on the checks' random data
        results = check_estimator(DEC(**TINY), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None)
    status = {r["check_name"]: (r["status"], r["exception"]) for r in results}
    assert len(status) >= 45
    unexpected = {name: repr(exc) for name, (state, exc) in status.items() if state == "failed"}
    assert not unexpected
    assert {name for name, (state, _) in status.items() if state == "xfail"} == set(EXPECTED_FAILED_CHECKS)
    skipped = {name for name, (state, _) in status.items() if state == "skipped"}
    assert skipped <= {"check_array_api_input"}  # needs SCIPY_ARRAY_API=1 and an array API library


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs_arrays()


@pytest.fixture(scope="module")
def fitted(data) -> DEC:
    return DEC(**SMALL).fit(*data)


def test_fit_leaves_parameters_and_adds_only_fitted_attributes(data) -> None:
    est = DEC(**{**TINY, "hidden_dims": "auto", "pretrain_steps": "auto"})
    before = dict(vars(est))
    est.set_params(pretrain_steps=3).fit(data[0])
    before["pretrain_steps"] = 3
    after = vars(est)
    assert {k: after[k] for k in before} == before  # "auto" stays "auto": the resolved values are fitted attributes
    added = set(after) - set(before)
    assert added and all(k.endswith("_") and not k.startswith("_") for k in added), added
    assert est.encoder_dims_[1:] != [] and est.pretrain_steps_ == 3 and est.n_features_in_ == data[0].shape[1]


def test_methods_are_invariant_to_batching(fitted: DEC, data) -> None:
    """A sample's embedding, Q and cluster do not depend on which other samples are in the call."""
    x, _ = data
    parts = [x[:1], x[1:37], x[37:]]
    for method in (fitted.transform, fitted.predict_proba, fitted.predict):
        whole = method(x)
        np.testing.assert_allclose(np.concatenate([method(p) for p in parts]), whole, atol=1e-6)


def test_one_feature_and_one_dimensional_input(data) -> None:
    x, _ = data
    one = DEC(**{**TINY, "n_clusters": 2}).fit(x[:, :1])
    assert one.n_features_in_ == 1 and one.predict(x[:5, :1]).shape == (5,)
    with pytest.raises(DataValidationError, match="Expected 2D array, got 1D array"):
        one.predict(x[:5, 0])
    with pytest.raises(DataValidationError, match="Expected 2D array, got 1D array"):
        DEC(**TINY).fit(x[:, 0])
    with pytest.raises(DataValidationError, match=r"1 sample\(s\) .* minimum of 2 is required"):
        DEC(**TINY).fit(x[:1])


@pytest.mark.parametrize("to_sparse", [sp.csr_array, sp.csc_matrix, sp.coo_matrix, sp.lil_matrix])
def test_every_sparse_format_gives_the_dense_result(fitted: DEC, data, to_sparse) -> None:
    """Sparse input is accepted in any scipy format (the ``sparse`` tag says so) and means the same as dense."""
    x, y = data
    assert fitted.__sklearn_tags__().input_tags.sparse
    sparse = to_sparse(x)
    np.testing.assert_array_equal(fitted.predict(sparse), fitted.labels_)
    np.testing.assert_allclose(fitted.predict_proba(sparse), fitted.predict_proba(x), atol=1e-6)
    refit = DEC(**fitted.get_params()).fit(sparse, y)
    np.testing.assert_array_equal(refit.labels_, fitted.labels_)


def test_random_state_int_random_state_instance_and_none(fitted: DEC, data) -> None:
    x, y = data
    params = fitted.get_params()
    assert params["random_state"] == 0  # the default: repeatable unless asked otherwise
    again = DEC(**params).fit(x, y)
    np.testing.assert_array_equal(again.labels_, fitted.labels_)
    np.testing.assert_array_equal(again.cluster_centers_, fitted.cluster_centers_)
    # a RandomState draws the seed: equal generators, equal runs
    a = DEC(**{**params, "random_state": np.random.RandomState(3)}).fit(x)
    b = DEC(**{**params, "random_state": np.random.RandomState(3)}).fit(x)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert not np.array_equal(a.cluster_centers_, fitted.cluster_centers_)
    # None draws from numpy's global generator, as scikit-learn estimators do
    np.random.seed(5)
    c = DEC(**{**params, "random_state": None}).fit(x)
    np.random.seed(5)
    d = DEC(**{**params, "random_state": None}).fit(x)
    np.testing.assert_array_equal(c.cluster_centers_, d.cluster_centers_)
    for bad in ("zero", -1, 1.5):
        with pytest.raises(ConfigError, match="random_state"):
            DEC(**{**params, "random_state": bad}).fit(x)


def test_labels_of_any_type_are_scored(fitted: DEC, data) -> None:
    """y only feeds ACC/NMI/ARI, so text labels work too (as integer codes)."""
    x, y = data
    names = np.array(["a", "b", "c", "d"])[y]
    est = DEC(**fitted.get_params()).fit(x, names)
    assert est.scores_ == pytest.approx(fitted.scores_)
    est = DEC(**fitted.get_params()).fit(x, y.astype(object))
    assert est.scores_ == pytest.approx(fitted.scores_)


class _Named(np.ndarray):
    """An array with column names, standing in for a DataFrame (no dataframe library is a dependency)."""

    columns: list[str]


def _named(x: np.ndarray, columns: list[str]) -> _Named:
    out = x.view(_Named)
    out.columns = columns
    return out


def test_feature_names_are_recorded_checked_and_saved(fitted: DEC, data, tmp_path, monkeypatch) -> None:
    """`validate_data` records ``feature_names_in_`` and compares them at predict; `save` keeps them."""
    import sklearn.utils.validation as skv

    real = skv._get_feature_names
    monkeypatch.setattr(
        skv, "_get_feature_names", lambda X: np.asarray(X.columns, dtype=object) if hasattr(X, "columns") else real(X)
    )
    x, _ = data
    columns = [f"f{i}" for i in range(x.shape[1])]
    est = DEC(**fitted.get_params()).fit(_named(x, columns))
    np.testing.assert_array_equal(est.feature_names_in_, columns)
    np.testing.assert_array_equal(est.predict(_named(x, columns)), est.labels_)
    with pytest.raises(DataValidationError, match="feature names should match"):
        est.predict(_named(x, columns[::-1]))
    loaded = DEC.load(est.save(tmp_path / "named.pt"))
    np.testing.assert_array_equal(loaded.feature_names_in_, columns)
    assert not hasattr(fitted, "feature_names_in_")  # plain arrays have no names


def test_files_from_before_random_state_still_load(fitted: DEC, data, tmp_path) -> None:
    """Files saved when the parameter was called ``seed`` load, with the value under its new name."""
    path = fitted.save(tmp_path / "new.pt")
    raw = torch.load(path, weights_only=True)
    raw["params"]["seed"] = raw["params"].pop("random_state")
    for key in ("pretrain_steps", "feature_names"):
        raw.pop(key)
    torch.save(raw, tmp_path / "old.pt")
    old = DEC.load(tmp_path / "old.pt")
    assert old.get_params() == fitted.get_params()
    np.testing.assert_array_equal(old.predict(data[0]), fitted.labels_)
    # a RandomState is saved as None: its state is no setting, and the fitted weights are in the file
    rs = DEC(**{**fitted.get_params(), "random_state": np.random.RandomState(0)})
    rs.module_, rs.labels_, rs.scores_, rs.n_iter_ = fitted.module_, fitted.labels_, {}, 1
    rs.pretrain_steps_ = 0
    assert DEC.load(rs.save(tmp_path / "rs.pt")).random_state is None


def test_inference_runs_the_encoder_once_per_batch(fitted: DEC, data, monkeypatch) -> None:
    """predict_proba computes Q from the batch's embedding: one encoder pass per batch, not one for z and one for Q."""
    x, _ = data
    calls: list[int] = []
    encoder = fitted.module_.encoder
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda batch: calls.append(len(batch)) or forward(batch))
    for method in (fitted.predict_proba, fitted.predict, fitted.transform):
        calls.clear()
        method(x)
        assert calls == [len(x)], method.__name__
