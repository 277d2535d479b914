"""Initialise DEC's cluster centres by k-means on the pretrained embedding (DEC sec. 3.3)."""

from __future__ import annotations

from typing import Any

import lightning as L

from dec_lightning.callbacks.kmeans import kmeans_on_embedding


class KMeansInit(L.Callback):
    """At the start of clustering, set the centres to k-means centres of the embedded train set.

    Runs once per run: the flag is saved in checkpoints, so a resumed run keeps its centres.

    Args:
        n_init: k-means restarts; the best inertia wins (paper: 20).
        seed: k-means seed; default: derived from the run's seed.
    """

    def __init__(self, n_init: int = 20, seed: int | None = None) -> None:
        self.n_init = n_init
        self.seed = seed
        self.done = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            return
        centers, _ = kmeans_on_embedding(trainer, pl_module, self.n_init, self.seed)
        pl_module.centers.data.copy_(centers)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = state_dict["done"]
