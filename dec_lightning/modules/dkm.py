"""Deep k-Means (DKM): encoder + k-means centres trained on a softmax-relaxed k-means loss.

Moradi Fard, Thonet & Gaussier, "Deep k-Means: Jointly clustering with k-Means and learning
representations", arXiv 1806.10069 (Pattern Recognition Letters, 2020). Reference code:
github.com/MaziarMF/deep-k-means (``compgraph.py`` class ``DkmCompGraph``, ``dkm.py``; line
numbers below are those of its latest commit, 3872869).

`DKM` subclasses `DEC`: the encoder, the ``centers`` parameter, `KMeansInit`, the whole-dataset
passes, ``labels``/``delta_label``/``refresh_count``, `ToleranceStopping`, checkpoints and the final
scoring in ``on_train_end`` are shared. Only the loss, the soft assignment and the label refresh
differ: DKM has no target distribution P.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim import Adam, Optimizer

from dec_lightning.data.validation import ConfigError
from dec_lightning.metrics.clustering import clustering_scores, label_change_fraction
from dec_lightning.modules.assignment import squared_distances
from dec_lightning.modules.dataset_pass import whole_dataset_pass
from dec_lightning.modules.dec import DEC
from dec_lightning.modules.reduction import sample_weights

DKM_ALPHA = 1000.0  # dkm.py L72-76: the constant alpha of the variant with a pretrained autoencoder
DKM_ALPHA_START = 0.1  # dkm.py L68: first alpha of the annealing scheme
DKM_N_ALPHAS = 40  # dkm.py L66: number of alpha values of the annealing scheme
DKM_EPOCHS_PER_ALPHA = 5  # dkm.py L32: --f_epochs, "fine-tuning epochs per alpha value"


def dkm_adam(params: Iterable) -> Optimizer:
    """Adam with TensorFlow's defaults (lr 1e-3): DKM's optimizer (compgraph.py L89, ``tf.train.AdamOptimizer()``)."""
    return Adam(params, lr=1e-3)


def dkm_alpha_schedule(n_alphas: int = DKM_N_ALPHAS, alpha_start: float = DKM_ALPHA_START) -> list[float]:
    """DKM's annealed inverse temperatures: ``a[0] = alpha_start``, ``a[i] = 2^(1 / ln(i + 1)^2) * a[i - 1]``.

    As dkm.py L64-71 (``alphas[i] = (2 ** (1 / (np.log(i + 1)) ** 2)) * alphas[i - 1]`` for
    ``i = 1 .. max_n - 1``, ``max_n = 40``), i.e. alpha_n = 2^(1/ln(n)^2) alpha_(n-1) with
    alpha_1 = 0.1 in 1-based form. The factor falls towards 1 as n grows: alpha rises fast at
    first, then slowly (alpha_2 = 0.423, alpha_40 = 28.1).
    """
    if n_alphas < 1:
        raise ValueError(f"n_alphas must be >= 1, got {n_alphas}")
    alphas = [float(alpha_start)]
    for i in range(1, n_alphas):
        alphas.append(2 ** (1 / math.log(i + 1) ** 2) * alphas[-1])
    return alphas


def kmeans_soft_assignment(sq_dist: Tensor, alpha: float) -> Tensor:
    """``G_ik = softmax_k(-alpha * d_ik)``: DKM's differentiable stand-in for the nearest-centre indicator.

    The row minimum is subtracted before exponentiating, as the reference does (compgraph.py
    L61-71: ``exp(-alpha * (stack_dist[i] - min_dist))``), so the nearest centre's term is
    exp(0) = 1 and the normaliser is never 0, even for alpha = 1000 and distances ~1e4 (where
    exp(-alpha * d) underflows to 0/0 = NaN). The minimum is detached: a softmax is invariant
    to a per-row shift, so this changes no gradient, and skips back-propagating through ``min``.
    """
    shifted = sq_dist - sq_dist.min(dim=1, keepdim=True).values.detach()
    return torch.softmax(-alpha * shifted, dim=1)


def dkm_clustering_loss(z: Tensor, centers: Tensor, alpha: float) -> Tensor:
    """``mean_i sum_k d_ik * G_ik``: DKM's k-means term with the paper's softmax relaxation G (compgraph.py L78, L85).

    Gradients flow through both the distances and the softmax weights, as in the reference
    (``tf.reduce_mean(tf.reduce_sum(stack_weighted_dist, axis=0))``, no stop-gradient): the mean
    over the batch is the reference's reduction.
    """
    return dkm_clustering_per_sample(z, centers, alpha).mean()


def dkm_clustering_per_sample(z: Tensor, centers: Tensor, alpha: float) -> Tensor:
    """``sum_k d_ik * G_ik`` for each sample i: the terms `dkm_clustering_loss` averages."""
    sq_dist = squared_distances(z, centers)
    return (sq_dist * kmeans_soft_assignment(sq_dist, alpha)).sum(dim=1)


def dkm_reconstruction_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """``mean_i ||x_i - x̂_i||^2``: squared error summed over features, averaged over the batch.

    The reference's reduction (compgraph.py L29-30 ``g_func`` sums over features; L84
    ``tf.reduce_mean(rec_error)`` averages over the batch), not `F.mse_loss`'s mean over
    features: it sets the scale that DKM's lambda (default 1) balances.
    """
    return dkm_reconstruction_per_sample(x_hat, x).mean()


def dkm_reconstruction_per_sample(x_hat: Tensor, x: Tensor) -> Tensor:
    """``||x_i - x̂_i||^2`` for each sample i: the terms `dkm_reconstruction_loss` averages."""
    return (x_hat - x).pow(2).flatten(1).sum(dim=1)


class DKM(DEC):
    """Deep k-Means: ``L = ||x - g(f(x))||^2 + lambda * sum_k ||f(x) - r_k||^2 * softmax_k(-alpha ||f(x) - r_k||^2)``.

    Per batch, the reconstruction term and the k-means term are each averaged over the samples
    (compgraph.py L84-86: ``loss = ae_loss + val_lambda * kmeans_loss``). Hard assignments are the
    nearest centres (dkm.py L232-237, ``argmin`` of the distances), which is also the argmax of
    `forward`'s soft assignments. The centres are trained by the optimizer with the encoder
    (DKM), or held fixed within each epoch and replaced by k-means at its end with
    ``CentroidReinit(mode="roy")`` (Roy, 2024).

    Labels: at the start of every epoch the module assigns the whole dataset (one extra pass),
    which updates ``labels``, ``delta_label`` and ``refresh_count`` exactly like a refresh of P
    does in `DEC`; `ToleranceStopping` therefore works unchanged, judging once per epoch.
    `TargetDistributionRefresh` is not needed; if present it only adds label refreshes (its
    "P" is DKM's soft assignment G, stored in ``target`` and used by nothing).

    Alpha: constant (``alpha``, default 1000: the reference's variant that starts from a pretrained
    autoencoder and k-means centres, dkm.py L72-76, which is what `KMeansInit` gives), or, with
    ``annealing=True``, `dkm_alpha_schedule` with ``epochs_per_alpha`` epochs per value (dkm.py
    L32, L200-207: 5 epochs for each of 40 values, 200 epochs in all); after the last value alpha
    stays at it. The reference pairs annealing with no pretraining and random centres in [-1, 1].

    Args:
        encoder: any module mapping x -> z with an ``embedding_dim`` attribute.
        n_clusters: number of clusters K.
        alpha: the constant inverse temperature (used when ``annealing`` is False).
        annealing: use the reference's annealed alpha schedule instead of the constant.
        alpha_start: first alpha of the schedule (reference: 0.1).
        n_alphas: number of alpha values of the schedule (reference: 40).
        epochs_per_alpha: training epochs per alpha value (reference: 5).
        pretrained: pretraining checkpoint (encoder and, for the reconstruction term, decoder).
        optimizer: builds the optimizer from the parameters (default: Adam lr 1e-3, as the reference).
        decoder: maps z -> x̂; default: the mirror of an `MLPEncoder`.
        reconstruction_weight: weight of the reconstruction term (paper: 1; 0 drops the decoder).
        clustering_weight: DKM's lambda on the k-means term (dkm.py L29 default 1.0; the paper
            tunes it per dataset).
        near_empty_fraction: as in `DEC`.
        augment: transform of the training batches' features, as in `DEC`.
    """

    clustering_term = "kmeans"  # DKM's k-means term, weighted by clustering_weight (lambda)

    def __init__(
        self,
        encoder: nn.Module,
        n_clusters: int = 10,
        alpha: float = DKM_ALPHA,
        annealing: bool = False,
        alpha_start: float = DKM_ALPHA_START,
        n_alphas: int = DKM_N_ALPHAS,
        epochs_per_alpha: int = DKM_EPOCHS_PER_ALPHA,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = dkm_adam,
        decoder: nn.Module | None = None,
        reconstruction_weight: float = 1.0,
        clustering_weight: float = 1.0,
        near_empty_fraction: float = 0.1,
        augment: nn.Module | None = None,
    ) -> None:
        if alpha <= 0 or alpha_start <= 0:
            raise ConfigError(f"model.alpha and model.alpha_start must be > 0, got {alpha} and {alpha_start}")
        if n_alphas < 1 or epochs_per_alpha < 1:
            raise ConfigError(
                f"model.n_alphas and model.epochs_per_alpha must be >= 1, got {n_alphas}, {epochs_per_alpha}"
            )
        # DEC stores every argument of both constructors as hyperparameters (DKM's win on a clash:
        # `alpha` is DKM's inverse temperature here, not the Student's t degrees of freedom)
        super().__init__(
            encoder,
            n_clusters=n_clusters,
            alpha=alpha,
            pretrained=pretrained,
            optimizer=optimizer,
            near_empty_fraction=near_empty_fraction,
            decoder=decoder,
            reconstruction_weight=reconstruction_weight,
            clustering_weight=clustering_weight,
            augment=augment,
        )
        self.alphas = dkm_alpha_schedule(n_alphas, alpha_start) if annealing else [float(alpha)]
        self.current_alpha = self.alpha_at_epoch(0)

    def alpha_at_epoch(self, epoch: int) -> float:
        """Alpha used in ``epoch``: the constant, or schedule value ``epoch // epochs_per_alpha`` (capped at the last)."""
        if not self.hparams.annealing:
            return self.alphas[0]
        return self.alphas[min(epoch // self.hparams.epochs_per_alpha, len(self.alphas) - 1)]

    def forward(self, x: Tensor) -> Tensor:
        """Soft assignments G (softmax of -alpha * squared distances) of a batch, at the current alpha."""
        return kmeans_soft_assignment(squared_distances(self.encoder(x), self.centers), self.current_alpha)

    def update_target(self, q: Tensor) -> None:
        """Record the hard assignments (nearest centres) of the whole dataset and their change.

        DKM has no target distribution: ``target`` keeps G only so that a stale-P check
        (`TargetDistributionRefresh`) sees a fresh value instead of refreshing at every step.
        """
        labels = q.argmax(dim=1).int()  # int32, as DEC's
        if self.labels is not None:
            self.delta_label = label_change_fraction(labels, self.labels.to(labels.device))
        self.target = q
        self.labels = labels
        self.refresh_count += 1
        self._check_cluster_sizes(labels)

    def refresh_labels(self) -> None:
        """Assign the whole dataset with the current model and log what a refresh of P logs in `DEC`."""
        q, y = whole_dataset_pass(self.trainer, self, self.forward)
        self.update_target(q)
        metrics = {"cluster/delta_label": self.delta_label, "cluster/min_size": self.min_cluster_size}
        metrics.update({f"cluster/{name}": value for name, value in clustering_scores(self.labels, y).items()})
        finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
        for logger in self.trainer.loggers:
            logger.log_metrics({**finite, "cluster/alpha": self.current_alpha}, step=self.trainer.global_step)

    def on_train_epoch_start(self) -> None:
        """Set this epoch's alpha, then refresh the labels (after the callbacks' epoch-start work, e.g. a re-init)."""
        self.current_alpha = self.alpha_at_epoch(self.current_epoch)
        self.refresh_labels()

    def loss_terms(self, x: Tensor, index: Tensor) -> dict[str, Tensor]:
        """The k-means term and, with a decoder, the reconstruction term: batch means over the real
        samples of the global batch (`sample_weights`, so that DDP trains as one device)."""
        weights = sample_weights(self, index)
        z = self.encoder(x)
        terms = {"kmeans": (dkm_clustering_per_sample(z, self.centers, self.current_alpha) * weights).sum()}
        if self.decoder is not None:
            terms["reconstruction"] = (dkm_reconstruction_per_sample(self.decoder(z), x) * weights).sum()
        return terms

    def check_target(self) -> None:
        """DKM has no target distribution: nothing to check before a step."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dkm_state"] = {"current_alpha": self.current_alpha}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.current_alpha = checkpoint.get("dkm_state", {}).get("current_alpha", self.current_alpha)
