"""Per-epoch centroid re-initialisation by k-means on the current embedding (Roy 2024, arXiv 2411.19496)."""

from __future__ import annotations

import lightning as L

from dec_lightning.callbacks.kmeans import kmeans_on_embedding, match_clusters


class CentroidReinit(L.Callback):
    """At the start of every epoch after the first, replace the centres by fresh k-means centres.

    DEC's centres can drift into poor optima as the embedding changes; re-running k-means
    on the current embedding re-anchors them. The new clusters are renumbered to agree
    best with the current labels (Hungarian matching), so cluster ids, P's columns and the
    label-change statistic stay meaningful; P is then recomputed at the next step.
    Empty clusters come back too, since k-means places every centre on data.

    Args:
        n_init: k-means restarts per re-initialisation.
        seed: k-means seed; default: derived from the run's seed.
    """

    def __init__(self, n_init: int = 20, seed: int | None = None) -> None:
        self.n_init = n_init
        self.seed = seed
        self.reinit_count = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0 or pl_module.labels is None:
            return
        centers, labels = kmeans_on_embedding(trainer, pl_module, self.n_init, self.seed)
        perm = match_clusters(labels, pl_module.labels, pl_module.n_clusters)
        reordered = centers.clone()
        reordered[perm] = centers
        pl_module.centers.data.copy_(reordered)
        pl_module.target = None  # stale: TargetDistributionRefresh recomputes it before the next step
        self.reinit_count += 1
