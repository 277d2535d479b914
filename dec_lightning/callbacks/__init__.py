"""Callbacks that schedule DEC's whole-dataset work (init, target refresh, stopping, re-init) and report on it."""

from dec_lightning.callbacks.centroid_reinit import CentroidReinit
from dec_lightning.callbacks.flush_denormals import FlushDenormals
from dec_lightning.callbacks.kmeans_init import KMeansInit
from dec_lightning.callbacks.phase_progress import PhaseProgress
from dec_lightning.callbacks.run_summary import RunSummary
from dec_lightning.callbacks.target_refresh import TargetDistributionRefresh
from dec_lightning.callbacks.tensorboard_views import TensorBoardViews
from dec_lightning.callbacks.tolerance_stopping import ToleranceStopping

__all__ = [
    "CentroidReinit",
    "FlushDenormals",
    "KMeansInit",
    "PhaseProgress",
    "RunSummary",
    "TargetDistributionRefresh",
    "TensorBoardViews",
    "ToleranceStopping",
]
