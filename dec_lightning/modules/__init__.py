"""The LightningModules: autoencoder pretraining, DEC clustering and its Deep k-Means sibling."""

from dec_lightning.modules.assignment import kl_divergence, soft_assignment, target_distribution
from dec_lightning.modules.dataset_pass import whole_dataset_pass
from dec_lightning.modules.dec import DEC, load_encoder_weights
from dec_lightning.modules.dkm import DKM
from dec_lightning.modules.pretrain import AutoencoderPretraining

__all__ = [
    "DEC",
    "DKM",
    "AutoencoderPretraining",
    "kl_divergence",
    "load_encoder_weights",
    "soft_assignment",
    "target_distribution",
    "whole_dataset_pass",
]
