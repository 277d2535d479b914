"""Initialise DEC's cluster centres by k-means on the pretrained embedding (DEC sec. 3.3), or by a graph start."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L

from dec_lightning.callbacks.graph_start import GRAPH_SAMPLES
from dec_lightning.callbacks.kmeans import kmeans_on_embedding


class KMeansInit(L.Callback):
    """At the start of clustering, set the centres to k-means centres of the embedded train set.

    Runs once per run: the flag is saved in checkpoints, so a resumed run keeps its centres.

    Args:
        n_init: k-means restarts; the best inertia wins (paper: 20).
        seed: k-means seed; default: derived from the run's seed.
        max_samples: above this many samples, k-means runs on a uniform random sample of this
            size (drawn with the k-means seed), so its memory and time stay bounded for data
            larger than memory (`kmeans_on_embedding`); None: always all samples.
        init: ``"graph"`` (default): spectral clustering of the embedding's nearest-neighbour graph
            coarsened into ``micro_clusters`` k-means micro-clusters (`graph_spectral_labels`),
            which keeps touching clusters apart where k-means merges them; the centres are its
            groups' means. Where the graph gives no trustworthy start (unconnected parts, an empty
            or tiny group, too few samples) the run falls back to k-means with one warning.
            ``"kmeans"``: the paper's start (DEC sec. 3.3).
        micro_clusters: micro-clusters of the graph start (at most a fifth of the samples).
        n_neighbors: neighbours per sample in that graph. Both defaults were chosen on selection data
            only (digits, synthetic and small tabular sets; docs/graph_start.md), never on MNIST, USPS or Reuters.
        graph_samples: rows the graph start's micro-clusters and neighbour graph are built from (a
            uniform sample; every row then takes its nearest micro-centre), which bounds its time
            on rank 0 while the other ranks wait in a broadcast; None: all rows.
    """

    def __init__(
        self,
        n_init: int = 20,
        seed: int | None = None,
        max_samples: int | None = 1_000_000,
        init: Literal["kmeans", "graph"] = "graph",
        micro_clusters: int = 100,
        n_neighbors: int = 20,
        graph_samples: int | None = GRAPH_SAMPLES,
    ) -> None:
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
        if init not in ("kmeans", "graph"):
            raise ValueError(f"init must be 'kmeans' or 'graph', got {init!r}")
        if micro_clusters < 2:
            raise ValueError(f"micro_clusters must be >= 2, got {micro_clusters}")
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        if graph_samples is not None and graph_samples < 1:
            raise ValueError(f"graph_samples must be >= 1 or None, got {graph_samples}")
        self.n_init = n_init
        self.seed = seed
        self.max_samples = max_samples
        self.init = init
        self.micro_clusters = micro_clusters
        self.n_neighbors = n_neighbors
        self.graph_samples = graph_samples
        self.done = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            return
        centers, _ = kmeans_on_embedding(
            trainer,
            pl_module,
            self.n_init,
            self.seed,
            max_samples=self.max_samples,
            with_labels=False,
            init=self.init,
            micro_clusters=self.micro_clusters,
            n_neighbors=self.n_neighbors,
            graph_samples=self.graph_samples,
        )
        pl_module.centers.data.copy_(centers)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = state_dict["done"]
