"""BRB's soft reset of an encoder: theta <- a * theta + (1 - a) * theta_fresh, embedding layer excluded.

Miklautz et al., "Breaking the Reclustering Barrier in Centroid-based Deep Clustering", ICLR 2025;
reference code github.com/Probabilistic-and-Interactive-ML/breaking-the-reclustering-barrier,
``src/deep/soft_reset.py`` (line numbers below are those of its commit 07bd90b).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

# The reference resets Linear and Conv2d layers (soft_reset.py L157-163); BatchNorm only on request
# (``reset_batchnorm``, default False, config/brb_config.py L28), and our encoders have none.
RESET_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, _ConvNd)


def embedding_layer(encoder: nn.Module) -> nn.Module:
    """The layer that outputs z, which BRB leaves alone (``reset_embedding=False``, brb_config.py L32).

    ``encoder.embedding`` when that is a module (`ConvEncoder`); otherwise the last Linear or
    conv layer in registration order (`MLPEncoder`: ``layers[-1]``; the reference takes
    ``autoencoder.encoder.block[-1]``, soft_reset.py L137).
    """
    named = getattr(encoder, "embedding", None)
    if isinstance(named, nn.Module):
        return named
    layers = [m for m in encoder.modules() if isinstance(m, RESET_TYPES)]
    if not layers:
        raise ValueError(f"{type(encoder).__name__} has no Linear or conv layer to soft-reset")
    return layers[-1]


def resettable_layers(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, layer)`` pairs a soft reset touches, in module order: trainable Linear/conv layers but the embedding.

    Frozen layers are skipped as in the reference (soft_reset.py L54: ``not layer.weight.requires_grad``).
    """
    skip = embedding_layer(encoder)
    return [
        (name, module)
        for name, module in encoder.named_modules()
        if isinstance(module, RESET_TYPES) and module is not skip and module.weight.requires_grad
    ]


def fresh_layers(layers: list[nn.Module], seed: int) -> list[nn.Module]:
    """CPU copies of ``layers`` re-drawn by their own ``reset_parameters()``, in order, after ``torch.manual_seed(seed)``.

    Drawn on the CPU from a forked RNG: the same values on every device and DDP rank given the
    same seed, and the training RNG stream (shuffling, dropout) is left exactly as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = []
        for layer in layers:
            copy_ = copy.deepcopy(layer).to("cpu")
            copy_.reset_parameters()
            fresh.append(copy_)
    return fresh


@torch.no_grad()
def soft_reset(encoder: nn.Module, factor: float, seed: int) -> list[str]:
    """Interpolate every resettable layer's weight and bias towards a fresh draw; return the layers' names.

    ``theta <- factor * theta + (1 - factor) * theta_fresh`` (BRB sec. 5; soft_reset.py L25-47,
    biases included). ``factor`` 1 keeps the weights, 0 is a hard reset. Unlike the reference,
    which draws weights with ``kaiming_uniform_`` at its default gain (L28-29, a = 0), theta_fresh
    is the layer's own default initialisation (``reset_parameters()``; PyTorch's Linear/conv:
    kaiming-uniform with a = sqrt(5) for weights, U(+-1/sqrt(fan_in)) for biases as in L44-45),
    the distribution the untrained encoder was drawn from.

    Example:
        >>> from dec_lightning.encoders import MLPEncoder
        >>> soft_reset(MLPEncoder([8, 6, 4, 2]), factor=0.8, seed=0)
        ['layers.0', 'layers.1']
    """
    if not 0 <= factor <= 1:
        raise ValueError(f"factor must be in [0, 1], got {factor}")
    named = resettable_layers(encoder)
    fresh = fresh_layers([layer for _, layer in named], seed)
    for (_, layer), new in zip(named, fresh, strict=True):
        for name, param in layer.named_parameters(recurse=False):
            draw = getattr(new, name).to(device=param.device, dtype=param.dtype)
            param.mul_(factor).add_(draw, alpha=1 - factor)
    return [name for name, _ in named]
