"""Default optimizers, as importable functions so configs and checkpoints can name them."""

from __future__ import annotations

from collections.abc import Iterable

from torch.optim import SGD, Optimizer


def dec_sgd(params: Iterable) -> Optimizer:
    """SGD lr 0.01, momentum 0.9: the DEC paper's clustering-phase optimizer."""
    return SGD(params, lr=0.01, momentum=0.9)


def sdae_sgd(params: Iterable) -> Optimizer:
    """SGD lr 0.1, momentum 0.9: the DEC paper's autoencoder-pretraining optimizer."""
    return SGD(params, lr=0.1, momentum=0.9)
