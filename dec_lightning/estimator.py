"""`DEC`: Deep Embedded Clustering as a scikit-learn style estimator.

``DEC(n_clusters=10).fit(X)`` runs the same two stages as ``dec-lightning run``: a
`lightning.Trainer` fits `AutoencoderPretraining`, then another fits the clustering
module (`dec_lightning.modules.DEC`) with the `KMeansInit`, `TargetDistributionRefresh`
and `ToleranceStopping` callbacks, on an `ArrayDataModule`. There is no second training
loop here: the estimator only builds those pieces from flat parameters and reads the
result back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.seed import isolate_rng
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import NotFittedError

from dec_lightning.callbacks import (
    KMeansInit,
    PhaseProgress,
    RunSummary,
    TargetDistributionRefresh,
    TensorBoardViews,
    ToleranceStopping,
)
from dec_lightning.data.arrays import ArrayDataModule
from dec_lightning.data.indexed import IndexedDataset
from dec_lightning.data.validation import ConfigError, DataValidationError, validate_arrays
from dec_lightning.encoders.mlp import MLPEncoder
from dec_lightning.files import atomic_write
from dec_lightning.modules.dataset_pass import EVAL_BATCH_SIZE
from dec_lightning.modules.dec import DEC as DECModule
from dec_lightning.modules.dec import load_checkpoint_file
from dec_lightning.modules.pretrain import AutoencoderPretraining

FILE_FORMAT = "dec_lightning.DEC/1"

# Lightning's informational chatter (hardware, tips, "max_steps reached") and the warnings that
# are expected for small in-memory data; hidden unless verbose=True.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*treespec.*",
)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence Lightning's info logs and routine warnings; real warnings (e.g. empty clusters) still show."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and random for one fit and restore the caller's RNG state after.

    An estimator should not reseed the user's global RNGs as a side effect; Lightning's
    `isolate_rng` restores them, and the seed Lightning records for worker seeding too.
    """
    previous = os.environ.get("PL_GLOBAL_SEED")
    with isolate_rng():
        L.seed_everything(seed, verbose=False)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("PL_GLOBAL_SEED", None)
            else:
                os.environ["PL_GLOBAL_SEED"] = previous


def _plain(value: Any) -> Any:
    """Parameters as builtins, so the saved file loads with ``torch.load(weights_only=True)``."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


class DEC(ClusterMixin, TransformerMixin, BaseEstimator):
    """Deep Embedded Clustering (Xie et al., 2016) with the scikit-learn estimator API.

    Pretrains a denoising autoencoder ``d-hidden_dims-embedding_dim`` on ``X``, initialises
    ``n_clusters`` centres by k-means on its embedding, then refines encoder and centres on
    KL(P || Q) (eq. 2) until fewer than ``tol`` of the labels change between refreshes of P.

    ``__init__`` only stores the parameters (scikit-learn's convention, so `get_params`,
    `set_params` and `sklearn.base.clone` work); all work happens in `fit`.

    Args:
        n_clusters: number of clusters K.
        hidden_dims: hidden layer sizes of the encoder (paper: 500, 500, 2000).
        embedding_dim: size of the embedding z the clusters live in (paper: 10).
        pretrain_steps: end-to-end autoencoder steps (paper: 100 000). With ``layerwise_steps``
            also 0, pretraining is skipped (k-means then runs on a random embedding).
        layerwise_steps: greedy layer-wise steps per layer before that (paper: 50 000; 0 skips).
        pretrain_lr: Adam learning rate of pretraining. The paper uses SGD (lr 0.1); Adam is
            less sensitive to the scale of the features, which matters for data one did not curate.
        dropout: input and hidden corruption of the layer-wise phase (paper: 0.2).
        cluster_steps: upper bound on clustering steps; training usually stops earlier on ``tol``.
        update_interval: steps between refreshes of the target distribution P (paper: 140).
        tol: stop when fewer than this fraction of labels change between refreshes (paper: 0.001).
        lr: SGD learning rate of the clustering stage, momentum 0.9 (paper: 0.01).
        alpha: degrees of freedom of the Student's t kernel (eq. 1; paper: 1).
        n_init: k-means restarts for the initial centres (paper: 20).
        batch_size: samples per step (paper: 256).
        seed: seeds weights, shuffling and k-means; the caller's RNG state is restored after `fit`.
        accelerator: Lightning accelerator ("auto", "cpu", "gpu", ...); one device is used.
        log_dir: when set, TensorBoard logs go to ``log_dir/pretrain`` and ``log_dir/cluster``
            (losses, per-refresh metrics, cluster-size histograms, embedding projector,
            confusion matrix); nothing is written otherwise.
        verbose: show progress bars, Lightning's messages and a summary at the end.

    Attributes:
        labels_: cluster of each training sample, from the final model.
        cluster_centers_: (K, embedding_dim) centres in embedding space.
        scores_: ACC/NMI/ARI against the ``y`` given to `fit` (empty without labels).
        n_iter_: clustering steps run.
        n_features_in_: number of features seen in `fit`.
        module_: the trained `dec_lightning.modules.DEC` LightningModule.
    """

    def __init__(
        self,
        n_clusters: int = 10,
        hidden_dims: Sequence[int] = (500, 500, 2000),
        embedding_dim: int = 10,
        pretrain_steps: int = 1000,
        layerwise_steps: int = 0,
        pretrain_lr: float = 1e-3,
        dropout: float = 0.2,
        cluster_steps: int = 3000,
        update_interval: int = 140,
        tol: float = 0.001,
        lr: float = 0.01,
        alpha: float = 1.0,
        n_init: int = 20,
        batch_size: int = 256,
        seed: int = 0,
        accelerator: str = "auto",
        log_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.hidden_dims = hidden_dims
        self.embedding_dim = embedding_dim
        self.pretrain_steps = pretrain_steps
        self.layerwise_steps = layerwise_steps
        self.pretrain_lr = pretrain_lr
        self.dropout = dropout
        self.cluster_steps = cluster_steps
        self.update_interval = update_interval
        self.tol = tol
        self.lr = lr
        self.alpha = alpha
        self.n_init = n_init
        self.batch_size = batch_size
        self.seed = seed
        self.accelerator = accelerator
        self.log_dir = log_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ training

    def fit(self, X: np.ndarray | sp.spmatrix, y: np.ndarray | None = None) -> DEC:
        """Pretrain, initialise and cluster ``X`` (n_samples, n_features); returns self.

        Args:
            X: dense array or scipy sparse matrix; sparse rows are densified one batch at a time.
            y: optional true labels (-1 where unknown), used only to report ACC/NMI/ARI.
        """
        if self.cluster_steps < 1:
            raise ConfigError(f"cluster_steps must be >= 1, got {self.cluster_steps}")
        data = ArrayDataModule(X, labels=y, batch_size=self.batch_size)
        data.setup()  # validates X and y with one clear message before any work
        n_samples = len(data.dataset)
        if not 2 <= self.n_clusters <= n_samples:
            raise ConfigError(
                f"n_clusters must be between 2 and the number of samples ({n_samples}), got {self.n_clusters}"
            )
        dims = [data.input_dim, *(int(d) for d in self.hidden_dims), int(self.embedding_dim)]
        with _quiet(not self.verbose), _seeded(self.seed):
            encoder = MLPEncoder(dims)
            if self.pretrain_steps > 0 or self.layerwise_steps > 0:
                self._pretrain(encoder, data)
            module = DECModule(
                encoder,
                n_clusters=self.n_clusters,
                alpha=self.alpha,
                optimizer=partial(torch.optim.SGD, lr=self.lr, momentum=0.9),
            )
            callbacks = [
                KMeansInit(n_init=self.n_init, seed=self.seed),
                TargetDistributionRefresh(update_interval=self.update_interval),
                ToleranceStopping(tol=self.tol),
                TensorBoardViews(seed=self.seed),
            ]
            if self.verbose:
                callbacks += [PhaseProgress(), RunSummary()]
            trainer = self._trainer("cluster", max_steps=self.cluster_steps, callbacks=callbacks)
            trainer.fit(module, datamodule=data)
        module.eval()
        self.module_ = module
        self.labels_ = module.labels.cpu().numpy()
        self.cluster_centers_ = module.centers.detach().cpu().numpy()
        self.scores_ = dict(module.scores)
        self.n_iter_ = int(trainer.global_step)
        self.n_features_in_ = data.input_dim
        return self

    def _pretrain(self, encoder: MLPEncoder, data: ArrayDataModule) -> None:
        pretraining = AutoencoderPretraining(
            encoder,
            layerwise_steps=self.layerwise_steps,
            finetune_steps=self.pretrain_steps,
            dropout=self.dropout,
            optimizer=partial(torch.optim.Adam, lr=self.pretrain_lr),
        )
        callbacks = [PhaseProgress()] if self.verbose else []
        trainer = self._trainer("pretrain", max_steps=pretraining.total_steps, callbacks=callbacks)
        trainer.fit(pretraining, datamodule=data)

    def _trainer(self, stage: str, max_steps: int, callbacks: list[L.Callback]) -> L.Trainer:
        logger = TensorBoardLogger(save_dir=str(self.log_dir), name=stage) if self.log_dir is not None else False
        return L.Trainer(
            accelerator=self.accelerator,
            devices=1,
            max_steps=max_steps,
            max_epochs=-1,
            logger=logger,
            log_every_n_steps=10,
            callbacks=callbacks,
            enable_checkpointing=False,  # the estimator is kept in memory; `save` writes it
            enable_progress_bar=bool(self.verbose),
            enable_model_summary=bool(self.verbose),
        )

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> DECModule:
        module = getattr(self, "module_", None)
        if module is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) or DEC.load(path) first")
        return module

    def _device(self) -> torch.device:
        """Where inference runs: the accelerator asked for, if present, else the CPU."""
        accelerator = str(self.accelerator).lower()
        if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return torch.device("cuda")
        if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def _embed_and_assign(self, X: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings z and soft assignments Q (eq. 1) of ``X``, batch by batch, in eval mode.

        Uses the module's own ``embed`` and ``forward`` with the batch size of the module's
        whole-dataset pass, so ``predict(X_train)`` reproduces ``labels_`` exactly.
        """
        module = self._check_fitted()
        x, _ = validate_arrays(X, source="X")
        if x.shape[1] != self.n_features_in_:
            raise DataValidationError(
                f"X has {x.shape[1]} features, but this DEC was fitted on {self.n_features_in_} features"
            )
        dataset = IndexedDataset(x)
        device = self._device()
        module.to(device).eval()
        embeddings, assignments = [], []
        with torch.no_grad():
            for start in range(0, len(dataset), EVAL_BATCH_SIZE):
                batch = dataset.rows(torch.arange(start, min(start + EVAL_BATCH_SIZE, len(dataset)))).to(device)
                embeddings.append(module.embed(batch).cpu())
                assignments.append(module(batch).cpu())
        return torch.cat(embeddings).numpy(), torch.cat(assignments).numpy()

    def predict_proba(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Soft assignments Q (n_samples, n_clusters), DEC eq. 1; rows sum to 1."""
        return self._embed_and_assign(X)[1]

    def predict(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Cluster of each sample: the argmax of its soft assignment."""
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Embeddings z (n_samples, embedding_dim) of the trained encoder."""
        return self._embed_and_assign(X)[0]

    def fit_predict(self, X: np.ndarray | sp.spmatrix, y: np.ndarray | None = None) -> np.ndarray:
        """`fit`, then return ``labels_``."""
        return self.fit(X, y).labels_

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write parameters, weights and fitted attributes to one file, atomically and durably (`atomic_write`).

        The file holds only tensors and builtins, so `load` reads it with
        ``torch.load(weights_only=True)``: loading never runs code from the file.
        """
        module = self._check_fitted()
        path = Path(path)
        state = {
            "format": FILE_FORMAT,
            "params": {k: _plain(v) for k, v in self.get_params().items()},
            "encoder_dims": list(module.encoder.dims),
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "labels": torch.as_tensor(self.labels_),
            "scores": dict(self.scores_),
            "n_iter": self.n_iter_,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(state, f))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DEC:
        """Rebuild a fitted estimator from a file written by `save`."""
        state = load_checkpoint_file(Path(path))
        if state.get("format") != FILE_FORMAT:
            raise ConfigError(f"{path}: not a file written by dec_lightning.DEC.save (format {state.get('format')!r})")
        estimator = cls(**state["params"])
        dims = [int(d) for d in state["encoder_dims"]]
        n_clusters = int(state["state_dict"]["centers"].shape[0])
        module = DECModule(MLPEncoder(dims), n_clusters=n_clusters, alpha=estimator.alpha)
        module.load_state_dict(state["state_dict"])
        module.eval()
        estimator.module_ = module
        estimator.labels_ = state["labels"].numpy()
        estimator.cluster_centers_ = module.centers.detach().cpu().numpy()
        estimator.scores_ = dict(state["scores"])
        estimator.n_iter_ = int(state["n_iter"])
        estimator.n_features_in_ = dims[0]
        return estimator
