"""The ``"auto"`` defaults of `dec_lightning.DEC`: the rule itself, and default DEC against k-means on a small table."""

from __future__ import annotations

import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from dec_lightning import DEC
from dec_lightning.data.validation import ConfigError
from dec_lightning.estimator import auto_settings


@pytest.mark.parametrize(
    ("n_samples", "n_features", "hidden", "embedding", "steps"),
    [
        (300, 4, [128, 128, 512], 4, 1000),  # small table: narrow encoder, embedding as wide as the data
        (1000, 30, [240, 240, 960], 20, 1000),  # 8 units per feature; embedding at most 20 wide
        (400, 62, [496, 496, 1984], 20, 1000),  # the last shape below the paper's encoder
        (1797, 64, [500, 500, 2000], 10, 1000),  # digits: exactly the paper's d-500-500-2000-10
        (70000, 784, [500, 500, 2000], 10, 5480),  # MNIST: 20 epochs of 274 batches
    ],
)
def test_auto_rule(n_samples: int, n_features: int, hidden: list[int], embedding: int, steps: int) -> None:
    assert auto_settings(n_samples, n_features) == {
        "hidden_dims": hidden,
        "embedding_dim": embedding,
        "pretrain_steps": steps,
    }


def test_auto_is_resolved_at_fit_and_explicit_values_win() -> None:
    x, _ = make_blobs(n_samples=60, n_features=3, centers=2, random_state=0)
    quick = {"n_clusters": 2, "cluster_steps": 2, "n_init": 1, "accelerator": "cpu"}
    est = DEC(**quick, pretrain_steps=2).fit(x)
    assert est.get_params()["hidden_dims"] == "auto" and est.get_params()["embedding_dim"] == "auto"
    assert est.encoder_dims_ == [3, 128, 128, 512, 3] and est.pretrain_steps_ == 2
    assert est.transform(x).shape == (60, 3)
    est = DEC(**quick, hidden_dims=(8,), embedding_dim=2, pretrain_steps=0).fit(x)
    assert est.encoder_dims_ == [3, 8, 2] and est.pretrain_steps_ == 0
    with pytest.raises(ConfigError, match='hidden_dims must be "auto" or'):
        DEC(**quick, hidden_dims="wide").fit(x)


def test_default_dec_matches_kmeans_on_an_easy_table() -> None:
    """Three standardised Gaussian blobs in 5-D: DEC with every default is at least as good as k-means."""
    x, y = make_blobs(n_samples=200, n_features=5, centers=3, cluster_std=2.5, random_state=0)
    x = StandardScaler().fit_transform(x)
    kmeans_ari = adjusted_rand_score(y, KMeans(3, n_init=20, random_state=0).fit_predict(x))
    dec = DEC(n_clusters=3, accelerator="cpu").fit(x)
    dec_ari = adjusted_rand_score(y, dec.labels_)
    assert dec.encoder_dims_ == [5, 128, 128, 512, 5] and dec.pretrain_steps_ == 1000
    # measured: k-means 0.927, DEC 0.970 (one CPU thread); the margin allows for other BLAS builds
    assert 0.9 < kmeans_ari < 0.95  # easy, but not trivially separated
    assert dec_ari >= kmeans_ari - 0.02, (dec_ari, kmeans_ari)


def test_tabular_benchmark_summary_and_page() -> None:
    """benchmarks/tabular.py: per-dataset means and DEC - k-means from the rows; the committed page matches its JSON."""
    import json

    from benchmarks import tabular

    rows = [
        {
            "dataset": "blobs_n300_d4_k3",
            "seed": seed,
            "kmeans": {"ari": km, "nmi": km, "seconds": 0.1},
            "dec": {"ari": dec, "nmi": dec, "seconds": 10.0, "cluster_steps": 100},
            "encoder_dims": [4, 128, 128, 512, 4],
            "pretrain_steps": 1000,
        }
        for seed, km, dec in [(0, 0.8, 0.9), (1, 0.6, 0.5)]
    ]
    entry = tabular.summarise(rows)["blobs_n300_d4_k3"]
    assert entry["kmeans_ari_mean"] == 0.7 and entry["dec_ari_mean"] == 0.7 and entry["dec_ari_std"] == 0.2
    assert entry["ari_diff_mean"] == 0.0 and entry["dec_ari_at_least_kmeans_seeds"] == 1
    committed = json.loads(tabular.JSON.read_text())
    assert committed["summary"] == tabular.summarise(committed["rows"])
    assert tabular.PAGE.read_text() == tabular.page(committed)
