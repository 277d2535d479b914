"""Initialise DEC's cluster centres by k-means on the pretrained embedding (DEC sec. 3.3), or by a graph start."""

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
        max_samples: above this many samples, k-means runs on a uniform random sample of this
            size (drawn with the k-means seed), so its memory and time stay bounded for data
            larger than memory (`kmeans_on_embedding`); None: always all samples. The default
            leaves every data set up to a million samples (all benchmarks here) untouched.
        micro_clusters: None (the paper): k-means. A number: spectral clustering of the
            embedding's nearest-neighbour graph coarsened into that many micro-clusters
            (`graph_spectral_labels`), which keeps touching clusters apart where k-means merges
            them; the centres are its groups' means. Costs a k-nearest-neighbour search of the
            embedded samples (30-40 s for MNIST's 70000 on one CPU thread). ``n_init`` is then unused:
            the over-clustering runs `graph_start.MICRO_N_INIT` restarts.
        n_neighbors: neighbours per sample in that graph.
        size_cap: None, or (with ``micro_clusters``) the largest graph group allowed, in multiples
            of the mean size: a larger group is cut in two and the two groups the graph least
            wants apart merge (`graph_spectral_labels`); rejoins a class the graph split while
            touching classes stay apart. A prior of classes of similar size
            (benchmarks/results/graph_size_cap_cpu.md).
    """

    def __init__(
        self,
        n_init: int = 20,
        seed: int | None = None,
        max_samples: int | None = 1_000_000,
        micro_clusters: int | None = None,
        n_neighbors: int = 10,
        size_cap: float | None = None,
    ) -> None:
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
        if micro_clusters is not None and micro_clusters < 2:
            raise ValueError(f"micro_clusters must be >= 2 or None, got {micro_clusters}")
        if micro_clusters is None and size_cap is not None:
            raise ValueError("size_cap shapes the graph start: it needs micro_clusters")
        if size_cap is not None and size_cap < 1:
            raise ValueError(f"size_cap must be >= 1 (the mean group size) or None, got {size_cap}")
        self.n_init = n_init
        self.seed = seed
        self.max_samples = max_samples
        self.micro_clusters = micro_clusters
        self.n_neighbors = n_neighbors
        self.size_cap = size_cap
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
            micro_clusters=self.micro_clusters,
            n_neighbors=self.n_neighbors,
            size_cap=self.size_cap,
        )
        pl_module.centers.data.copy_(centers)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = state_dict["done"]
