"""The DEC clustering stage: encoder + cluster centres trained on KL(P || Q) (Xie et al., 2016)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from dec_lightning.metrics.clustering import clustering_scores, label_change_fraction
from dec_lightning.modules.assignment import kl_divergence, soft_assignment, target_distribution
from dec_lightning.modules.dataset_pass import whole_dataset_pass
from dec_lightning.modules.optim import dec_sgd


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load pretrained encoder weights from a pretraining checkpoint or an encoder state file.

    A Lightning checkpoint of `AutoencoderPretraining` holds them under ``encoder.*``;
    a plain file is the encoder's own ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder not found: {path} (run `dec-lightning pretrain` first)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        state = {k.removeprefix("encoder."): v for k, v in state["state_dict"].items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the configured encoder (model.encoder): {err}") from None


class DEC(L.LightningModule):
    """Deep Embedded Clustering: refines a pretrained encoder and K centres jointly.

    Each step looks up its samples' rows of the target distribution P by dataset index
    and minimises KL(P || Q) (eq. 2). P itself is computed over the whole dataset by the
    `TargetDistributionRefresh` callback, and the centres start from `KMeansInit`: the
    module holds the model, the callbacks hold the schedule.

    Args:
        encoder: any module mapping x -> z with an ``embedding_dim`` attribute.
        n_clusters: number of clusters K.
        alpha: degrees of freedom of the Student's t kernel (eq. 1; paper: 1).
        pretrained: pretraining checkpoint or encoder state file loaded before clustering
            (skipped when resuming from a DEC checkpoint).
        optimizer: builds the optimizer from the parameters (default: SGD lr 0.01, momentum 0.9).
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_clusters: int = 10,
        alpha: float = 1.0,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = dec_sgd,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        if isinstance(self.hparams.get("encoder"), nn.Module):
            # Built in Python rather than from a config: not serialisable as a hyperparameter,
            # so `DEC.load_from_checkpoint(path, encoder=...)` must be given one.
            self.hparams.pop("encoder")
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
        if not hasattr(encoder, "embedding_dim"):
            raise ValueError(f"{type(encoder).__name__} needs an `embedding_dim` attribute to be used by DEC")
        # kept as an attribute: Lightning drops unpicklable hparams (lambdas) before fit
        self.optimizer_factory = optimizer
        self.encoder = encoder
        self.centers = nn.Parameter(torch.zeros(n_clusters, int(encoder.embedding_dim)))
        # Clustering state over the whole dataset, set at each refresh of P and kept in checkpoints.
        self.target: Tensor | None = None  # P, N x K (eq. 3)
        self.labels: Tensor | None = None  # hard assignments at the latest refresh
        self.delta_label = float("nan")  # fraction of labels changed by the latest refresh
        self.refresh_count = 0
        self.scores: dict[str, float] = {}  # ACC/NMI/ARI of the final assignments, when labels exist

    @property
    def n_clusters(self) -> int:
        return self.centers.shape[0]

    def embed(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """Soft assignments Q (eq. 1) of a batch."""
        return soft_assignment(self.encoder(x), self.centers, self.hparams.alpha)

    def update_target(self, q: Tensor) -> None:
        """Set P from the soft assignments of the whole dataset and track label changes."""
        labels = q.argmax(dim=1)
        if self.labels is not None:
            self.delta_label = label_change_fraction(labels, self.labels.to(labels.device))
        self.target = target_distribution(q)
        self.labels = labels
        self.refresh_count += 1
        sizes = torch.bincount(labels, minlength=self.n_clusters)
        if (sizes == 0).any():
            rank_zero_warn(
                f"DEC: {int((sizes == 0).sum())} of {self.n_clusters} clusters are empty after refresh "
                f"{self.refresh_count}; CentroidReinit can recover them"
            )

    def on_train_end(self) -> None:
        """Assign the whole dataset with the final model and score it against known labels."""
        q, y = whole_dataset_pass(self.trainer, self, self.forward)
        self.labels = q.argmax(dim=1)
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
        state = checkpoint.get("dec_state", {})
        self.target = state.get("target")
        self.labels = state.get("labels")
        self.delta_label = state.get("delta_label", float("nan"))
        self.refresh_count = state.get("refresh_count", 0)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_dim = getattr(datamodule, "input_dim", None)
        encoder_dim = getattr(self.encoder, "input_dim", None)
        if data_dim is not None and encoder_dim is not None and data_dim != encoder_dim:
            raise ValueError(
                f"the data has {data_dim} features but the encoder expects {encoder_dim}; "
                f"set the encoder's input size (encoder.init_args.dims[0] in the config) to {data_dim}"
            )
        if stage == "fit" and self.hparams.pretrained and self.trainer.ckpt_path is None:
            load_encoder_weights(self.encoder, self.hparams.pretrained)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _, index = batch
        if self.target is None:
            raise RuntimeError("DEC has no target distribution: add the TargetDistributionRefresh callback")
        if self.target.device != self.device:  # restored from a checkpoint on another device
            self.target = self.target.to(self.device)
        loss = kl_divergence(self.target[index], self(x))
        self.log("cluster/loss", loss, prog_bar=True)
        return loss

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        x, _, index = batch
        q = self(x)
        return {"index": index, "q": q, "labels": q.argmax(dim=1)}

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.parameters())
