"""Pretrain + cluster through the Python API, with timings: shared by the beyond-DEC benchmarks."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
from dec_lightning.data import ArrayDataModule
from dec_lightning.modules import DEC, AutoencoderPretraining

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*clusters are (near-)?empty.*")
    for name in ("lightning.pytorch", "lightning.fabric"):
        import logging

        logging.getLogger(name).setLevel(logging.ERROR)


def pretrain(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    encoder: nn.Module,
    decoder: nn.Module | None,
    batch_size: int,
    **kwargs: Any,
) -> tuple[AutoencoderPretraining, float]:
    """Fit the autoencoder; returns it and its wall time in seconds."""
    L.seed_everything(seed, verbose=False)
    module = AutoencoderPretraining(encoder, decoder, **kwargs)
    start = time.perf_counter()
    L.Trainer(max_steps=module.total_steps, max_epochs=-1, **QUIET).fit(
        module, datamodule=ArrayDataModule(x, labels=y, batch_size=batch_size)
    )
    return module, time.perf_counter() - start


def cluster(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    pretrained: AutoencoderPretraining,
    batch_size: int,
    max_steps: int,
    update_interval: int,
    extra_callbacks: Callable[[], list[L.Callback]] = list,
    n_init: int = 20,
    module: type[DEC] = DEC,
    **dec_kwargs: Any,
) -> dict[str, float]:
    """DEC, IDEC or DKM from copies of the pretrained modules for exactly ``max_steps`` steps; scores + time.

    The target distribution P is refreshed every ``update_interval`` steps for the KL objective;
    `DKM` has no P and relabels once per epoch by itself.
    """
    L.seed_everything(seed, verbose=False)
    model = module(copy.deepcopy(pretrained.encoder), decoder=copy.deepcopy(pretrained.decoder), **dec_kwargs)
    callbacks: list[L.Callback] = [KMeansInit(n_init=n_init)]
    if module.clustering_term == "kl":
        callbacks.append(TargetDistributionRefresh(update_interval=update_interval))
    start = time.perf_counter()
    L.Trainer(max_steps=max_steps, max_epochs=-1, callbacks=callbacks + extra_callbacks(), **QUIET).fit(
        model, datamodule=ArrayDataModule(x, labels=y, batch_size=batch_size)
    )
    return {**model.scores, "seconds": time.perf_counter() - start}


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"
