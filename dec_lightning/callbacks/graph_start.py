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
"""

from __future__ import annotations

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


def group_means(data: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean of each group's rows (n_clusters x d): DEC's centres for a labelling."""
    counts = np.bincount(labels, minlength=n_clusters)
    if (counts == 0).any():
        raise ValueError(f"clusters {np.flatnonzero(counts == 0).tolist()} are empty")
    sums = np.zeros((n_clusters, data.shape[1]))
    np.add.at(sums, labels, data)
    return sums / counts[:, None]
