"""The fully connected stacked autoencoder of the DEC paper (d-500-500-2000-10)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from torch import Tensor, nn

from dec_lightning.data.validation import ConfigError

DEC_HIDDEN_DIMS = (500, 500, 2000, 10)

Init = Literal["pytorch", "glorot_uniform"]


def initialize(layers: nn.ModuleList, init: Init) -> None:
    """Set the Linear layers' starting weights; the start of the embedding decides much of DEC's result.

    ``"pytorch"``: `nn.Linear`'s own, weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (DEC-keras'
    MNIST pretraining uses this fan-in uniform init too, with SGD lr 1 for 300 epochs).
    ``"glorot_uniform"``: Keras' default, weights U(-l, l) with l = sqrt(6 / (fan_in + fan_out))
    (Glorot & Bengio 2010, eq. 16) and zero biases, offered to match DEC-keras. The default stays
    PyTorch's: neither is better for DEC in principle, and docs/results.md compares the two.
    """
    if init == "pytorch":
        return  # nn.Linear initialised itself
    if init != "glorot_uniform":
        raise ValueError(f"init must be 'pytorch' or 'glorot_uniform', got {init!r}")
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)


def _validate_dims(dims: Sequence[int]) -> list[int]:
    dims = [int(d) for d in dims]
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ValueError(f"dims must list at least two positive layer sizes, got {dims}")
    return dims


class MLPEncoder(nn.Module):
    """x -> z through Linear layers; ReLU after each except the embedding layer (linear).

    The encoder contract that `DEC` relies on is small: ``forward(x) -> z`` with ``z`` of
    shape ``(batch, embedding_dim)``, and an ``embedding_dim`` attribute. ``input_dim`` is
    optional but lets a mismatch with the data be reported before training starts.

    Args:
        dims: layer sizes from the input to the embedding, e.g. ``[784, 500, 500, 2000, 10]``.
        init: starting weights, ``"pytorch"`` (default) or ``"glorot_uniform"`` (`initialize`);
            the mirror decoder (`mirror_decoder`) starts the same way.
    """

    def __init__(self, dims: Sequence[int] = (784, *DEC_HIDDEN_DIMS), init: Init = "pytorch") -> None:
        super().__init__()
        self.dims = _validate_dims(dims)
        self.init = init
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(self.dims))
        initialize(self.layers, init)
        self.input_dim = self.dims[0]
        self.embedding_dim = self.dims[-1]

    def layer(self, k: int, h: Tensor) -> Tensor:
        """Layer k with its activation: ReLU except on the embedding layer (paper, sec. 3.2)."""
        h = self.layers[k](h)
        return h if k == len(self.layers) - 1 else h.relu()

    def forward(self, x: Tensor) -> Tensor:
        for k in range(len(self.layers)):
            x = self.layer(k, x)
        return x


class MLPDecoder(nn.Module):
    """z -> x̂, the mirror of an `MLPEncoder`; the reconstruction layer is linear.

    Layer k of the decoder undoes layer k of the encoder, so the greedy layer-wise
    phase can pair them up: ``decoder.layer(k, encoder.layer(k, h)) ≈ h``.
    """

    def __init__(self, dims: Sequence[int] = (784, *DEC_HIDDEN_DIMS), init: Init = "pytorch") -> None:
        super().__init__()
        self.dims = _validate_dims(dims)
        # layers[k] maps dims[k+1] -> dims[k]; applied in reverse order in forward.
        self.layers = nn.ModuleList(nn.Linear(b, a) for a, b in pairwise(self.dims))
        initialize(self.layers, init)

    def layer(self, k: int, h: Tensor) -> Tensor:
        """Layer k with its activation: linear for the reconstruction (k = 0), ReLU otherwise."""
        h = self.layers[k](h)
        return h if k == 0 else h.relu()

    def forward(self, z: Tensor) -> Tensor:
        for k in reversed(range(len(self.layers))):
            z = self.layer(k, z)
        return z


def mirror_decoder(encoder: nn.Module) -> MLPDecoder:
    """The decoder an `MLPEncoder` implies; other encoders need one given (config key ``decoder``)."""
    if not isinstance(encoder, MLPEncoder):
        raise ConfigError(f"{type(encoder).__name__} needs a decoder: set `decoder` in the config")
    return MLPDecoder(encoder.dims, init=encoder.init)
