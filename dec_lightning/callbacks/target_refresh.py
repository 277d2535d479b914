"""Recompute the target distribution P over the whole dataset every N steps (DEC sec. 3.1.3)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L

from dec_lightning.metrics.clustering import clustering_scores
from dec_lightning.modules.dataset_pass import whole_dataset_pass


class TargetDistributionRefresh(L.Callback):
    """Every ``update_interval`` optimizer steps, compute Q for all N samples and set P from it.

    P is held fixed between refreshes, which is what makes DEC's self-training stable.
    Each refresh logs ``cluster/delta_label``, ``cluster/min_size`` (the smallest cluster's
    share of the samples) and, when the data has labels,
    ``cluster/acc``, ``cluster/nmi`` and ``cluster/ari`` (the refresh at step 0 scores the
    k-means initialisation). P is also refreshed at once when it is stale, e.g. after
    `CentroidReinit` moved the centres. With gradient accumulation an optimizer step spans
    several batches; P is refreshed once per step, at its first batch, so that the next
    refresh sees a model that has moved (refreshing on every batch of a step would compare
    P with itself and stop `ToleranceStopping` at once).

    Args:
        update_interval: steps between refreshes (paper: 140 for MNIST; DEC-keras: 140).
    """

    def __init__(self, update_interval: int = 140) -> None:
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        self.update_interval = update_interval
        self.refreshed_step = -1  # optimizer step of the latest scheduled refresh

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        due = step % self.update_interval == 0 and step != self.refreshed_step
        if due or pl_module.target is None:
            self.refresh(trainer, pl_module)
            self.refreshed_step = step

    def state_dict(self) -> dict[str, Any]:
        return {"refreshed_step": self.refreshed_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.refreshed_step = state_dict.get("refreshed_step", -1)

    def refresh(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.target = None  # the old P is not needed to compute the new one: free it before the pass
        q, y = whole_dataset_pass(trainer, pl_module, pl_module.forward)
        pl_module.update_target(q)
        metrics = {"cluster/delta_label": pl_module.delta_label, "cluster/min_size": pl_module.min_cluster_size}
        metrics.update({f"cluster/{name}": value for name, value in clustering_scores(pl_module.labels, y).items()})
        for name, value in metrics.items():
            # logger=False: Lightning writes a value logged in a batch hook only every log_every_n_steps
            # (a refresh step rarely is one) and repeats it until the epoch ends; the loggers get
            # exactly one point per refresh, at its step, below
            pl_module.log(name, value, prog_bar=name == "cluster/acc", logger=False)
        finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
        for logger in trainer.loggers:
            logger.log_metrics(finite, step=trainer.global_step)
