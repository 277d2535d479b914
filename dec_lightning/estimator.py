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
import math
import numbers
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
from sklearn.utils import Tags, check_random_state
from sklearn.utils.validation import validate_data

from dec_lightning.callbacks import (
    FlushDenormals,
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
from dec_lightning.modules.dataset_pass import embed_and_assign
from dec_lightning.modules.dec import DEC as DECModule
from dec_lightning.modules.dec import load_checkpoint_file
from dec_lightning.modules.pretrain import AutoencoderPretraining
from dec_lightning.select_k import SelectKResult, check_ks, datamodule_of, parse_k_range, select_k, split_dataset

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
    if isinstance(value, np.random.RandomState):  # a generator's state is no setting; the fitted weights are saved
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _seed_of(random_state: int | np.random.RandomState | None) -> int:
    """The one seed of a fit: an int is used as it is (``random_state=0`` repeats a run seeded 0 on the
    command line); a `RandomState` or None (numpy's global one) draws it, as scikit-learn estimators do."""
    try:
        rng = check_random_state(random_state)  # also rejects other types and ints outside [0, 2**32)
    except ValueError as err:
        raise ConfigError(f"random_state: {err}") from None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(rng.randint(np.iinfo(np.int32).max))


def _label_codes(y: Any) -> Any:
    """Labels of any type as numbers, so they can be scored: text as integer codes, an object array of
    numbers as numbers; numbers pass unchanged (`validate_arrays` checks them: integers, -1 for unknown)."""
    if y is None or isinstance(y, (str, Path)):
        return y
    y = np.asarray(y)
    try:
        if y.dtype.kind in "US" or (y.dtype.kind == "O" and any(isinstance(v, str) for v in y.ravel())):
            return np.unique(y, return_inverse=True)[1].reshape(y.shape)
        if y.dtype.kind == "O":
            return y.astype(np.float64)
    except (TypeError, ValueError):  # mixed or odd types: `validate_arrays` names the problem
        pass
    return y


def _is_auto(value: Any, name: str) -> bool:
    if isinstance(value, str):
        if value != "auto":
            raise ConfigError(f'{name} must be "auto" or a number (a list of numbers for hidden_dims), got {value!r}')
        return True
    return False


def auto_settings(n_samples: int, n_features: int, batch_size: int = 256) -> dict[str, Any]:
    """What ``"auto"`` resolves to for data of this shape: encoder size and pretraining length.

    The paper's d-500-500-2000-10 and a fixed 1000 steps fit images (d >= 64) but are slow on small
    tabular data, and squeezing a table with a few informative among many noise features into 10
    dimensions lost clusters k-means finds (docs/results.md has the measurement). So:

    - hidden layers (h, h, 4h) with h = min(500, max(128, 8 * n_features)): the paper's
      500-500-2000 from 63 features up, 128-128-512 up to 16 features, in between 8 units per feature;
    - embedding_dim: the paper's 10 from 63 features up; below, min(n_features, 20), i.e. no
      compression up to 20 features;
    - pretrain_steps = max(1000, 20 epochs of ``batch_size``): 1000 up to 12 800 samples (hundreds
      of epochs of a small table), 20 epochs beyond, as the ``*_fast`` configs pretrain MNIST.

    Measured against k-means on standardised synthetic tables by ``benchmarks/tabular.py``.
    """
    width = min(500, max(128, 8 * n_features))
    steps_per_epoch = math.ceil(n_samples / batch_size)
    return {
        "hidden_dims": [width, width, 4 * width],
        "embedding_dim": 10 if width == 500 else min(20, n_features),
        "pretrain_steps": max(1000, 20 * steps_per_epoch),
    }


class DEC(ClusterMixin, TransformerMixin, BaseEstimator):
    """Deep Embedded Clustering (Xie et al., 2016) with the scikit-learn estimator API.

    Pretrains a denoising autoencoder ``d-hidden_dims-embedding_dim`` on ``X``, initialises
    ``n_clusters`` centres by k-means on its embedding, then refines encoder and centres on
    KL(P || Q) (eq. 2) until fewer than ``tol`` of the labels change between refreshes of P.

    ``__init__`` only stores the parameters (scikit-learn's convention, so `get_params`,
    `set_params` and `sklearn.base.clone` work); all work happens in `fit`.

    Args:
        n_clusters: number of clusters K.
        hidden_dims: hidden layer sizes of the encoder (paper: 500, 500, 2000); ``"auto"`` sizes
            them from the number of features at `fit` (`auto_settings`: the paper's from 63 features up).
        embedding_dim: size of the embedding z the clusters live in (paper: 10); ``"auto"``: 10 from
            63 features up, else the number of features, at most 20.
        pretrain_steps: end-to-end autoencoder steps (paper: 100 000); ``"auto"``: 1000, or 20 epochs
            if that is more. With ``layerwise_steps`` also 0, pretraining is skipped (k-means then runs
            on a random embedding).
        layerwise_steps: greedy layer-wise steps per layer before that (paper: 50 000; 0 skips).
        pretrain_lr: Adam learning rate of pretraining. The paper uses SGD (lr 0.1); Adam is
            less sensitive to the scale of the features, which matters for data one did not curate.
        dropout: input and hidden corruption of the layer-wise phase (paper: 0.2).
        cluster_steps: upper bound on clustering steps; training usually stops earlier on ``tol``.
        update_interval: steps between refreshes of the target distribution P (paper: 140).
        tol: stop when fewer than this fraction of labels change between refreshes (paper: 0.001).
        lr: SGD learning rate of the clustering stage, momentum 0.9 (paper: 0.01).
        alpha: degrees of freedom of the Student's t kernel (eq. 1; paper: 1).
        n_init: k-means restarts for the initial centres (paper: 20), with ``init="kmeans"`` or a fallback.
        init: ``"graph"`` (default): the initial centres from spectral clustering of the embedding's
            nearest-neighbour graph coarsened into ``micro_clusters`` k-means micro-clusters
            (`KMeansInit`), which keeps apart touching classes that k-means' best partition joins.
            Where the graph gives no trustworthy start the fit falls back to k-means with a warning.
            ``"kmeans"``: the paper's start, k-means with ``n_init`` restarts.
        micro_clusters: micro-clusters of the graph start (at most a fifth of the samples are used).
        batch_size: samples per step (paper: 256).
        random_state: seeds weights, shuffling and k-means (scikit-learn's name and types: an int,
            a `numpy.random.RandomState` to draw the seed from, or None for a fresh one each fit);
            the caller's global RNG state is restored after `fit`. An int gives the same run every time.
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
        feature_names_in_: column names of a DataFrame given to `fit` (absent for arrays).
        encoder_dims_: the encoder's layer sizes, ``"auto"`` resolved: [n_features, *hidden, embedding].
        pretrain_steps_: end-to-end pretraining steps run, ``"auto"`` resolved.
        module_: the trained `dec_lightning.modules.DEC` LightningModule.
    """

    def __init__(
        self,
        n_clusters: int = 10,
        hidden_dims: Sequence[int] | str = "auto",
        embedding_dim: int | str = "auto",
        pretrain_steps: int | str = "auto",
        layerwise_steps: int = 0,
        pretrain_lr: float = 1e-3,
        dropout: float = 0.2,
        cluster_steps: int = 3000,
        update_interval: int = 140,
        tol: float = 0.001,
        lr: float = 0.01,
        alpha: float = 1.0,
        n_init: int = 20,
        init: str = "graph",
        micro_clusters: int = 100,
        batch_size: int = 256,
        random_state: int | np.random.RandomState | None = 0,
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
        self.init = init
        self.micro_clusters = micro_clusters
        self.batch_size = batch_size
        self.random_state = random_state
        self.accelerator = accelerator
        self.log_dir = log_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ training

    def _init_callback(self, seed: int) -> KMeansInit:
        return KMeansInit(n_init=self.n_init, seed=seed, init=self.init, micro_clusters=self.micro_clusters)

    def fit(self, X: np.ndarray | sp.spmatrix, y: np.ndarray | None = None) -> DEC:
        """Pretrain, initialise and cluster ``X`` (n_samples, n_features); returns self.

        Args:
            X: dense array (a DataFrame's column names become ``feature_names_in_``) or scipy sparse
                matrix of any format; sparse rows are densified one batch at a time.
            y: optional true labels (-1 where unknown; text labels are coded), used only to report ACC/NMI/ARI.
        """
        if self.cluster_steps < 1:
            raise ConfigError(f"cluster_steps must be >= 1, got {self.cluster_steps}")
        seed = _seed_of(self.random_state)
        x = self._validate_X(X, reset=True)
        data = ArrayDataModule(x, labels=_label_codes(y), batch_size=self.batch_size)
        data.setup()  # validates y with one clear message before any work
        n_samples, n_features = x.shape
        if not 2 <= self.n_clusters <= n_samples:
            raise ConfigError(
                f"n_clusters must be between 2 and the number of samples ({n_samples}), got {self.n_clusters}"
            )
        if self.init not in ("kmeans", "graph"):
            raise ConfigError(f"init must be 'kmeans' or 'graph', got {self.init!r}")
        if self.micro_clusters <= self.n_clusters:
            raise ConfigError(f"micro_clusters must be above n_clusters ({self.n_clusters}), got {self.micro_clusters}")
        hidden_dims, embedding_dim, pretrain_steps = self._resolve_auto(n_samples, n_features)
        dims = [n_features, *hidden_dims, embedding_dim]
        with _quiet(not self.verbose), _seeded(seed):
            encoder = MLPEncoder(dims)
            if pretrain_steps > 0 or self.layerwise_steps > 0:
                self._pretrain(encoder, data, pretrain_steps)
            module = DECModule(
                encoder,
                n_clusters=self.n_clusters,
                alpha=self.alpha,
                optimizer=partial(torch.optim.SGD, lr=self.lr, momentum=0.9),
            )
            callbacks = [
                self._init_callback(seed),
                TargetDistributionRefresh(update_interval=self.update_interval),
                ToleranceStopping(tol=self.tol),
                TensorBoardViews(seed=seed),
            ]
            if self.verbose:
                callbacks += [PhaseProgress(), RunSummary()]
            trainer = self._trainer("cluster", max_steps=self.cluster_steps, callbacks=callbacks)
            trainer.fit(module, datamodule=data)
        module.eval()
        self.module_ = module
        self.labels_ = module.labels.cpu().numpy()  # int32, as scikit-learn's KMeans.labels_: no N x int64 copy
        self.cluster_centers_ = module.centers.detach().cpu().numpy()
        self.scores_ = dict(module.scores)
        self.n_iter_ = int(trainer.global_step)
        self.encoder_dims_ = list(dims)
        self.pretrain_steps_ = pretrain_steps
        return self

    def _resolve_auto(self, n_samples: int, n_features: int) -> tuple[list[int], int, int]:
        """``hidden_dims``, ``embedding_dim`` and ``pretrain_steps`` for this data: explicit values as given,
        ``"auto"`` ones from `auto_settings`."""
        auto = auto_settings(n_samples, n_features, self.batch_size)
        hidden = auto["hidden_dims"] if _is_auto(self.hidden_dims, "hidden_dims") else self.hidden_dims
        embedding = auto["embedding_dim"] if _is_auto(self.embedding_dim, "embedding_dim") else self.embedding_dim
        steps = auto["pretrain_steps"] if _is_auto(self.pretrain_steps, "pretrain_steps") else self.pretrain_steps
        return [int(d) for d in hidden], int(embedding), int(steps)

    def _validate_X(self, X: np.ndarray | sp.spmatrix, *, reset: bool) -> np.ndarray | sp.csr_matrix:
        """scikit-learn's `validate_data`, then the checks it does not make, all as `DataValidationError`.

        `validate_data` records ``n_features_in_`` (and ``feature_names_in_`` for a DataFrame) at
        fit and compares them at predict, with scikit-learn's standard messages. Non-finite values
        are left to `validate_arrays`, whose message also covers values beyond float32's range
        (finite in float64, infinite once cast to the float32 the encoder sees).
        """
        try:
            x = validate_data(
                self,
                X,
                reset=reset,
                accept_sparse="csr",
                dtype=(np.float32, np.float64),
                ensure_all_finite=False,
                ensure_min_samples=2 if reset else 1,  # two clusters need two samples; one can be predicted
            )
        except ValueError as err:
            raise DataValidationError(f"X: {err}") from None
        return validate_arrays(x, source="X")[0]

    def __sklearn_tags__(self) -> Tags:
        """Sparse input is accepted (densified one batch at a time); NaN is not."""
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _pretrain(self, encoder: MLPEncoder, data: ArrayDataModule, steps: int) -> None:
        pretraining = AutoencoderPretraining(
            encoder,
            layerwise_steps=self.layerwise_steps,
            finetune_steps=steps,
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
            callbacks=[FlushDenormals(), *callbacks],  # CPU speed only: subnormal floats are slow on CPUs
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

    def _embed(self, X: np.ndarray | sp.spmatrix, assign: bool) -> np.ndarray:
        """Embeddings z of ``X`` or, with ``assign``, its soft assignments Q (eq. 1); batch by batch, in eval mode.

        The encoder runs once per batch and Q is computed from that z, as the module's
        ``forward`` does, with the batch size of the module's whole-dataset pass, so
        ``predict(X_train)`` reproduces ``labels_`` exactly.
        """
        module = self._check_fitted().to(self._device())
        z, q = embed_and_assign(module, IndexedDataset(self._validate_X(X, reset=False)))
        return (q if assign else z).numpy()

    def predict_proba(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Soft assignments Q (n_samples, n_clusters), DEC eq. 1; rows sum to 1."""
        return self._embed(X, assign=True)

    def predict(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Cluster of each sample: the argmax of its soft assignment."""
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Embeddings z (n_samples, embedding_dim) of the trained encoder."""
        return self._embed(X, assign=False)

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
            "pretrain_steps": self.pretrain_steps_,
            "feature_names": [str(name) for name in getattr(self, "feature_names_in_", [])] or None,
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
        params = dict(state["params"])
        if "seed" in params:  # files written before the parameter took scikit-learn's name
            params["random_state"] = params.pop("seed")
        estimator = cls(**params)
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
        estimator.encoder_dims_ = dims
        estimator.pretrain_steps_ = int(state.get("pretrain_steps", params.get("pretrain_steps", 0)))
        if state.get("feature_names") is not None:
            estimator.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)
        return estimator

    # ------------------------------------------------------------------ choosing K

    def select_k(
        self,
        X: np.ndarray | sp.spmatrix,
        y: np.ndarray | None = None,
        ks: str | Sequence[int] = "5:15",
        holdout: float = 0.2,
        silhouette_samples: int = 2000,
        csv_path: str | Path | None = None,
    ) -> SelectKResult:
        """Choose ``n_clusters`` by DEC's generalizability on held-out data (Xie et al., 2016, sec. 5.5).

        Holds out ``holdout`` of ``X``, pretrains one autoencoder on the rest with this estimator's
        settings, runs DEC for every K of ``ks`` (``"5:15"``, ``"4,8,10"`` or integers) from a copy of
        it and scores each on the held-out part: `dec_lightning.select_k`. Does not fit the estimator;
        use ``set_params(n_clusters=result.recommended_k).fit(X)``. ``y`` only adds ACC/NMI to the
        table; with ``log_dir`` the table is also logged to ``log_dir/select_k`` (K as the step).
        """
        ks = parse_k_range(ks)
        seed = _seed_of(self.random_state)
        data = ArrayDataModule(X, labels=_label_codes(y), batch_size=self.batch_size)
        data.setup()  # validates X and y before any work
        train, held_out = split_dataset(data.dataset, holdout, seed)
        check_ks(ks, len(train), len(held_out))
        hidden_dims, embedding_dim, pretrain_steps = self._resolve_auto(len(train), data.input_dim)
        logger = TensorBoardLogger(save_dir=str(self.log_dir), name="select_k") if self.log_dir is not None else None
        optimizer = partial(torch.optim.SGD, lr=self.lr, momentum=0.9)
        with _quiet(not self.verbose), _seeded(seed):
            encoder = MLPEncoder([data.input_dim, *hidden_dims, embedding_dim])
            if pretrain_steps > 0 or self.layerwise_steps > 0:
                self._pretrain(encoder, datamodule_of(train, self.batch_size), pretrain_steps)
            return select_k(
                ks,
                train,
                held_out,
                encoder,
                build_module=lambda enc, k: DECModule(enc, n_clusters=k, alpha=self.alpha, optimizer=optimizer),
                build_trainer=lambda k: self._trainer(
                    "cluster",
                    max_steps=self.cluster_steps,
                    callbacks=[
                        self._init_callback(seed),
                        TargetDistributionRefresh(update_interval=self.update_interval),
                        ToleranceStopping(tol=self.tol),
                    ],
                ),
                batch_size=self.batch_size,
                seed=seed,
                silhouette_samples=silhouette_samples,
                logger=logger,
                csv_path=csv_path,
            )
