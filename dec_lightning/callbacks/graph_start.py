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

A graph cut can still prefer splitting one bimodal class (a digit written two ways) over
separating two touching ones (4 and 9): on three of ten MNIST embeddings and all five USPS ones
the 10 groups held a digit split in two small groups and 4 and 9 in one group about twice the
mean size. With ``size_cap``, a group above ``size_cap`` times the mean size is cut in two by
the graph and the pair of groups the graph least wants apart is merged, within the cap
(`split_oversized`): the halves of the split class rejoin and the touching classes stay apart
(benchmarks/results/graph_size_cap_cpu.md). The cap is a prior that classes are of similar
size, and it must sit clear of the largest class's size; leave it off for unbalanced data.
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
    size_cap: float | None = None,
) -> np.ndarray:
    """Cluster labels (N,) of ``data`` (N x d) by spectral clustering of its coarsened kNN graph.

    1. k-means into ``n_micro`` micro-clusters; 2. the ``n_neighbors`` nearest neighbours of
    every sample; 3. the affinity of micro-clusters a != b is the number of neighbour edges
    between their members, in either direction; 4. spectral clustering of that
    ``n_micro x n_micro`` affinity into ``n_clusters`` groups (``cluster_qr`` assignment,
    Damle et al. 2019, deterministic); 5. every sample takes its micro-cluster's group.

    ``neighbors``: step 2's result, `nearest_neighbors` (data, n_neighbors), when several calls
    share one embedding (the search is the costly step: ~40 s for MNIST's 70000 on one thread).

    ``size_cap``: then `split_oversized` splits groups above ``size_cap * n / n_clusters``
    samples (None: no cap).
    """
    n = len(data)
    if size_cap is not None and size_cap < 1:
        raise ValueError(f"size_cap must be >= 1 (the mean group size) or None, got {size_cap}")
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
    groups = spectral_groups(affinity, n_clusters, random_state)
    if size_cap is not None:
        sizes = np.bincount(micro, minlength=n_micro)
        groups = split_oversized(affinity, groups, sizes, n_clusters, size_cap * n / n_clusters, random_state)
    return groups[micro]


def spectral_groups(affinity: np.ndarray, n_groups: int, random_state: int = 0) -> np.ndarray:
    """Spectral clustering of a precomputed affinity (``cluster_qr`` assignment, Damle et al. 2019, deterministic)."""
    spectral = SpectralClustering(
        n_groups, affinity="precomputed", assign_labels="cluster_qr", random_state=random_state
    )
    return spectral.fit_predict(affinity)


def split_oversized(
    affinity: np.ndarray,
    groups: np.ndarray,
    sizes: np.ndarray,
    n_clusters: int,
    max_size: float,
    random_state: int = 0,
) -> np.ndarray:
    """While the largest group holds more than ``max_size`` samples (``sizes``: per node), cut it in
    two by spectral clustering of its own nodes' graph, then `merge_groups` back to ``n_clusters``
    within the cap. At most ``n_clusters`` rounds; stops early when a group is too small to cut."""
    groups = groups.copy()
    for _ in range(n_clusters):
        group_sizes = np.bincount(groups, weights=sizes)
        largest = int(group_sizes.argmax())
        nodes = np.flatnonzero(groups == largest)
        if group_sizes[largest] <= max_size or len(nodes) < 3:
            break
        halves = spectral_groups(affinity[np.ix_(nodes, nodes)], 2, random_state)
        groups[nodes[halves == 1]] = groups.max() + 1
        groups = merge_groups(affinity, groups, sizes, n_clusters, max_size)
    return groups


def merge_groups(
    affinity: np.ndarray, groups: np.ndarray, sizes: np.ndarray, n_clusters: int, max_size: float = np.inf
) -> np.ndarray:
    """Join the groups of a graph's nodes until ``n_clusters`` remain; returns labels 0..n_clusters-1.

    Each step merges the pair the graph least wants apart: the highest normalized cut between
    the two, Ncut(A, B) = cut(A, B) / vol(A) + cut(A, B) / vol(B) (Shi & Malik 2000, eq. 2;
    vol: the summed degrees), among pairs holding at most ``max_size`` in total (``sizes``:
    samples per node). Not the k-way Ncut of the result: that also drops when a group with a
    large cut joins any unconnected group, which hides its cut in a bigger volume. When no pair
    fits the cap, the best pair is merged anyway: the cap steers, it never leaves too many groups.
    """
    _, groups = np.unique(groups, return_inverse=True)
    while groups.max() + 1 > n_clusters:
        members = np.eye(groups.max() + 1)[groups]  # node x group indicator
        between = members.T @ affinity @ members  # W(A_i, A_j); the diagonal holds the inner weight
        volume = np.maximum(between.sum(axis=1), np.finfo(float).tiny)
        pair_ncut = between / volume[:, None] + between / volume[None, :]
        np.fill_diagonal(pair_ncut, -np.inf)
        size = members.T @ sizes
        fits = size[:, None] + size[None, :] <= max_size
        np.fill_diagonal(fits, False)  # a group is no pair with itself
        i, j = np.unravel_index(
            np.argmax(np.where(fits, pair_ncut, -np.inf) if fits.any() else pair_ncut), pair_ncut.shape
        )
        groups = np.unique(np.where(groups == max(i, j), min(i, j), groups), return_inverse=True)[1]
    return groups


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
