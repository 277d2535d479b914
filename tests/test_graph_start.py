"""The graph start (`graph_spectral_labels`): it keeps apart what k-means merges, by hand-checkable cases."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
from dec_lightning.callbacks.graph_start import graph_spectral_labels, group_means, nearest_neighbors
from dec_lightning.callbacks.kmeans import kmeans_on_embedding
from dec_lightning.data import ArrayDataModule
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC


def strips(
    n_per_strip: int = 300, gap: float = 1.0, length: float = 10.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two long parallel strips ``gap`` apart: k-means (K=2) cuts both across their length, since
    that halves the larger spread; a nearest-neighbour graph follows each strip."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, length, 2 * n_per_strip)
    y = np.repeat([0.0, gap], n_per_strip) + rng.normal(0, 0.05, 2 * n_per_strip)
    return np.stack([x, y], axis=1), np.repeat([0, 1], n_per_strip)


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_graph_start_separates_strips_that_kmeans_cuts() -> None:
    from sklearn.cluster import KMeans

    data, truth = strips()
    kmeans = KMeans(2, n_init=20, random_state=0).fit_predict(data)
    graph = graph_spectral_labels(data, 2, n_micro=30, n_neighbors=10)
    assert adjusted_rand_score(truth, kmeans) < 0.1  # the failure the graph start exists for
    assert adjusted_rand_score(truth, graph) == 1.0


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_graph_start_keeps_micro_clusters_whole_and_is_deterministic() -> None:
    data, _ = strips(seed=1)
    a = graph_spectral_labels(data, 2, n_micro=30, random_state=3)
    b = graph_spectral_labels(data, 2, n_micro=30, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1}


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_precomputed_neighbors_give_the_same_labels() -> None:
    data, _ = strips(seed=2)
    neighbors = nearest_neighbors(data, 10)
    assert neighbors.shape == (len(data), 11) and (neighbors[:, 0] == np.arange(len(data))).all()
    np.testing.assert_array_equal(
        graph_spectral_labels(data, 2, n_micro=30, neighbors=neighbors), graph_spectral_labels(data, 2, n_micro=30)
    )
    with pytest.raises(ValueError, match=r"neighbors must be \(n_samples, n_neighbors \+ 1\) = \(600, 6\)"):
        graph_spectral_labels(data, 2, n_micro=30, n_neighbors=5, neighbors=neighbors)


def test_group_means_by_hand() -> None:
    data = np.array([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [1.0, 2.0]])
    labels = np.array([0, 0, 1, 0])
    np.testing.assert_allclose(group_means(data, labels, 2), [[1.0, 2.0], [10.0, 10.0]])
    with pytest.raises(ValueError, match=r"clusters \[2\] are empty"):
        group_means(data, labels, 3)


@pytest.mark.parametrize(
    ("n_micro", "n_neighbors", "match"),
    [(2, 10, "n_clusters < n_micro"), (601, 10, "n_micro <= n_samples"), (30, 0, "n_neighbors")],
)
def test_graph_start_rejects_bad_sizes(n_micro: int, n_neighbors: int, match: str) -> None:
    data, _ = strips()
    with pytest.raises(ValueError, match=match):
        graph_spectral_labels(data, 2, n_micro=n_micro, n_neighbors=n_neighbors)


def test_kmeans_init_rejects_too_few_micro_clusters() -> None:
    with pytest.raises(ValueError, match="micro_clusters must be >= 2"):
        KMeansInit(micro_clusters=1)


class CentresAtStart(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: DEC) -> None:
        self.centers = pl_module.centers.detach().clone()
        pl_module.eval()
        with torch.no_grad():
            self.embedding = pl_module.embed(trainer.datamodule.dataset.x).double().numpy()
        pl_module.train()


def test_kmeans_init_with_micro_clusters_sets_the_graph_groups_means(trainer_kwargs) -> None:
    """Through a real fit: the centres are the means of the graph start's groups on the embedding."""
    data, _ = strips(n_per_strip=100)
    dm = ArrayDataModule(data.astype(np.float32), batch_size=50)
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([2, 2]), n_clusters=2)
    init, probe = KMeansInit(seed=5, micro_clusters=20, n_neighbors=8), CentresAtStart()
    L.Trainer(max_steps=1, callbacks=[init, probe, TargetDistributionRefresh(5)], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    labels = graph_spectral_labels(probe.embedding, 2, n_micro=20, n_neighbors=8, random_state=5)
    expected = group_means(probe.embedding, labels, 2)
    np.testing.assert_allclose(probe.centers.numpy(), expected, rtol=0, atol=1e-5)
    assert init.done


def test_kmeans_on_embedding_returns_graph_labels(trainer_kwargs) -> None:
    """`kmeans_on_embedding(micro_clusters=...)` hands back the graph labels with the centres."""
    data, _ = strips(n_per_strip=100)
    dm = ArrayDataModule(data.astype(np.float32), batch_size=50)
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([2, 2]), n_clusters=2)
    seen = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["centers"], seen["labels"] = kmeans_on_embedding(
                trainer, pl_module, 1, 5, micro_clusters=20, n_neighbors=8
            )

    L.Trainer(max_steps=1, callbacks=[Grab(), TargetDistributionRefresh(5)], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    labels = seen["labels"].numpy()
    np.testing.assert_allclose(
        seen["centers"].numpy(),
        group_means(module.embed(dm.dataset.x).detach().double().numpy(), labels, 2),
        atol=1e-4,
    )
