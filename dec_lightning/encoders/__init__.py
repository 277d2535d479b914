"""Plain `nn.Module` encoders and decoders; the LightningModules receive them by config."""

from dec_lightning.encoders.conv import ConvDecoder, ConvEncoder
from dec_lightning.encoders.mlp import MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
