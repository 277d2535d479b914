"""The DEC clustering stage: encoder + cluster centres trained on KL(P || Q) (Xie et al., 2016)."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from dec_lightning.data.validation import ConfigError, check_model_fits_data, require_file
from dec_lightning.encoders.mlp import mirror_decoder
from dec_lightning.metrics.clustering import clustering_scores, label_change_fraction
from dec_lightning.modules.assignment import kl_per_sample, soft_assignment, target_distribution
from dec_lightning.modules.dataset_pass import full_precision, whole_dataset_pass
from dec_lightning.modules.optim import dec_sgd
from dec_lightning.modules.reduction import sample_weights, weighted_mse

# Rows per chunk when a refresh writes the new labels over the old ones (a few MB of temporaries at any N).
_LABEL_CHUNK = 1 << 16

_RESAVE_ENCODER = (
    "python -c \"import torch; s = torch.load('{path}', weights_only=False)['state_dict']; "
    "torch.save({{k[8:]: v for k, v in s.items() if k.startswith('encoder.')}}, 'encoder.pt')\""
)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``, failing with one `ConfigError` on any unreadable file.

    Weights-only loading never runs code from the file; a checkpoint that pickles Python
    objects (e.g. an optimizer factory among its hyperparameters) is refused with a hint.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:  # not a pickle torch can read at all
            raise ConfigError(f"{path}: cannot read as a checkpoint (not a PyTorch file, or corrupted)") from None
        raise ConfigError(
            f"{path}: holds pickled Python objects besides tensors ({found.group(1)}, e.g. an optimizer "
            "among its hyperparameters), which are not loaded for safety; if you trust the file, save the "
            f"encoder weights alone and pass that file instead: {_RESAVE_ENCODER.format(path=path)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "empty or truncated file"
        raise ConfigError(f"{path}: cannot read as a checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{path}: not a checkpoint or state dict (holds a {type(checkpoint).__name__})")
    return checkpoint


def load_encoder_weights(encoder: nn.Module, path: str | Path, prefix: str = "encoder") -> None:
    """Load pretrained encoder weights from a pretraining checkpoint or an encoder state file.

    A Lightning checkpoint of `AutoencoderPretraining` holds them under ``encoder.*``;
    a plain file is the encoder's own ``state_dict``. With ``prefix="decoder"`` it loads the
    decoder (IDEC keeps it), which only a pretraining checkpoint holds.
    """
    path = require_file(
        path, f"pretrained {prefix}", "run `dec-lightning pretrain` first, or fix model.pretrained in the config"
    )
    state = load_checkpoint_file(path)
    if "state_dict" in state:
        state = {k.removeprefix(f"{prefix}."): v for k, v in state["state_dict"].items() if k.startswith(f"{prefix}.")}
    elif prefix != "encoder":
        raise ConfigError(f"{path} is an encoder state file; the {prefix} needs the pretraining checkpoint")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{path} does not fit the configured {prefix} (`{prefix}` in the config): {err}") from None


class DEC(L.LightningModule):
    """Deep Embedded Clustering: refines a pretrained encoder and K centres jointly.

    Each step looks up its samples' rows of the target distribution P by dataset index
    and minimises ``clustering_weight * KL(P || Q) + reconstruction_weight * MSE(decoder(z), x)``.
    Plain DEC (eq. 2) is weights (1, 0). IDEC (Guo et al., IJCAI 2017, eq. 3: L = L_r + gamma * L_c;
    reference code IDEC.py, ``loss_weights=[gamma, 1]`` on ``[kld, mse]``) is weights (gamma, 1)
    with gamma = 0.1: the decoder is kept, and so the local structure of the embedding. P itself is computed over the whole dataset by the
    `TargetDistributionRefresh` callback, and the centres start from `KMeansInit`: the
    module holds the model, the callbacks hold the schedule.

    Args:
        encoder: any module mapping x -> z with an ``embedding_dim`` attribute.
        n_clusters: number of clusters K.
        alpha: degrees of freedom of the Student's t kernel (eq. 1; paper: 1).
        pretrained: pretraining checkpoint or encoder state file loaded before clustering
            (skipped when resuming from a DEC checkpoint).
        optimizer: builds the optimizer from the parameters (default: SGD lr 0.01, momentum 0.9).
        decoder: maps z -> x̂, used by the IDEC term only; default (when gamma > 0): the mirror
            of an `MLPEncoder`. Other encoders need one (e.g. `ConvDecoder`).
        clustering_weight: weight of KL(P || Q); IDEC's gamma (IDEC paper and code: 0.1), 1 for DEC.
        reconstruction_weight: weight of the reconstruction MSE; 1 for IDEC, 0 (plain DEC) drops the decoder.
        augment: transform of the training batches' features (e.g. `RandomShiftRotate`), for
            DEC-DA; P, k-means and the final assignments are computed on clean data.
        near_empty_fraction: a cluster holding fewer than this fraction of the mean cluster size
            N/K at a refresh of P is reported as near-empty (0 reports only empty clusters). The
            default 0.1 flags a collapsing cluster early yet leaves room for real class imbalance
            (Reuters-4's smallest class holds 0.2 N/K; MNIST's 0.9 N/K).
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_clusters: int = 10,
        alpha: float = 1.0,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = dec_sgd,
        near_empty_fraction: float = 0.1,
        decoder: nn.Module | None = None,
        reconstruction_weight: float = 0.0,
        clustering_weight: float = 1.0,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            # the optimizer factory is code, not a hyperparameter: pickling it would make the
            # checkpoint unloadable with torch.load(weights_only=True), i.e. break resuming
            self.save_hyperparameters(ignore=["optimizer"])
        for name in ("encoder", "decoder", "augment"):
            if isinstance(self.hparams.get(name), nn.Module):
                # Built in Python rather than from a config: not serialisable as a hyperparameter,
                # so `DEC.load_from_checkpoint(path, encoder=...)` must be given one. The logger
                # writes the initial copy, so drop it there too.
                self.hparams.pop(name)
                self._hparams_initial.pop(name, None)
        if n_clusters < 2:
            raise ConfigError(f"model.n_clusters must be >= 2 (a single cluster is no clustering), got {n_clusters}")
        if not 0 <= near_empty_fraction < 1:
            raise ConfigError(f"model.near_empty_fraction must be in [0, 1), got {near_empty_fraction}")
        if not hasattr(encoder, "embedding_dim"):
            raise ValueError(f"{type(encoder).__name__} needs an `embedding_dim` attribute to be used by DEC")
        if reconstruction_weight < 0:
            raise ConfigError(f"model.reconstruction_weight must be >= 0, got {reconstruction_weight}")
        if clustering_weight <= 0:
            raise ConfigError(
                f"model.clustering_weight must be > 0 (it weights DEC's KL term), got {clustering_weight}"
            )
        if reconstruction_weight > 0 and decoder is None:  # the reconstruction term needs a decoder
            decoder = mirror_decoder(encoder)
        self.decoder = decoder if reconstruction_weight > 0 else None
        self.augment = augment
        # kept as an attribute: Lightning drops unpicklable hparams (lambdas) before fit
        self.optimizer_factory = optimizer
        self.encoder = encoder
        self.centers = nn.Parameter(torch.zeros(n_clusters, int(encoder.embedding_dim)))
        # Clustering state over the whole dataset, set at each refresh of P and kept in checkpoints.
        self.target: Tensor | None = None  # P, N x K (eq. 3)
        self.labels: Tensor | None = None  # hard assignments at the latest refresh
        self.delta_label = float("nan")  # fraction of labels changed by the latest refresh
        self.refresh_count = 0
        self.min_cluster_size = float("nan")  # smallest cluster's share of the samples at the latest refresh
        self._reported_small: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        self.scores: dict[str, float] = {}  # ACC/NMI/ARI of the final assignments, when labels exist
        self._resumed = False  # restored from a checkpoint: `pretrained` is not loaded

    clustering_term = "kl"  # the `loss_terms` entry that `clustering_weight` weighs

    @property
    def n_clusters(self) -> int:
        return self.centers.shape[0]

    def embed(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """Soft assignments Q (eq. 1) of a batch."""
        return soft_assignment(self.encoder(x), self.centers, self.hparams.alpha)

    def update_target(self, q: Tensor) -> None:
        """Set P from the soft assignments of the whole dataset and track label changes.

        P is computed in place: ``q``'s storage becomes ``target`` (pass a copy to keep Q), and
        the new labels overwrite the previous ones chunk by chunk, so a refresh holds one N x K
        array and one label array instead of Q, P, two label arrays and their temporaries, so
        memory per sample stays bounded for data larger than memory.
        """
        old = self.labels
        reuse = old is not None and old.shape == (len(q),) and old.dtype == torch.int32 and old.device == q.device
        # int32 (K < 2**31), filled chunk by chunk: no N x int64 argmax is ever held
        labels = old if reuse else torch.empty(len(q), dtype=torch.int32, device=q.device)
        changed = 0
        for start in range(0, len(q), _LABEL_CHUNK):
            new = q[start : start + _LABEL_CHUNK].argmax(dim=1)
            if reuse:
                changed += int((new != labels[start : start + _LABEL_CHUNK]).sum())
            labels[start : start + _LABEL_CHUNK] = new
        if reuse:  # as `label_change_fraction`'s float32 mean, so logged values and stopping match it
            self.delta_label = float(torch.tensor(float(changed)) / len(q)) if len(q) else 0.0
        elif old is not None:
            self.delta_label = label_change_fraction(labels, old.to(labels.device))
        self.labels = labels
        self.target = target_distribution(q.detach(), inplace=True)
        self.refresh_count += 1
        self._check_cluster_sizes(labels)

    def _check_cluster_sizes(self, labels: Tensor) -> None:
        """Record the smallest cluster's share and warn when clusters (nearly) empty out.

        An empty cluster's column of P is zero, so nothing pulls data back to its centre:
        it stays lost unless re-seeded (`CentroidReinit`). The warning is repeated only when
        the set of (near-)empty clusters changes, not at every refresh.
        """
        n, k = len(labels), self.n_clusters
        sizes = torch.bincount(labels, minlength=k)
        self.min_cluster_size = float(sizes.min()) / max(n, 1)
        empty = tuple(torch.nonzero(sizes == 0).flatten().tolist())
        threshold = self.hparams.near_empty_fraction * n / k
        small = tuple(torch.nonzero((sizes > 0) & (sizes < threshold)).flatten().tolist())
        if (empty, small) == self._reported_small:
            return
        self._reported_small = (empty, small)
        problems = []
        if empty:
            problems.append(f"{len(empty)} of {k} clusters are empty {list(empty)}")
        if small:
            listed = ", ".join(f"{j}: {int(sizes[j])}" for j in small)
            problems.append(
                f"{len(small)} of {k} clusters are near-empty (fewer than {self.hparams.near_empty_fraction:g} x N/K = "
                f"{threshold:.1f} samples; {listed})"
            )
        if problems:
            rank_zero_warn(
                f"DEC: after refresh {self.refresh_count} of P, " + " and ".join(problems) + "; the "
                "CentroidReinit callback re-seeds them, or try fewer clusters (model.n_clusters)"
            )

    def on_train_end(self) -> None:
        """Assign the whole dataset with the final model and score it against known labels.

        The pass returns only each row's argmax, not Q: N labels instead of N x K floats.
        """
        self.labels = None  # replaced below; not held twice at the peak
        self.labels, y = whole_dataset_pass(self.trainer, self, lambda x: self(x).argmax(dim=1).int())
        self.scores = clustering_scores(self.labels, y)
        if self.scores:
            for logger in self.trainer.loggers:
                logger.log_metrics({f"final/{k}": v for k, v in self.scores.items()}, step=self.trainer.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dec_state"] = {
            "target": self.target,
            "labels": self.labels,
            "delta_label": self.delta_label,
            "refresh_count": self.refresh_count,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed = True
        state = checkpoint.get("dec_state", {})
        self.target = state.get("target")
        self.labels = state.get("labels")
        self.delta_label = state.get("delta_label", float("nan"))
        self.refresh_count = state.get("refresh_count", 0)

    def setup(self, stage: str) -> None:
        """Check the data against the model before any work, so a mismatch is one clear error."""
        datamodule = getattr(self.trainer, "datamodule", None)
        check_model_fits_data(self.encoder, datamodule, self.n_clusters if stage == "fit" else None)

    def on_fit_start(self) -> None:
        """Load ``pretrained`` unless this fit resumes from a DEC checkpoint.

        Not in `setup`: Lightning tells a module that it resumes only after `setup`, by restoring
        the checkpoint (`on_load_checkpoint`), and before this hook. A resumed run thus needs
        neither the pretrained file nor its weights: the checkpoint holds the trained ones.
        """
        if self.hparams.pretrained and not self._resumed:
            load_encoder_weights(self.encoder, self.hparams.pretrained)
            if self.decoder is not None:
                load_encoder_weights(self.decoder, self.hparams.pretrained, prefix="decoder")

    def loss_terms(self, x: Tensor, index: Tensor) -> dict[str, Tensor]:
        """KL(P || Q) of the batch (DEC eq. 2, IDEC's L_c) and, with a decoder, the reconstruction MSE (IDEC's L_r).

        Batch means over the real samples of the global batch (`sample_weights`), so that DDP
        trains as one device; P's row of a padding entry (index -1) is looked up but weighs 0.
        """
        weights = sample_weights(self, index)
        z = self.encoder(x)
        kl = kl_per_sample(self.target[index], soft_assignment(z, self.centers, self.hparams.alpha))
        terms = {"kl": (kl * weights).sum()}
        if self.decoder is not None:
            terms["reconstruction"] = weighted_mse(self.decoder(z), x, weights)
        return terms

    def check_target(self) -> None:
        """P must exist, on this module's device, before a step looks up its rows."""
        if self.target is None:
            raise RuntimeError("DEC has no target distribution: add the TargetDistributionRefresh callback")
        if self.target.device != self.device:  # restored from a checkpoint on another device
            self.target = self.target.to(self.device)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _, index = batch
        self.check_target()
        if self.augment is not None:  # training batches only: whole-dataset passes call forward/embed
            x = self.augment(x)
        terms = self.loss_terms(x, index)
        hp = self.hparams
        clustering = terms[self.clustering_term]
        loss = hp.clustering_weight * clustering + hp.reconstruction_weight * terms.get("reconstruction", 0.0)
        self.log("cluster/loss", loss, prog_bar=True)
        for name, value in terms.items():
            self.log(f"cluster/{name}", value)
        return loss

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        x, y, index = batch
        with full_precision(self.device):  # final assignments in float32, as the whole-dataset passes
            q = self(x)
        return {"index": index, "q": q, "labels": q.argmax(dim=1), "y": y}

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.parameters())
