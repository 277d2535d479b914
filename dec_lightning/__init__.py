"""Deep Embedded Clustering (Xie et al., 2016) with PyTorch Lightning."""

from dec_lightning.encoders import MLPDecoder, MLPEncoder
from dec_lightning.modules import DEC, AutoencoderPretraining

__all__ = ["DEC", "AutoencoderPretraining", "MLPDecoder", "MLPEncoder"]
__version__ = "0.1.0"
