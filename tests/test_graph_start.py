"""The graph start (`graph_spectral_labels`): it keeps apart what k-means merges, by hand-checkable cases."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh, graph_start
from dec_lightning.callbacks.graph_start import (
    graph_spectral_labels,
    group_means,
    merge_groups,
    nearest_neighbors,
    split_oversized,
)
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


def test_graph_start_rejects_a_size_cap_below_the_mean() -> None:
    data, _ = strips()
    with pytest.raises(ValueError, match="size_cap must be >= 1"):
        graph_spectral_labels(data, 2, n_micro=30, size_cap=0.9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"micro_clusters": 1}, "micro_clusters must be >= 2"),
        ({"size_cap": 1.5}, "it needs micro_clusters"),
        ({"micro_clusters": 50, "size_cap": 0.5}, "size_cap must be >= 1"),
    ],
)
def test_kmeans_init_rejects_bad_graph_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KMeansInit(**kwargs)


# Four nodes: 0-1 joined by 5, 2-3 by 4, 0-2 and 1-3 by 1. Degrees (volumes) 6, 6, 5, 5.
FOUR = np.array([[0, 5, 1, 0], [5, 0, 0, 1], [1, 0, 0, 4], [0, 1, 4, 0]], dtype=float)


def test_merge_groups_by_hand() -> None:
    """Pairwise Ncut: {0, 1}: 5/6 + 5/6 = 1.67; {2, 3}: 4/5 + 4/5 = 1.6; {0, 2}, {1, 3}: 1/6 + 1/5 = 0.37."""
    singletons, ones = np.arange(4), np.ones(4)
    np.testing.assert_array_equal(merge_groups(FOUR, singletons, ones, 3), [0, 0, 1, 2])
    # then {0, 1} against {2}: 1/12 + 1/5 = 0.28, against {2, 3}'s 1.6: 2 and 3 join
    np.testing.assert_array_equal(merge_groups(FOUR, singletons, ones, 2), [0, 0, 1, 1])
    # 3 + 3 samples exceed the cap of 5: the next pair, {2, 3}, joins instead
    np.testing.assert_array_equal(merge_groups(FOUR, singletons, np.array([3, 3, 1, 1]), 3, max_size=5), [0, 1, 2, 2])
    # no pair fits a cap of 1: the best pair joins anyway, so exactly n_clusters groups remain
    np.testing.assert_array_equal(merge_groups(FOUR, singletons, ones, 3, max_size=1), [0, 0, 1, 2])
    # only node 0 would fit twice over (1 + 1 <= 2.5), no pair does: still the best pair joins, no endless loop
    np.testing.assert_array_equal(merge_groups(FOUR, singletons, np.array([1, 3, 3, 3]), 3, max_size=2.5), [0, 0, 1, 2])
    # groups given as any integers are relabelled 0..K-1 in their order (3, 7, 9); grouped nodes stay together
    np.testing.assert_array_equal(merge_groups(FOUR, np.array([7, 7, 3, 9]), ones, 2), [1, 1, 0, 0])


def test_split_oversized_by_hand() -> None:
    """Group {0, 1, 2} holds 3 > 2.5: its own graph (0-1: 5, 0-2: 1) cuts off node 2; then {2} and {3}
    are the only pair within the cap (pairwise Ncut 4/5 + 4/5), so {0, 1} and {2, 3} remain."""
    ones = np.ones(4)
    split = split_oversized(FOUR, np.array([0, 0, 0, 1]), ones, 2, max_size=2.5)
    assert adjusted_rand_score([0, 0, 1, 1], split) == 1.0
    # no group above the cap: the groups are returned as they are
    np.testing.assert_array_equal(split_oversized(FOUR, np.array([0, 0, 1, 1]), ones, 2, max_size=2.5), [0, 0, 1, 1])


def split_class_and_touching_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: two blobs joined by a thin bridge (a digit written two ways); classes 1 and 2:
    two touching blobs (4 and 9). Cutting the bridge is cheaper than parting 1 from 2."""
    rng = np.random.default_rng(seed)
    bridge = np.stack([rng.uniform(0, 6, 12), rng.normal(0, 0.1, 12)], axis=1)
    parts = [rng.normal([0, 0], 0.5, (150, 2)), rng.normal([6, 0], 0.5, (150, 2)), bridge]
    parts += [rng.normal([0, 10], 0.6, (300, 2)), rng.normal([2.6, 10], 0.6, (300, 2))]
    return np.concatenate(parts), np.repeat([0, 1, 2], [312, 300, 300])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_size_cap_rejoins_a_split_class_and_parts_touching_ones(seed: int) -> None:
    data, truth = split_class_and_touching_pair(seed)
    plain = graph_spectral_labels(data, 3, n_micro=40)
    assert adjusted_rand_score(truth, plain) < 0.5  # the bridge is cut, 1 and 2 share a group
    capped = graph_spectral_labels(data, 3, n_micro=40, size_cap=1.5)
    assert adjusted_rand_score(truth, capped) > 0.9  # 1 and 2 overlap a little at their border


class CentresAtStart(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: DEC) -> None:
        self.centers = pl_module.centers.detach().clone()
        pl_module.eval()
        with torch.no_grad():
            self.embedding = pl_module.embed(trainer.datamodule.dataset.x).double().numpy()
        pl_module.train()


@pytest.mark.parametrize("cap", [{}, {"size_cap": 1.5}])
def test_kmeans_init_with_micro_clusters_sets_the_graph_groups_means(trainer_kwargs, monkeypatch, cap) -> None:
    """Through a real fit: the centres are the means of the graph start's groups on the embedding."""
    data, _ = strips(n_per_strip=100)
    dm = ArrayDataModule(data.astype(np.float32), batch_size=50)
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([2, 2]), n_clusters=2)
    init, probe = KMeansInit(seed=5, micro_clusters=20, n_neighbors=8, **cap), CentresAtStart()
    calls = []
    real_split = graph_start.split_oversized
    monkeypatch.setattr(graph_start, "split_oversized", lambda *a, **k: calls.append(a) or real_split(*a, **k))
    L.Trainer(max_steps=1, callbacks=[init, probe, TargetDistributionRefresh(5)], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    if cap:  # the cap reaches the graph start: 1.5 x the mean of 100 samples
        ((_, groups, _, n_clusters, max_size, _),) = calls
        assert (len(np.unique(groups)), n_clusters, max_size) == (2, 2, 150.0)
    else:
        assert calls == []
    monkeypatch.undo()
    labels = graph_spectral_labels(probe.embedding, 2, n_micro=20, n_neighbors=8, random_state=5, **cap)
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
