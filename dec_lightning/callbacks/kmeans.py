"""k-means on the embedding of the whole training set, computed once and shared by all ranks."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import Tensor

from dec_lightning.callbacks.graph_start import GRAPH_SAMPLES, GraphStartFailed, graph_spectral_labels, group_means
from dec_lightning.modules.assignment import squared_distances
from dec_lightning.modules.dataset_pass import release_free_memory, whole_dataset_pass

SAMPLES_PER_MICRO = 5  # a micro-cluster holds a few samples on average; small data gets fewer of them


def kmeans_on_embedding(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    n_init: int,
    seed: int | None,
    max_samples: int | None = None,
    with_labels: bool = True,
    init: str = "kmeans",
    micro_clusters: int = 100,
    n_neighbors: int = 20,
    graph_samples: int | None = GRAPH_SAMPLES,
) -> tuple[Tensor, Tensor | None]:
    """Return k-means ``(centers, labels)`` of the current embedding, identical on every rank.

    Rank 0 fits scikit-learn's `KMeans` and broadcasts the result, so the ranks cannot
    drift apart through different k-means solutions. ``seed=None`` derives the seed from
    torch's initial seed, which `seed_everything` sets.

    With more than ``max_samples`` samples, k-means is fitted on a uniform random sample of
    that many (drawn with the k-means seed, the same on every rank), and only those samples
    are embedded: the N x embedding_dim float64 copy and scikit-learn's working arrays then
    stay bounded for data larger than memory. A uniform sample of m points gives centres close
    to those of the whole data for m large against K (Czumaj & Sohler 2007, "Sublinear-time
    approximation algorithms for clustering via random sampling", Random Struct. Algorithms
    30:226-256). The labels are then each sample's nearest centre, from a second pass;
    ``with_labels=False`` skips it and returns ``None`` (`KMeansInit` needs only the centres).

    ``init="graph"``: instead of k-means, spectral clustering of the embedding's nearest-neighbour
    graph coarsened into ``micro_clusters`` k-means micro-clusters (`graph_spectral_labels`, with
    its ``n_neighbors``; at most a fifth of the samples; built from ``graph_samples`` rows), the
    centres being its groups' means.
    Where the graph gives no trustworthy start (`GraphStartFailed`) this run falls back to
    k-means, with one warning saying why.
    """
    if init not in ("kmeans", "graph"):
        raise ValueError(f"init must be 'kmeans' or 'graph', got {init!r}")
    random_state = seed if seed is not None else torch.initial_seed() % 2**32
    n = len(trainer.train_dataloader.dataset)
    rows = None
    if max_samples is not None and n > max_samples:
        generator = torch.Generator().manual_seed(int(random_state))
        dtype = torch.int32 if n < 2**31 else torch.int64  # the same permutation as int64, half the memory
        rows = torch.randperm(n, generator=generator, dtype=dtype)[:max_samples].sort().values.long()
    embedding, _ = whole_dataset_pass(trainer, pl_module, pl_module.embed, rows=rows)
    result = None
    if trainer.is_global_zero:
        data = embedding.double().cpu().numpy()
        del embedding  # the float64 copy is what k-means reads
        labels = None
        if init == "graph":
            labels = graph_start_or_none(
                data, pl_module.n_clusters, random_state, micro_clusters, n_neighbors, graph_samples
            )
        if labels is not None:
            centers = group_means(data, labels, pl_module.n_clusters)
        else:
            # copy_x=False: k-means centres our own copy in place instead of copying it again (same result)
            kmeans = KMeans(pl_module.n_clusters, n_init=n_init, random_state=random_state, copy_x=False)
            labels = kmeans.fit_predict(data).astype(np.int32)  # int32: half the memory of N labels
            centers = kmeans.cluster_centers_
        del data
        release_free_memory()
        result = (torch.from_numpy(centers).float(), torch.from_numpy(labels))
    else:
        del embedding
    centers, labels = trainer.strategy.broadcast(result, src=0)
    centers = centers.to(pl_module.device)
    if not with_labels:
        return centers, None
    if rows is not None:
        labels, _ = whole_dataset_pass(trainer, pl_module, lambda x: nearest_center(pl_module.embed(x), centers))
    return centers, labels.long().to(pl_module.device)


def graph_start_or_none(
    data: np.ndarray,
    n_clusters: int,
    random_state: int,
    n_micro: int,
    n_neighbors: int,
    max_graph_samples: int | None,
) -> np.ndarray | None:
    """The graph start's labels, or None (with one warning) where it gives no trustworthy start."""
    rows = len(data) if max_graph_samples is None else min(len(data), max_graph_samples)
    try:
        n_micro = micro_clusters_for(rows, n_micro, n_clusters, n_neighbors)
        return graph_spectral_labels(data, n_clusters, n_micro, n_neighbors, random_state, max_graph_samples=rows)
    except GraphStartFailed as failure:
        rank_zero_warn(f"graph start: {failure}; this run starts from k-means instead", category=GraphStartWarning)
        return None


def micro_clusters_for(rows: int, n_micro: int, n_clusters: int, n_neighbors: int) -> int:
    """Micro-clusters the graph start uses on ``rows`` rows: ``n_micro``, at most one per
    `SAMPLES_PER_MICRO` rows; raises `GraphStartFailed` when that is not more than the clusters or
    the rows are no more than the neighbours."""
    n_micro = min(n_micro, rows // SAMPLES_PER_MICRO)
    if n_micro <= n_clusters or rows <= n_neighbors:
        raise GraphStartFailed(
            f"{rows} samples are too few for a graph of {n_neighbors} neighbours and more micro-clusters "
            f"({n_micro}, {SAMPLES_PER_MICRO} samples each) than the {n_clusters} clusters"
        )
    return n_micro


class GraphStartWarning(UserWarning):
    """The graph start fell back to k-means for this run."""


def nearest_center(z: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest centre of each embedding (squared distances from the differences, in float64)."""
    return squared_distances(z.double(), centers.double()).argmin(dim=1)


def match_clusters(new_labels: Tensor, old_labels: Tensor, n_clusters: int) -> Tensor:
    """Permutation ``perm`` with ``perm[new_id] = old_id`` that maximises label agreement.

    k-means numbers its clusters arbitrarily; matching keeps cluster ids (and the columns
    of P) stable across re-initialisations.
    """
    counts = torch.zeros(n_clusters, n_clusters, dtype=torch.long)
    new, old = new_labels.cpu().long(), old_labels.cpu().long()  # labels may be int32
    counts.index_put_((new, old), torch.ones_like(new), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    perm = torch.empty(n_clusters, dtype=torch.long)
    perm[torch.from_numpy(rows)] = torch.from_numpy(cols)
    return perm
