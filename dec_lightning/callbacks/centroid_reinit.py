"""Re-clustering during training: per-epoch k-means re-init, Roy's alternation (2024) and BRB (ICLR 2025)."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch

from dec_lightning.callbacks.kmeans import kmeans_on_embedding, match_clusters
from dec_lightning.callbacks.soft_reset import soft_reset

Mode = Literal["reinit", "roy", "brb"]
_DEFAULT_INTERVAL = {"reinit": 1, "roy": 1, "brb": 20}


class CentroidReinit(L.Callback):
    """Replace the centres by k-means centres of the current embedding, on one of three schedules.

    Every re-clustering renumbers the new clusters to agree best with the current labels
    (Hungarian matching), so cluster ids, P's columns and the label-change statistic stay
    meaningful, and marks P stale (`TargetDistributionRefresh` recomputes it before the next
    step; `DKM` needs none). Empty clusters come back too, since k-means places every centre on data.
    k-means runs on rank 0 and is broadcast (`kmeans_on_embedding`), so all DDP ranks agree.

    Modes:
        ``"reinit"``: at the start of every ``interval``-th epoch after the first. DEC's centres
            can drift into poor optima as the embedding changes; k-means re-anchors them.
        ``"roy"``: Roy (2024), "An Approach Towards Learning K-means-friendly Deep Latent
            Representation", arXiv 2411.19496 (ICPR 2024): the centres are frozen during each epoch
            (no gradient step moves them; ``requires_grad`` is off for the fit) and replaced at the
            end of every ``interval``-th epoch by k-means on the whole embedding: representation
            learning with DKM's softmax k-means loss alternates with classical k-means, instead of
            moving the centres with every batch (paper abstract; the re-init "after each epoch").
            The paper's lambda, alpha and epoch counts could not be found in the sources searched,
            so use `DKM`'s defaults (lambda 1, alpha 1000).
        ``"brb"``: Breaking the Reclustering Barrier (Miklautz et al., ICLR 2025): at the start of
            every ``interval``-th epoch after the first (reference ``dec_module.py`` L422:
            ``epoch_i != 0 and epoch_i % reset_interval == 0``), (1) soft-reset every encoder layer
            but the embedding layer towards a fresh draw (`soft_reset`, factor ``reset_factor``),
            (2) re-cluster the new embedding with k-means, (3) clear the optimizer state of the
            centres (``reset_momentum``), in the reference's order (``brb_reclustering.py``
            L162-210). Defaults T = 20 epochs and a = 0.8: the reference README's values for the
            feed-forward autoencoder (also ``config/autoencoder/baseline_comp.py`` L58-59).
            Differences: the reference re-clusters a 10,000-sample subsample without matching
            (``brb_config.py`` L57, ``_clustering_utils.py`` L237); here the whole embedding, matched.
            The reference zeroes Adam's moments of the centres but keeps its step count
            (L52-61, ``reset_momentum_counts=False``); here the centres' state is removed, which
            equals its ``reset_momentum_counts=True`` and also clears SGD momentum buffers.

    Under DDP every rank applies the identical reset: the fresh weights are drawn on the CPU from
    a generator seeded with ``reset_seed_base + reset_count``, the base taken from rank 0.

    Args:
        n_init: k-means restarts per re-clustering.
        seed: k-means seed and the base seed of BRB's fresh weights; default: derived from the
            run's seed (`seed_everything`).
        mode: ``"reinit"``, ``"roy"`` or ``"brb"`` (see above).
        interval: epochs between re-clusterings; default 1 for ``"reinit"`` and ``"roy"``, 20 for ``"brb"``.
        reset_factor: BRB's interpolation factor a (1 keeps the weights, 0 re-draws them).
        reset_momentum: BRB: clear the centres' optimizer state after re-clustering.
    """

    def __init__(
        self,
        n_init: int = 20,
        seed: int | None = None,
        mode: Mode = "reinit",
        interval: int | None = None,
        reset_factor: float = 0.8,
        reset_momentum: bool = True,
    ) -> None:
        if mode not in _DEFAULT_INTERVAL:
            raise ValueError(f"mode must be one of {sorted(_DEFAULT_INTERVAL)}, got {mode!r}")
        interval = _DEFAULT_INTERVAL[mode] if interval is None else interval
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if not 0 <= reset_factor <= 1:
            raise ValueError(f"reset_factor must be in [0, 1], got {reset_factor}")
        self.n_init = n_init
        self.seed = seed
        self.mode = mode
        self.interval = interval
        self.reset_factor = reset_factor
        self.reset_momentum = reset_momentum
        self.reinit_count = 0  # re-clusterings so far
        self.reset_count = 0  # BRB soft resets so far
        self.last_reset_seed: int | None = None
        self.last_reset_layers: list[str] = []
        self._centers_required_grad: bool | None = None

    # --- Roy: centres frozen for the whole fit -------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before DDP wraps the module, so DDP never expects a gradient for the centres
        if self.mode == "roy" and stage == "fit":
            self._centers_required_grad = pl_module.centers.requires_grad
            pl_module.centers.requires_grad_(False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._centers_required_grad is not None:
            pl_module.centers.requires_grad_(self._centers_required_grad)
            self._centers_required_grad = None

    # --- schedules -----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.mode == "roy" or epoch == 0 or epoch % self.interval != 0:
            return
        if self.mode == "brb":
            self.soft_reset(trainer, pl_module)
        self.recluster(trainer, pl_module)
        if self.mode == "brb" and self.reset_momentum:
            self.clear_center_state(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.mode == "roy" and (trainer.current_epoch + 1) % self.interval == 0:
            self.recluster(trainer, pl_module)

    # --- the steps -----------------------------------------------------------------------------
    def recluster(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Set the centres to k-means centres of the whole embedding, numbered to match the current labels."""
        centers, labels = kmeans_on_embedding(trainer, pl_module, self.n_init, self.seed)
        if pl_module.labels is not None:
            perm = match_clusters(labels, pl_module.labels, pl_module.n_clusters)
            reordered = centers.clone()
            reordered[perm] = centers
            centers = reordered
        pl_module.centers.data.copy_(centers)
        pl_module.target = None  # stale: TargetDistributionRefresh recomputes it before the next step
        self.reinit_count += 1

    def soft_reset(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """BRB step 1: soft-reset the encoder with a seed that is the same on every rank."""
        base = self.seed if self.seed is not None else torch.initial_seed()
        seed = int(trainer.strategy.broadcast(base, src=0)) + self.reset_count
        self.last_reset_layers = soft_reset(pl_module.encoder, self.reset_factor, seed)
        self.last_reset_seed = seed
        self.reset_count += 1

    @staticmethod
    def clear_center_state(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """BRB step 3: forget the centres' momentum, so that they do not carry on towards the old solution."""
        for optimizer in trainer.optimizers:
            optimizer.state.pop(pl_module.centers, None)

    # --- resuming ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # the next soft reset's seed depends on reset_count: a resumed run draws what it would have
        return {"reinit_count": self.reinit_count, "reset_count": self.reset_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reinit_count = state_dict.get("reinit_count", 0)
        self.reset_count = state_dict.get("reset_count", 0)
