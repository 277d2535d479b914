"""Clustering metrics."""

from dec_lightning.metrics.clustering import cluster_accuracy, clustering_scores, label_change_fraction

__all__ = ["cluster_accuracy", "clustering_scores", "label_change_fraction"]
