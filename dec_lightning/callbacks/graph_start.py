"""A start for DEC's centres that separates touching clusters k-means merges: spectral clustering
of a k-means-coarsened nearest-neighbour graph of the embedding.

k-means prefers splitting one wide cluster over separating two adjacent ones: on five MNIST
autoencoder embeddings its lowest-inertia partition joined two digits on four (4 and 9 on
three), and none of 30 restarts per embedding reached ACC 0.90 (benchmarks/results/graph_start.md). A graph of nearest neighbours follows the low-density
gap between touching clusters instead. Spectral clustering of the full N-node graph costs an
eigendecomposition of an N x N sparse matrix; as in KASP (Yan, Huang & Jordan, "Fast approximate
spectral clustering", KDD 2009, sec. 3.1), k-means with many centres (``n_micro``) first
summarises the data into small "micro-clusters", and only the micro-cluster graph is
partitioned. KASP weighs two representatives by a Gaussian kernel of their distance; here
the weight is the number of k-nearest-neighbour edges between their members (a coarsened kNN
graph, von Luxburg 2007, "A tutorial on spectral clustering", sec. 2.2), which needs no kernel
width. Each sample takes its micro-cluster's group; DEC's centres are the group means.

The result depends on the over-clustering (how many micro-clusters, which k-means restart):
on one MNIST embedding where 200 micro-clusters joined two digits (ACC 0.841), 300 kept them
apart (0.959) (benchmarks/results/graph_choice.md). `best_graph_start` tries several and keeps the one
with the lowest normalized cut of the sample-level kNN graph, the objective spectral
clustering relaxes (Shi & Malik 2000; von Luxburg 2007, sec. 5): no labels are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.neighbors import NearestNeighbors

MICRO_N_INIT = 3  # restarts of the over-clustering; its exact optimum matters little once coarsened


def graph_spectral_labels(
    data: np.ndarray,
    n_clusters: int,
    n_micro: int = 100,
    n_neighbors: int = 10,
    random_state: int = 0,
    neighbors: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster labels (N,) of ``data`` (N x d) by spectral clustering of its coarsened kNN graph.

    1. k-means into ``n_micro`` micro-clusters; 2. the ``n_neighbors`` nearest neighbours of
    every sample; 3. the affinity of micro-clusters a != b is the number of neighbour edges
    between their members, in either direction; 4. spectral clustering of that
    ``n_micro x n_micro`` affinity into ``n_clusters`` groups (``cluster_qr`` assignment,
    Damle et al. 2019, deterministic); 5. every sample takes its micro-cluster's group.

    ``neighbors``: step 2's result, `nearest_neighbors` (data, n_neighbors), when several calls
    share one embedding (the search is the costly step: ~40 s for MNIST's 70000 on one thread).
    """
    n = len(data)
    if not n_clusters < n_micro <= n:
        raise ValueError(f"need n_clusters < n_micro <= n_samples, got {n_clusters}, {n_micro}, {n}")
    if not 1 <= n_neighbors < n:
        raise ValueError(f"need 1 <= n_neighbors < n_samples, got {n_neighbors} for {n} samples")
    micro = KMeans(n_micro, n_init=MICRO_N_INIT, random_state=random_state).fit_predict(data)
    if neighbors is None:
        neighbors = nearest_neighbors(data, n_neighbors)
    elif neighbors.shape != (n, n_neighbors + 1):
        raise ValueError(
            f"neighbors must be (n_samples, n_neighbors + 1) = {(n, n_neighbors + 1)}, got {neighbors.shape}"
        )
    source = np.repeat(micro, n_neighbors)
    target = micro[neighbors[:, 1:].ravel()]  # column 0 is the sample itself
    affinity = np.zeros((n_micro, n_micro))
    np.add.at(affinity, (source, target), 1.0)
    affinity += affinity.T
    np.fill_diagonal(affinity, 0.0)
    spectral = SpectralClustering(
        n_clusters, affinity="precomputed", assign_labels="cluster_qr", random_state=random_state
    )
    return spectral.fit_predict(affinity)[micro]


def nearest_neighbors(data: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices (N, n_neighbors + 1) of each sample's nearest samples, itself first."""
    return NearestNeighbors(n_neighbors=n_neighbors + 1).fit(data).kneighbors(data, return_distance=False)


def normalized_cut(labels: np.ndarray, neighbors: np.ndarray) -> float:
    """Ncut of a labelling on the symmetrised kNN graph W = A + A^T (A: each sample's edges to the
    neighbours in ``neighbors[:, 1:]``): 1/2 sum over clusters C of cut(C, not C) / vol(C)
    (von Luxburg 2007, sec. 5, "Ncut"); vol(C) is the sum of the degrees in W of C's samples."""
    k = labels.max() + 1
    source = np.repeat(labels, neighbors.shape[1] - 1)
    target = labels[neighbors[:, 1:].ravel()]
    crossing = source != target  # an edge i -> j across adds W_ij to cut(C_i) and W_ji to cut(C_j)
    cut = np.bincount(source[crossing], minlength=k) + np.bincount(target[crossing], minlength=k)
    volume = np.bincount(source, minlength=k) + np.bincount(target, minlength=k)
    return 0.5 * float((cut / np.maximum(volume, 1)).sum())


def best_graph_start(
    data: np.ndarray,
    n_clusters: int,
    micro_clusters: Sequence[int],
    restarts: int = 1,
    n_neighbors: int = 10,
    random_state: int = 0,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The `graph_spectral_labels` labelling with the lowest `normalized_cut`, over every count in
    ``micro_clusters`` times ``restarts`` seeds (random_state, random_state + 1, ...).

    One nearest-neighbour search serves all candidates. Returns the labels and, per candidate,
    its micro-cluster count, seed and Ncut, in the order tried; ties go to the first tried.
    """
    neighbors = nearest_neighbors(data, n_neighbors)
    best, candidates = None, []
    for n_micro in micro_clusters:
        for seed in range(random_state, random_state + restarts):
            labels = graph_spectral_labels(data, n_clusters, n_micro, n_neighbors, seed, neighbors=neighbors)
            candidates.append({"micro_clusters": n_micro, "seed": seed, "ncut": normalized_cut(labels, neighbors)})
            if best is None or candidates[-1]["ncut"] < best[0]:
                best = (candidates[-1]["ncut"], labels)
    return best[1], candidates


def group_means(data: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean of each group's rows (n_clusters x d): DEC's centres for a labelling."""
    counts = np.bincount(labels, minlength=n_clusters)
    if (counts == 0).any():
        raise ValueError(f"clusters {np.flatnonzero(counts == 0).tolist()} are empty")
    sums = np.zeros((n_clusters, data.shape[1]))
    np.add.at(sums, labels, data)
    return sums / counts[:, None]
