"""`dec_lightning.DEC`, the scikit-learn style estimator: API, consistency, persistence, sparse input, output."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import dec_lightning
from dec_lightning import DEC, DECModule, estimator, files
from dec_lightning.callbacks.phase_progress import describe_phase
from dec_lightning.data.validation import ConfigError, DataValidationError
from dec_lightning.modules.assignment import soft_assignment
from tests.conftest import BLOBS_DIM, BLOBS_K, BLOBS_N, blobs_arrays

EMBEDDING_DIM = 4
# small enough for about a second per fit on one CPU thread
SMALL: dict[str, Any] = {
    "n_clusters": BLOBS_K,
    "hidden_dims": (32,),
    "embedding_dim": EMBEDDING_DIM,
    "pretrain_steps": 60,
    "cluster_steps": 80,
    "update_interval": 10,
    "n_init": 3,
    "batch_size": 32,
    "accelerator": "cpu",
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs_arrays()


@pytest.fixture(scope="module")
def fitted(data) -> DEC:
    x, y = data
    return DEC(**SMALL).fit(x, y)


def test_init_only_stores_parameters_and_clones() -> None:
    est = DEC(n_clusters=3, hidden_dims=(8, 8), tol=0.01, random_state=7)
    params = est.get_params()
    assert (params["n_clusters"], params["hidden_dims"], params["tol"], params["random_state"]) == (3, (8, 8), 0.01, 7)
    assert not [name for name in vars(est) if name.endswith("_")]  # no fitted attribute before fit
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(np.zeros((2, 3), dtype=np.float32))


def test_top_level_names() -> None:
    assert dec_lightning.DEC is DEC and DEC.__module__ == "dec_lightning.estimator"
    assert dec_lightning.DECModule is dec_lightning.modules.DEC


def test_fit_sets_attributes_with_the_right_shapes(fitted: DEC) -> None:
    assert isinstance(fitted.module_, DECModule)
    assert fitted.labels_.shape == (BLOBS_N,)
    assert set(np.unique(fitted.labels_)) <= set(range(BLOBS_K))
    assert fitted.cluster_centers_.shape == (BLOBS_K, EMBEDDING_DIM)
    assert fitted.n_features_in_ == BLOBS_DIM
    assert 1 <= fitted.n_iter_ <= SMALL["cluster_steps"]
    assert set(fitted.scores_) == {"acc", "nmi", "ari"}
    assert fitted.scores_["acc"] > 0.9  # four well separated blobs


def test_predict_after_fit_equals_labels(fitted: DEC, data) -> None:
    x, _ = data
    np.testing.assert_array_equal(fitted.predict(x), fitted.labels_)


def test_predict_proba_is_eq1_and_rows_sum_to_one(fitted: DEC, data) -> None:
    x, _ = data
    q = fitted.predict_proba(x)
    assert q.shape == (BLOBS_N, BLOBS_K)
    assert (q >= 0).all()
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(q.argmax(axis=1), fitted.predict(x))
    z = torch.from_numpy(fitted.transform(x))
    expected = soft_assignment(z, torch.from_numpy(fitted.cluster_centers_), fitted.alpha)
    np.testing.assert_allclose(q, expected.numpy(), atol=1e-6)


def test_transform_gives_encoder_embeddings(fitted: DEC, data) -> None:
    x, _ = data
    z = fitted.transform(x[:37])
    assert z.shape == (37, EMBEDDING_DIM)
    with torch.no_grad():
        expected = fitted.module_.encoder.cpu()(torch.from_numpy(x[:37]))
    np.testing.assert_allclose(z, expected.numpy(), atol=1e-6)


def test_predict_rejects_other_feature_counts(fitted: DEC, data) -> None:
    x, _ = data
    with pytest.raises(DataValidationError, match=f"X has 15 features, but DEC is expecting {BLOBS_DIM} features"):
        fitted.predict(x[:, :15])


def test_save_load_round_trip(fitted: DEC, data, tmp_path) -> None:
    x, _ = data
    path = fitted.save(tmp_path / "sub" / "dec.pt")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["dec.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)  # plain tensors and builtins only
    assert raw["params"]["hidden_dims"] == SMALL["hidden_dims"]
    loaded = DEC.load(path)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(x), fitted.predict_proba(x))
    np.testing.assert_array_equal(loaded.predict(x), fitted.predict(x))
    np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
    np.testing.assert_array_equal(loaded.labels_, fitted.labels_)
    np.testing.assert_array_equal(loaded.cluster_centers_, fitted.cluster_centers_)
    assert loaded.scores_ == fitted.scores_ and loaded.n_iter_ == fitted.n_iter_
    assert loaded.n_features_in_ == BLOBS_DIM


def test_save_goes_through_the_atomic_helper(fitted: DEC, tmp_path, monkeypatch, fsync_log) -> None:
    """`save` uses `dec_lightning.files.atomic_write` (fsync, rename, fsync the folder): a failed save keeps the old file."""
    calls: list[object] = []
    monkeypatch.setattr(
        estimator, "atomic_write", lambda path, write: calls.append(path) or files.atomic_write(path, write)
    )
    synced = fsync_log
    path = fitted.save(tmp_path / "dec.pt")
    assert calls == [path] and synced == ["file", "dir"]
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["dec.pt"]


def test_load_refuses_other_files(tmp_path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ConfigError, match=r"not a file written by dec_lightning\.DEC\.save"):
        DEC.load(other)


def test_sparse_input_gives_the_dense_result(fitted: DEC, data) -> None:
    """CSR input is densified batch by batch: the same seed gives the very same clustering."""
    x, y = data
    sparse = sp.csr_matrix(x)
    np.testing.assert_array_equal(fitted.predict(sparse), fitted.labels_)
    refit = DEC(**SMALL).fit(sparse, y)
    np.testing.assert_array_equal(refit.labels_, fitted.labels_)
    np.testing.assert_allclose(refit.cluster_centers_, fitted.cluster_centers_, atol=1e-5)


def test_truly_sparse_data_clusters() -> None:
    """Mostly-zero count-like features (as in bag-of-words): three groups with disjoint active features."""
    rng = np.random.default_rng(0)
    n_per, width = 60, 10
    rows = []
    for group in range(3):
        block = np.zeros((n_per, 3 * width), dtype=np.float32)
        active = rng.random((n_per, width)) < 0.5
        block[:, group * width : (group + 1) * width] = active * rng.integers(1, 4, (n_per, width))
        rows.append(block)
    x = sp.csr_matrix(np.vstack(rows))
    y = np.repeat(np.arange(3), n_per)
    assert x.nnz / np.prod(x.shape) < 0.2
    labels = DEC(**{**SMALL, "n_clusters": 3}).fit_predict(x, y)
    assert labels.shape == (3 * n_per,)
    acc = DEC(**{**SMALL, "n_clusters": 3}).fit(x, y).scores_["acc"]
    assert acc > 0.9


def test_fit_predict_is_seeded_quiet_and_leaves_global_rng_alone(fitted: DEC, data, capfd) -> None:
    x, y = data
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    labels = DEC(**SMALL).fit_predict(x, y)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # quiet by default: no progress bars, no Lightning messages
    np.testing.assert_array_equal(labels, fitted.labels_)  # same seed, same clustering
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    other_seed = DEC(**{**SMALL, "random_state": 1, "pretrain_steps": 0, "cluster_steps": 1}).fit(x)
    assert other_seed.scores_ == {}  # no labels given, no scores


def test_invalid_settings_fail_before_training(data) -> None:
    x, _ = data
    with pytest.raises(ConfigError, match=r"n_clusters must be between 2 and the number of samples \(240\), got 1"):
        DEC(**{**SMALL, "n_clusters": 1}).fit(x)
    with pytest.raises(ConfigError, match="n_clusters must be between 2 and the number of samples"):
        DEC(**{**SMALL, "n_clusters": BLOBS_N + 1}).fit(x)
    with pytest.raises(DataValidationError, match="NaN"):
        DEC(**SMALL).fit(np.full((10, 3), np.nan))
    with pytest.raises(ConfigError, match=rf"micro_clusters must be above n_clusters \({BLOBS_K}\), got {BLOBS_K}"):
        DEC(**{**SMALL, "micro_clusters": BLOBS_K}).fit(x)
    with pytest.raises(ConfigError, match="init must be 'kmeans' or 'graph', got 'spectral'"):
        DEC(**{**SMALL, "init": "spectral"}).fit(x)


@pytest.mark.parametrize("init", ["graph", "kmeans"])
def test_the_start_follows_init_and_clusters(data, monkeypatch, init) -> None:
    """``init`` reaches `KMeansInit`: the graph start (the default) calls `graph_spectral_labels` with
    ``micro_clusters``; ``init="kmeans"`` never does. Both cluster the blobs."""
    from dec_lightning.callbacks import kmeans

    calls = []
    real = kmeans.graph_spectral_labels
    monkeypatch.setattr(kmeans, "graph_spectral_labels", lambda *a, **k: calls.append(a[1:5]) or real(*a, **k))
    x, y = data
    est = DEC(**{**SMALL, "micro_clusters": 40, **({} if init == "graph" else {"init": init})}).fit(x, y)
    assert est.get_params()["init"] == init
    assert calls == ([(BLOBS_K, 40, 20, 0)] if init == "graph" else [])  # n_clusters, micro, neighbours, seed
    assert est.scores_["acc"] > 0.95


def test_verbose_fit_shows_phases_and_summary(data, capfd) -> None:
    x, y = data
    est = DEC(**{**SMALL, "layerwise_steps": 5, "pretrain_steps": 10, "verbose": True}).fit(x, y)
    out = capfd.readouterr().out  # Lightning's progress bars write to stdout too
    # the progress bar names each phase
    assert "pretrain layer-wise 1/2" in out and "pretrain layer-wise 2/2" in out
    assert "pretrain fine-tune · step 20/20" in out
    assert re.search(r"clustering · step \d+/80 · P refreshes \d+", out)
    # the summary reports the final scores and cluster sizes
    assert "DEC clustering summary" in out
    s = est.scores_
    assert f"ACC={s['acc']:.3f}  NMI={s['nmi']:.3f}  ARI={s['ari']:.3f}" in out
    sizes = np.bincount(est.labels_, minlength=BLOBS_K)
    for j, size in enumerate(sizes):
        assert re.search(rf"^\s+{j} #* +{size} \(", out, flags=re.MULTILINE), (j, size, out)
    assert f"at step {est.n_iter_} of at most 80" in out
    assert "logs:       none (no logger)" in out and "checkpoint: none written" in out


def test_describe_phase_for_each_stage() -> None:
    trainer = SimpleNamespace(global_step=120, max_steps=400)
    pretrain = SimpleNamespace(num_layers=3, phase=lambda step: (step // 100, step % 100) if step < 300 else (-1, 0))
    assert describe_phase(trainer, pretrain) == "pretrain layer-wise 2/3 · step 120/400"
    trainer.global_step = 301
    assert describe_phase(trainer, pretrain) == "pretrain fine-tune · step 301/400"
    cluster = SimpleNamespace(refresh_count=4, delta_label=0.0123)
    assert describe_phase(trainer, cluster) == "clustering · step 301/400 · P refreshes 4 · labels changed 1.23%"
    cluster.delta_label = float("nan")  # before the second refresh
    assert describe_phase(trainer, cluster) == "clustering · step 301/400 · P refreshes 4"
