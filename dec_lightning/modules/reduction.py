"""Batch means that make W DDP processes train exactly as one process with their global batch."""

from __future__ import annotations

import lightning as L
import torch.nn.functional as F
from torch import Tensor


def sample_weights(module: L.LightningModule, index: Tensor) -> Tensor:
    """Per-sample weights whose weighted sum of a loss is the mean over the real samples of the global batch.

    One process: ``1 / n``, the plain batch mean. Under DDP the ranks' batches together are
    one process's batch (`EpochShuffleSampler`), but the last one of an epoch may split
    unevenly and carry padding (index -1); DDP averages the ranks' gradients. With weights
    ``W / n_global`` on real samples and 0 on padding, that average is exactly the gradient of
    the global batch's mean loss, whatever the split. Costs one scalar all-reduce per step.
    """
    trainer = module._trainer
    world = trainer.world_size if trainer is not None else 1
    real = (index >= 0).to(device=module.device, dtype=module.dtype)
    if world == 1:
        return real / real.sum().clamp_min(1.0)
    total = trainer.strategy.reduce(real.sum(), reduce_op="sum")
    return real * (world / total.clamp_min(1.0))


def weighted_mse(x_hat: Tensor, x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Squared error averaged over the features, then over the batch: the plain mean, or with `sample_weights`."""
    if weights is None:
        return F.mse_loss(x_hat, x)
    return (F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(dim=1) * weights).sum()
