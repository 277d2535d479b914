"""The graph start (`graph_spectral_labels`): it keeps apart what k-means merges, by hand-checkable cases."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh, graph_start
from dec_lightning.callbacks.graph_start import (
    GraphStartFailed,
    check_group_sizes,
    coarse_affinity,
    graph_spectral_labels,
    group_means,
    nearest_centers,
    nearest_neighbors,
    pair_ncut,
    split_and_merge,
)
from dec_lightning.callbacks.kmeans import GraphStartWarning, kmeans_on_embedding
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


def test_graph_start_separates_strips_that_kmeans_cuts() -> None:
    from sklearn.cluster import KMeans

    data, truth = strips()
    kmeans = KMeans(2, n_init=20, random_state=0).fit_predict(data)
    graph = graph_spectral_labels(data, 2, n_micro=30, n_neighbors=10)
    assert adjusted_rand_score(truth, kmeans) < 0.1  # the failure the graph start exists for
    assert adjusted_rand_score(truth, graph) == 1.0


def test_graph_start_keeps_micro_clusters_whole_and_is_deterministic() -> None:
    data, _ = strips(seed=1)
    a = graph_spectral_labels(data, 2, n_micro=30, random_state=3)
    b = graph_spectral_labels(data, 2, n_micro=30, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1}


def test_precomputed_neighbors_give_the_same_labels() -> None:
    data, _ = strips(seed=0)
    neighbors = nearest_neighbors(data, 10)
    assert neighbors.shape == (len(data), 11) and (neighbors[:, 0] == np.arange(len(data))).all()
    np.testing.assert_array_equal(
        graph_spectral_labels(data, 2, n_micro=30, n_neighbors=10, neighbors=neighbors),
        graph_spectral_labels(data, 2, n_micro=30, n_neighbors=10),
    )
    with pytest.raises(ValueError, match=r"neighbors must be \(graph rows, n_neighbors \+ 1\) = \(600, 6\)"):
        graph_spectral_labels(data, 2, n_micro=30, n_neighbors=5, neighbors=neighbors)


def test_group_means_by_hand() -> None:
    data = np.array([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [1.0, 2.0]])
    labels = np.array([0, 0, 1, 0])
    np.testing.assert_allclose(group_means(data, labels, 2), [[1.0, 2.0], [10.0, 10.0]])
    with pytest.raises(ValueError, match=r"clusters \[2\] are empty"):
        group_means(data, labels, 3)


@pytest.mark.parametrize(
    ("n_micro", "n_neighbors", "match"),
    [(2, 10, "n_clusters < n_micro"), (601, 10, r"n_micro <= min\(n_samples"), (30, 0, "n_neighbors")],
)
def test_graph_start_rejects_bad_sizes(n_micro: int, n_neighbors: int, match: str) -> None:
    data, _ = strips()
    with pytest.raises(ValueError, match=match):
        graph_spectral_labels(data, 2, n_micro=n_micro, n_neighbors=n_neighbors)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"micro_clusters": 1}, "micro_clusters must be >= 2"),
        ({"init": "spectral"}, "init must be 'kmeans' or 'graph'"),
        ({"n_neighbors": 0}, "n_neighbors must be >= 1"),
    ],
)
def test_kmeans_init_rejects_bad_graph_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KMeansInit(**kwargs)


# Four nodes: 0-1 joined by 5, 2-3 by 4, 0-2 and 1-3 by 1; inner edges 2 on each node's diagonal.
FOUR = np.array([[2, 5, 1, 0], [5, 2, 0, 1], [1, 0, 2, 4], [0, 1, 4, 2]], dtype=float)


def test_pair_ncut_counts_inner_edges_in_the_volumes() -> None:
    """Volumes (summed degrees, diagonal included) 8, 8, 7, 7. {0}-{1}: 5/8 + 5/8; {0}-{2}: 1/8 + 1/7."""
    ncut = pair_ncut(FOUR, np.arange(4))
    np.testing.assert_allclose(ncut[0, 1], 1.25)
    np.testing.assert_allclose(ncut[0, 2], 1 / 8 + 1 / 7)
    np.testing.assert_allclose(ncut[2, 3], 8 / 7)
    assert np.isneginf(np.diag(ncut)).all()
    # groups {0, 1} and {2, 3}: cut 2, volumes 16 and 14
    np.testing.assert_allclose(pair_ncut(FOUR, np.array([0, 0, 1, 1]))[0, 1], 2 / 16 + 2 / 14)


def test_coarse_affinity_keeps_the_sample_graphs_degrees() -> None:
    """Micro-clusters {0, 1} and {2}; each sample's 1 neighbour: 0->1, 1->0, 2->1."""
    affinity = coarse_affinity(np.array([0, 0, 1]), np.array([[0, 1], [1, 0], [2, 1]]), 2)
    np.testing.assert_array_equal(affinity, [[4, 1], [1, 0]])
    assert affinity.sum() == 2 * 3  # every edge counted from both ends: total degree 2 x edges


def test_split_and_merge_by_hand() -> None:
    """Groups {0, 1, 2} (3 nodes) and {3}: the largest is cut into {0, 1} and {2} (its weakest cut),
    then among pairs of at most 3 nodes {2}-{3} has the highest Ncut (8/7 against {0}-... none):
    {0, 1} and {2, 3} remain. Started from {0, 1}, {2, 3}, the halves of a cut rejoin: unchanged."""
    ones = np.ones(4)
    split = split_and_merge(FOUR, np.array([0, 0, 0, 1]), ones, 2)
    assert adjusted_rand_score([0, 0, 1, 1], split) == 1.0
    np.testing.assert_array_equal(split_and_merge(FOUR, np.array([0, 0, 1, 1]), ones, 2), [0, 0, 1, 1])


def test_split_and_merge_never_grows_the_largest_group() -> None:
    """Sizes 3, 3, 1, 1: {0}-{1} is the strongest pair but would hold 6 > the 4 of the cut group
    {0, 2}... so the merge is bounded and no group ends above the largest before."""
    sizes = np.array([3.0, 3.0, 1.0, 1.0])
    groups = np.array([0, 1, 0, 1])  # 4 and 4 samples
    out = split_and_merge(FOUR, groups, sizes, 2)
    assert np.bincount(out, weights=sizes).max() <= 4


def split_class_and_touching_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: two blobs joined by a thin bridge (a digit written two ways); classes 1 and 2:
    two touching blobs (4 and 9). Cutting the bridge is cheaper than parting 1 from 2."""
    rng = np.random.default_rng(seed)
    bridge = np.stack([rng.uniform(0, 6, 12), rng.normal(0, 0.1, 12)], axis=1)
    parts = [rng.normal([0, 0], 0.5, (150, 2)), rng.normal([6, 0], 0.5, (150, 2)), bridge]
    parts += [rng.normal([0, 10], 0.6, (300, 2)), rng.normal([2.6, 10], 0.6, (300, 2))]
    return np.concatenate(parts), np.repeat([0, 1, 2], [312, 300, 300])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_and_merge_leaves_a_cut_the_graph_prefers(seed: int) -> None:
    """A bridge cheaper than the border of two touching classes: the graph prefers cutting the bridge,
    and no pair is more bound than the touching halves, so the rule changes nothing. Only a size
    prior would rejoin class 0 here; the rule has none by design."""
    data, truth = split_class_and_touching_pair(seed)
    plain = graph_spectral_labels(data, 3, n_micro=40, refine=False)
    assert adjusted_rand_score(truth, plain) < 0.5  # the bridge is cut, 1 and 2 share a group
    np.testing.assert_array_equal(graph_spectral_labels(data, 3, n_micro=40), plain)


def test_graph_from_a_sample_labels_every_row_by_its_nearest_micro_centre() -> None:
    """Above ``max_graph_samples`` the graph is built from a sample; every row still gets a group, and
    on separable data the same partition as from all rows."""
    data, truth = strips(n_per_strip=400, seed=3)
    sampled = graph_spectral_labels(data, 2, n_micro=30, n_neighbors=10, max_graph_samples=300)
    assert sampled.dtype == np.int32 and sampled.shape == (800,)
    assert adjusted_rand_score(truth, sampled) > 0.95
    centers = np.array([[0.0, 0.0], [10.0, 0.0]])
    np.testing.assert_array_equal(nearest_centers(np.array([[1.0, 0.0], [9.0, 1.0], [4.0, 0.0]]), centers), [0, 1, 0])


def test_graph_search_is_bounded_by_the_sample(monkeypatch) -> None:
    """The neighbour search sees at most ``max_graph_samples`` rows, whatever N: its cost is bounded;
    searched in blocks, it gives the same graph as one search of all rows."""
    data, _ = strips(n_per_strip=500)
    seen = []
    real = graph_start.knn_affinity
    monkeypatch.setattr(graph_start, "knn_affinity", lambda x, *a: seen.append(len(x)) or real(x, *a))
    graph_spectral_labels(data, 2, n_micro=30, max_graph_samples=250)
    assert seen == [250]
    micro = np.arange(len(data)) % 7
    monkeypatch.setattr(graph_start, "CHUNK", 64)
    np.testing.assert_array_equal(
        real(data, micro, 7, 5), graph_start.coarse_affinity(micro, nearest_neighbors(data, 5), 7)
    )


# ---------------------------------------------------------------- fail-safe: k-means, with one warning


def islands(n_islands: int, n: int = 60, seed: int = 0) -> np.ndarray:
    """``n_islands`` tight, far-apart blobs of ``n`` points: a kNN graph in that many unconnected parts."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([20.0 * i, 0.0], 0.3, (n, 2)) for i in range(n_islands)])


def test_more_unconnected_parts_than_clusters_fail() -> None:
    with pytest.raises(GraphStartFailed, match="falls into 4 unconnected parts, more than the 2 clusters"):
        graph_spectral_labels(islands(4), 2, n_micro=20, n_neighbors=5)
    # as many parts as clusters is no failure: each part is a group
    labels = graph_spectral_labels(islands(3), 3, n_micro=20, n_neighbors=5)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 60), labels) == 1.0


def test_a_group_joining_unconnected_parts_fails() -> None:
    """Two touching blobs and a far clump of 4 points, K = 3: three parts, but the spectral groups put
    the clump with half a blob, a centre between the two."""
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal([0, 0], 1.0, (300, 2)), rng.normal([3, 0], 1.0, (300, 2)), [[50, 50]] * 4])
    data[-4:] += rng.normal(0, 0.01, (4, 2))
    with pytest.raises(GraphStartFailed, match=r"groups \[\d\] join unconnected parts of the graph"):
        graph_spectral_labels(data, 3, n_micro=30, n_neighbors=3)


def test_an_empty_or_tiny_group_fails(monkeypatch) -> None:
    with pytest.raises(GraphStartFailed, match=r"groups \[1\] hold \[0\] samples"):
        check_group_sizes(np.array([50.0, 0.0, 50.0]), 100)
    with pytest.raises(GraphStartFailed, match=r"groups \[2\] hold \[3\] samples, below 0.1 of the mean size \(33\)"):
        check_group_sizes(np.array([50.0, 47.0, 3.0]), 100)
    check_group_sizes(np.array([50.0, 46.0, 4.0]), 100)  # 4 >= 0.1 x 33.3: kept
    data = np.random.default_rng(0).normal(size=(600, 2))  # one blob: a connected graph
    monkeypatch.setattr(graph_start, "spectral_groups", lambda affinity, k, seed=0: np.zeros(len(affinity), int))
    with pytest.raises(GraphStartFailed, match=r"hold \[0\] samples"):  # spectral gave one group of two
        graph_spectral_labels(data, 2, n_micro=30, refine=False)
    monkeypatch.setattr(graph_start, "spectral_groups", lambda affinity, k, seed=0: np.eye(len(affinity), dtype=int)[0])
    with pytest.raises(GraphStartFailed, match=r"below 0\.1 of the mean size"):  # one micro-cluster of ~10
        graph_spectral_labels(data, 2, n_micro=60, refine=False)


def fit_centres(data: np.ndarray, n_clusters: int, trainer_kwargs: dict, **init_args) -> np.ndarray:
    """The centres `KMeansInit` sets in a real one-step fit on ``data`` (identity-like 2-d encoder)."""
    dm = ArrayDataModule(data.astype(np.float32), batch_size=50)
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([2, 2]), n_clusters=n_clusters)
    probe = CentresAtStart()
    init = KMeansInit(seed=5, **init_args)
    L.Trainer(max_steps=1, callbacks=[init, probe, TargetDistributionRefresh(5)], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    return probe.centers.numpy(), probe.embedding


@pytest.mark.parametrize(
    ("data", "k", "args", "reason"),
    [
        (islands(4), 2, {"micro_clusters": 20, "n_neighbors": 5}, "unconnected parts"),
        (islands(2, n=5), 2, {"micro_clusters": 200}, "too few for a graph"),  # 10 samples: 2 micro-clusters
        (islands(2, n=30), 2, {"n_neighbors": 60}, "too few for a graph of 60 neighbours"),
    ],
)
def test_kmeans_init_falls_back_to_kmeans_with_one_warning(trainer_kwargs, data, k, args, reason) -> None:
    from sklearn.cluster import KMeans

    with pytest.warns(GraphStartWarning, match=f"graph start: .*{reason}.*; this run starts from k-means") as seen:
        centers, embedding = fit_centres(data, k, trainer_kwargs, init="graph", **args)
    assert sum(isinstance(w.message, GraphStartWarning) for w in seen) == 1
    expected = KMeans(k, n_init=20, random_state=5).fit(embedding).cluster_centers_
    np.testing.assert_allclose(np.sort(centers, axis=0), np.sort(expected, axis=0), atol=1e-4)


class CentresAtStart(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: DEC) -> None:
        self.centers = pl_module.centers.detach().clone()
        pl_module.eval()
        with torch.no_grad():
            self.embedding = pl_module.embed(trainer.datamodule.dataset.x).double().numpy()
        pl_module.train()


def test_kmeans_init_graph_sets_the_graph_groups_means(trainer_kwargs) -> None:
    """Through a real fit: the centres are the means of the graph start's groups on the embedding."""
    data, _ = strips(n_per_strip=100)
    centers, embedding = fit_centres(data, 2, trainer_kwargs, init="graph", micro_clusters=20, n_neighbors=8)
    labels = graph_spectral_labels(embedding, 2, n_micro=20, n_neighbors=8, random_state=5)
    np.testing.assert_allclose(centers, group_means(embedding, labels, 2), rtol=0, atol=1e-5)


def test_kmeans_on_embedding_returns_graph_labels(trainer_kwargs) -> None:
    """`kmeans_on_embedding(init="graph")` hands back the graph labels with the centres."""
    data, _ = strips(n_per_strip=100)
    dm = ArrayDataModule(data.astype(np.float32), batch_size=50)
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([2, 2]), n_clusters=2)
    seen = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["centers"], seen["labels"] = kmeans_on_embedding(
                trainer, pl_module, 1, 5, init="graph", micro_clusters=20, n_neighbors=8
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
