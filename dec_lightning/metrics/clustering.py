"""Clustering quality against ground truth: ACC (Hungarian matching), NMI, ARI."""

from __future__ import annotations

import warnings

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics.functional.clustering import adjusted_rand_score, normalized_mutual_info_score


def cluster_accuracy(preds: Tensor, target: Tensor) -> float:
    """Best accuracy over one-to-one maps from clusters to classes (DEC eq. 10).

    Hungarian matching on the contingency table; scipy's solver is used because
    torchmetrics' `ClusterAccuracy` needs an extra compiled package.
    """
    preds, target = preds.long().cpu(), target.long().cpu()
    size = int(max(preds.max(), target.max())) + 1
    counts = torch.zeros(size, size, dtype=torch.long)
    counts.index_put_((preds, target), torch.ones_like(preds), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    return float(counts.numpy()[rows, cols].sum() / len(preds))


def clustering_scores(preds: Tensor, target: Tensor) -> dict[str, float]:
    """ACC, NMI and ARI over the samples whose label is known (``target >= 0``)."""
    known = target >= 0
    preds, target = preds[known].long().cpu(), target[known].long().cpu()
    if len(target) == 0:
        return {}
    with warnings.catch_warnings():
        # torchmetrics builds its contingency table as a sparse tensor; the invariant-check notice is noise
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        return {
            "acc": cluster_accuracy(preds, target),
            "nmi": float(normalized_mutual_info_score(preds, target, "arithmetic")),
            "ari": float(adjusted_rand_score(preds, target)),
        }


def label_change_fraction(new: Tensor, old: Tensor) -> float:
    """Fraction of samples whose hard cluster label differs: DEC's stopping statistic."""
    return float((new != old).float().mean()) if len(new) else 0.0
