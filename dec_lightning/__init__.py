"""Deep Embedded Clustering (Xie et al., 2016) with PyTorch Lightning.

``dec_lightning.DEC`` is the scikit-learn style estimator; the clustering LightningModule
it trains is ``dec_lightning.DECModule`` (also ``dec_lightning.modules.DEC``); ``dec_lightning.DKM``
is its Deep k-Means sibling (``dec_lightning.modules.DKM``).
"""

from dec_lightning.encoders import MLPDecoder, MLPEncoder
from dec_lightning.estimator import DEC
from dec_lightning.modules import DEC as DECModule
from dec_lightning.modules import DKM, AutoencoderPretraining

__all__ = ["DEC", "DKM", "AutoencoderPretraining", "DECModule", "MLPDecoder", "MLPEncoder"]
__version__ = "0.1.0"
