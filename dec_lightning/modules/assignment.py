"""The three equations of DEC (Xie et al., 2016) as pure tensor functions."""

from __future__ import annotations

import torch
from torch import Tensor

# Guards log(0) and 0/0; far below any probability that matters in float32.
_EPS = 1e-12
# Rows per chunk of the in-place target distribution: its temporaries stay a few MB at any N.
_ROW_CHUNK = 1 << 16


def squared_distances(z: Tensor, centers: Tensor) -> Tensor:
    """``d_ij = ||z_i - mu_j||^2``, summed from the differences (see `soft_assignment`: no cdist cancellation)."""
    return (z[:, None, :] - centers[None, :, :]).pow(2).sum(dim=-1)


def soft_assignment(z: Tensor, centers: Tensor, alpha: float = 1.0) -> Tensor:
    """Student's t similarity between embeddings and centres, normalised per row (DEC eq. 1).

    q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2) / sum_j' (...)

    Computed in log space and normalised with a softmax, so rows stay finite and sum to 1
    even when every distance is huge (inputs scaled x1000) or a centre is far from all points.

    Squared distances are summed from the differences, not taken from `torch.cdist`: for
    more than 25 rows cdist expands ||z||^2 + ||mu||^2 - 2 z.mu, which cancels catastrophically
    when embeddings are far from the origin but close to the centres (error ~0.4 at norm 1000
    in float32). The price is an N x K x D intermediate: 8 MB for N=2048 (the whole-dataset
    pass batch), K=100, D=10, so callers should keep passing batches rather than all rows.
    """
    sq_dist = squared_distances(z, centers)
    log_kernel = -(alpha + 1.0) / 2.0 * torch.log1p(sq_dist / alpha)
    return torch.softmax(log_kernel, dim=1)


def target_distribution(q: Tensor, inplace: bool = False) -> Tensor:
    """Sharpened target p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'), f_j = sum_i q_ij (DEC eq. 3).

    `q` must hold the soft assignments of the *whole* dataset: f_j is a dataset-wide
    cluster frequency, which is what keeps large clusters from absorbing the rest.

    ``inplace=True`` overwrites ``q`` with P (same values, bit for bit; rows normalised in
    chunks of `_ROW_CHUNK`): no second N x K array and no temporaries of size N, which is what
    bounds the memory of a refresh on data larger than memory.
    """
    frequency = q.sum(dim=0).clamp_min(_EPS)
    if inplace:
        for start in range(0, len(q), _ROW_CHUNK):
            weight = q[start : start + _ROW_CHUNK].pow_(2).div_(frequency)
            weight.div_(weight.sum(dim=1, keepdim=True).clamp_min_(_EPS))
        return q
    weight = q.pow(2) / frequency
    return weight / weight.sum(dim=1, keepdim=True).clamp_min(_EPS)


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """KL(P || Q) = sum_i sum_j p_ij log(p_ij / q_ij) (DEC eq. 2), averaged over the rows given.

    The mean over the batch (rather than the sum) keeps the gradient scale independent of
    the batch size, as in the reference implementations (Keras' `kld` loss).
    """
    return kl_per_sample(p, q).mean()


def kl_per_sample(p: Tensor, q: Tensor) -> Tensor:
    """``sum_j p_ij log(p_ij / q_ij)`` for each row i (the terms of DEC eq. 2)."""
    return (p * (torch.log(p.clamp_min(_EPS)) - torch.log(q.clamp_min(_EPS)))).sum(dim=1)
