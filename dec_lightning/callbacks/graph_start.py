"""A start for DEC's centres that separates touching clusters k-means merges: spectral clustering
of a k-means-coarsened nearest-neighbour graph of the embedding.

k-means prefers splitting one wide cluster over separating two adjacent ones. A graph of nearest
neighbours follows the low-density gap between touching clusters instead. Spectral clustering of
the full N-node graph costs an eigendecomposition of an N x N sparse matrix; as in KASP (Yan,
Huang & Jordan, "Fast approximate spectral clustering", KDD 2009, sec. 3.1), k-means with many
centres first summarises the data into small "micro-clusters", and only the micro-cluster graph
is partitioned. KASP weighs two representatives by a Gaussian kernel of their distance; here the
weight is the number of k-nearest-neighbour edges between their members (a coarsened kNN graph,
von Luxburg 2007, "A tutorial on spectral clustering", sec. 2.2), which needs no kernel width.
Each sample takes its micro-cluster's group; DEC's centres are the group means.

A K-way graph cut can still prefer splitting one bimodal class (a digit written two ways) over
separating two touching ones (4 and 9), which leaves one group about twice a class's size.
`split_and_merge` tests that without a size threshold: it cuts the largest group in two and
merges the pair the graph least wants apart (the highest pairwise normalized cut, Shi & Malik
2000, eq. 2) among pairs no larger than the group it cut; the partition changes only when some
other pair is more bound together than the two halves.

Cost stays bounded for any N: the micro-clusters and the neighbour graph are built from a uniform
sample of at most ``max_graph_samples`` rows (every sample then takes its nearest micro-centre),
and scikit-learn's KD-tree answers the exact neighbour queries in blocks (`knn_affinity`).

A start that cannot be trusted (a graph in more unconnected parts than clusters, a group joining
unconnected parts, an empty or tiny group) raises
`GraphStartFailed`; `kmeans_on_embedding` then falls back to k-means with one warning.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.neighbors import NearestNeighbors

MICRO_N_INIT = 3  # restarts of the over-clustering; its exact optimum matters little once coarsened
# rows the graph is built from; the rest only take their nearest micro-centre. Above MNIST's 70 000
# (so no measured run is sampled), and 1M rows then take about a minute on one thread
GRAPH_SAMPLES = 100_000
# a group below this share of the mean size is no cluster but debris: fall back (DEC's own
# near-empty threshold, `DEC.near_empty_fraction`; Reuters-4's smallest class holds 0.2)
MIN_GROUP_SHARE = 0.1
CHUNK = 8_192  # rows per block of the neighbour search and the micro-centre assignment (a few MB)


class GraphStartFailed(RuntimeError):
    """The graph gives no trustworthy start for this embedding; the caller falls back to k-means."""


def graph_spectral_labels(
    data: np.ndarray,
    n_clusters: int,
    n_micro: int = 100,
    n_neighbors: int = 20,
    random_state: int = 0,
    neighbors: np.ndarray | None = None,
    refine: bool = True,
    max_graph_samples: int = GRAPH_SAMPLES,
) -> np.ndarray:
    """Cluster labels (N,) int32 of ``data`` (N x d) by spectral clustering of its coarsened kNN graph.

    1. k-means into ``n_micro`` micro-clusters (fitted on at most ``max_graph_samples`` rows drawn
    with ``random_state``; every row then takes its nearest micro-centre); 2. the ``n_neighbors``
    nearest neighbours of each of those rows; 3. the weight of micro-clusters a, b is the number
    of neighbour edges between their members, either direction (a = b: the edges inside a);
    4. spectral clustering of that ``n_micro x n_micro`` graph into ``n_clusters`` groups
    (``cluster_qr`` assignment, Damle et al. 2019, deterministic); 5. with ``refine``,
    `split_and_merge`; 6. every sample takes its micro-cluster's group.

    ``neighbors``: step 2's result, `nearest_neighbors` of the graph rows, when several calls share
    one embedding. Raises `GraphStartFailed` for a graph in more unconnected parts than clusters (no
    K-way cut can follow them), a group that joins unconnected parts, an empty group, or a group
    below `MIN_GROUP_SHARE` of the mean size. Fewer parts than clusters are fine when each group
    stays inside one part.
    """
    n = len(data)
    if not n_clusters < n_micro <= min(n, max_graph_samples):
        raise ValueError(
            f"need n_clusters < n_micro <= min(n_samples, max_graph_samples), got {n_clusters}, {n_micro}, "
            f"{n}, {max_graph_samples}"
        )
    if not 1 <= n_neighbors < min(n, max_graph_samples):
        raise ValueError(f"need 1 <= n_neighbors < n_samples, got {n_neighbors} for {n} samples")
    rows = None
    if n > max_graph_samples:
        rows = np.sort(np.random.default_rng(random_state).choice(n, max_graph_samples, replace=False))
    graph_rows = data if rows is None else data[rows]
    kmeans = KMeans(n_micro, n_init=MICRO_N_INIT, random_state=random_state).fit(graph_rows)
    graph_micro = kmeans.labels_.astype(np.int32)
    micro = graph_micro if rows is None else nearest_centers(data, kmeans.cluster_centers_)
    if neighbors is None:
        affinity = knn_affinity(graph_rows, graph_micro, n_micro, n_neighbors)
    elif neighbors.shape != (len(graph_rows), n_neighbors + 1):
        raise ValueError(
            f"neighbors must be (graph rows, n_neighbors + 1) = {(len(graph_rows), n_neighbors + 1)}, "
            f"got {neighbors.shape}"
        )
    else:
        affinity = coarse_affinity(graph_micro, neighbors, n_micro)
    n_parts, part = connected_components(affinity > 0, directed=False)
    if n_parts > n_clusters:
        raise GraphStartFailed(
            f"the {n_neighbors}-nearest-neighbour graph falls into {n_parts} unconnected parts, more than the "
            f"{n_clusters} clusters; raise n_neighbors to connect it"
        )
    groups = spectral_groups(affinity, n_clusters, random_state)
    sizes = np.bincount(micro, minlength=n_micro)
    if refine:
        groups = split_and_merge(affinity, groups, sizes, n_clusters, random_state)
    spanning = [g for g in range(n_clusters) if len(np.unique(part[groups == g])) > 1]
    if spanning:
        raise GraphStartFailed(f"groups {spanning} join unconnected parts of the graph")
    check_group_sizes(np.bincount(groups, weights=sizes, minlength=n_clusters), n)
    return groups.astype(np.int32)[micro]


def coarse_affinity(micro: np.ndarray, neighbors: np.ndarray, n_micro: int) -> np.ndarray:
    """Neighbour edges between (off the diagonal) and within (on it) micro-clusters, symmetric.

    ``neighbors``: each row's nearest rows, itself first. The diagonal keeps each group's volume
    (summed degrees) that of the sample graph, so a cut of micro-clusters has the sample graph's
    normalized cut."""
    counts = edge_counts(micro, neighbors, micro, n_micro)
    return counts + counts.T


def knn_affinity(rows: np.ndarray, micro: np.ndarray, n_micro: int, n_neighbors: int) -> np.ndarray:
    """`coarse_affinity` of the ``n_neighbors``-nearest-neighbour graph of ``rows``, searched in blocks
    of `CHUNK` rows so that no N x k array of neighbours is ever held.

    scikit-learn's KD-tree: exact, and for a low-dimensional embedding (DEC's is 10-d) fast enough
    at `GRAPH_SAMPLES` rows on one thread that no approximate index (and no new dependency) pays."""
    search = NearestNeighbors(n_neighbors=n_neighbors + 1, algorithm="kd_tree").fit(rows)
    counts = np.zeros((n_micro, n_micro))
    for start in range(0, len(rows), CHUNK):
        block = search.kneighbors(rows[start : start + CHUNK], return_distance=False)
        counts += edge_counts(micro[start : start + CHUNK], block, micro, n_micro)
    return counts + counts.T


def edge_counts(source: np.ndarray, neighbors: np.ndarray, micro: np.ndarray, n_micro: int) -> np.ndarray:
    """Directed neighbour edges from the micro-cluster of each row (``source``) to those of its
    neighbours (``neighbors``, column 0 the row itself), counted per pair of micro-clusters."""
    k = neighbors.shape[1] - 1
    target = micro[neighbors[:, 1:]].astype(np.int64)
    pairs = np.repeat(source.astype(np.int64) * n_micro, k) + target.ravel()
    return np.bincount(pairs, minlength=n_micro * n_micro).reshape(n_micro, n_micro).astype(float)


def check_group_sizes(group_sizes: np.ndarray, n: int) -> None:
    """Raise `GraphStartFailed` for an empty group or one below `MIN_GROUP_SHARE` of the mean size."""
    floor = MIN_GROUP_SHARE * n / len(group_sizes)
    small = np.flatnonzero(group_sizes < floor)
    if len(small):
        raise GraphStartFailed(
            f"groups {small.tolist()} hold {group_sizes[small].astype(int).tolist()} samples, below "
            f"{MIN_GROUP_SHARE:g} of the mean size ({n / len(group_sizes):.0f})"
        )


def spectral_groups(affinity: np.ndarray, n_groups: int, random_state: int = 0) -> np.ndarray:
    """Spectral clustering of a precomputed affinity (``cluster_qr`` assignment, Damle et al. 2019,
    deterministic); the diagonal is ignored, as by the normalized Laplacian."""
    spectral = SpectralClustering(
        n_groups, affinity="precomputed", assign_labels="cluster_qr", random_state=random_state
    )
    with warnings.catch_warnings():
        # unconnected parts are counted (and at most n_groups) before we get here; the spectral
        # embedding then separates them, so scikit-learn's generic warning says nothing new
        warnings.filterwarnings("ignore", "Graph is not fully connected", UserWarning)
        return spectral.fit_predict(affinity - np.diag(np.diag(affinity)))


def pair_ncut(affinity: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Ncut(A, B) = cut(A, B) / vol(A) + cut(A, B) / vol(B) for every pair of groups (Shi & Malik
    2000, eq. 2; vol: summed degrees, inner edges included); the diagonal is -inf."""
    members = np.eye(groups.max() + 1)[groups]  # node x group indicator
    between = members.T @ affinity @ members
    volume = np.maximum(between.sum(axis=1), np.finfo(float).tiny)
    ncut = between / volume[:, None] + between / volume[None, :]
    np.fill_diagonal(ncut, -np.inf)
    return ncut


def split_and_merge(
    affinity: np.ndarray, groups: np.ndarray, sizes: np.ndarray, n_clusters: int, random_state: int = 0
) -> np.ndarray:
    """Undo a K-way cut that split one class and joined two (``sizes``: samples per node).

    Each round cuts the largest group in two (spectral clustering of its own nodes), then merges
    the pair of groups with the highest `pair_ncut` among pairs holding no more samples than the
    cut group. If that pair is the two halves, the partition stands and the rounds end; otherwise
    the new one is kept and the next largest group is tried. The largest group never grows, so no
    size threshold is needed; at most ``n_clusters`` rounds.
    """
    groups = groups.copy()
    for _ in range(n_clusters):
        group_sizes = np.bincount(groups, weights=sizes, minlength=n_clusters)
        largest = int(group_sizes.argmax())
        nodes = np.flatnonzero(groups == largest)
        if len(nodes) < 3:
            break  # too few micro-clusters to cut
        halves = spectral_groups(affinity[np.ix_(nodes, nodes)], 2, random_state)
        trial = groups.copy()
        trial[nodes[halves == 1]] = n_clusters  # the second half takes the spare id K
        ncut = pair_ncut(affinity, trial)
        trial_sizes = np.bincount(trial, weights=sizes, minlength=n_clusters + 1)
        fits = trial_sizes[:, None] + trial_sizes[None, :] <= group_sizes[largest]
        i, j = sorted(np.unravel_index(np.argmax(np.where(fits, ncut, -np.inf)), ncut.shape))
        if (i, j) == (largest, n_clusters):
            break
        trial[trial == j] = i
        groups = np.unique(trial, return_inverse=True)[1]
    return groups


def nearest_neighbors(data: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices (N, n_neighbors + 1) int32 of each row's nearest rows, itself first (for callers that
    share one search among several starts; the start itself searches in blocks, `knn_affinity`)."""
    search = NearestNeighbors(n_neighbors=n_neighbors + 1, algorithm="kd_tree").fit(data)
    return search.kneighbors(data, return_distance=False).astype(np.int32)


def nearest_centers(data: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index (N,) int32 of each row's nearest centre, in blocks of `CHUNK` rows (bounded memory)."""
    labels = np.empty(len(data), dtype=np.int32)
    center_norms = (centers**2).sum(axis=1)
    for start in range(0, len(data), CHUNK):
        block = data[start : start + CHUNK]
        labels[start : start + CHUNK] = (center_norms - 2 * block @ centers.T).argmin(axis=1)
    return labels


def group_means(data: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean of each group's rows (n_clusters x d): DEC's centres for a labelling."""
    counts = np.bincount(labels, minlength=n_clusters)
    if (counts == 0).any():
        raise ValueError(f"clusters {np.flatnonzero(counts == 0).tolist()} are empty")
    sums = np.stack([np.bincount(labels, weights=column, minlength=n_clusters) for column in data.T], axis=1)
    return sums / counts[:, None]
