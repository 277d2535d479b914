"""k-means on the embedding of the whole training set, computed once and shared by all ranks."""

from __future__ import annotations

import lightning as L
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import Tensor

from dec_lightning.modules.dataset_pass import whole_dataset_pass


def kmeans_on_embedding(
    trainer: L.Trainer, pl_module: L.LightningModule, n_init: int, seed: int | None
) -> tuple[Tensor, Tensor]:
    """Return k-means ``(centers, labels)`` of the current embedding, identical on every rank.

    Rank 0 fits scikit-learn's `KMeans` and broadcasts the result, so the ranks cannot
    drift apart through different k-means solutions. ``seed=None`` derives the seed from
    torch's initial seed, which `seed_everything` sets.
    """
    embedding, _ = whole_dataset_pass(trainer, pl_module, pl_module.embed)
    result = None
    if trainer.is_global_zero:
        random_state = seed if seed is not None else torch.initial_seed() % 2**32
        kmeans = KMeans(pl_module.n_clusters, n_init=n_init, random_state=random_state)
        labels = kmeans.fit_predict(embedding.double().cpu().numpy())
        result = (torch.from_numpy(kmeans.cluster_centers_).float(), torch.from_numpy(labels).long())
    centers, labels = trainer.strategy.broadcast(result, src=0)
    return centers.to(pl_module.device), labels.to(pl_module.device)


def match_clusters(new_labels: Tensor, old_labels: Tensor, n_clusters: int) -> Tensor:
    """Permutation ``perm`` with ``perm[new_id] = old_id`` that maximises label agreement.

    k-means numbers its clusters arbitrarily; matching keeps cluster ids (and the columns
    of P) stable across re-initialisations.
    """
    counts = torch.zeros(n_clusters, n_clusters, dtype=torch.long)
    counts.index_put_((new_labels.cpu(), old_labels.cpu()), torch.ones_like(new_labels.cpu()), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    perm = torch.empty(n_clusters, dtype=torch.long)
    perm[torch.from_numpy(rows)] = torch.from_numpy(cols)
    return perm
