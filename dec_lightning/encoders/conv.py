"""Convolutional autoencoder for images given as flat vectors (DCEC / DEC-DA style, 32-64-128 conv)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

CONV_CHANNELS = (32, 64, 128)
CONV_KERNELS = (5, 5, 3)


def _validate(image_shape: Sequence[int], channels: Sequence[int], kernels: Sequence[int]) -> tuple:
    image_shape = tuple(int(s) for s in image_shape)
    channels, kernels = [int(c) for c in channels], [int(k) for k in kernels]
    if len(image_shape) != 3 or any(s < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape}")
    if not channels or len(channels) != len(kernels) or any(v < 1 for v in (*channels, *kernels)):
        raise ValueError(f"channels and kernels need the same, positive, non-zero lengths; got {channels}, {kernels}")
    return image_shape, channels, kernels


def conv_sizes(image_shape: Sequence[int], kernels: Sequence[int]) -> list[tuple[int, int]]:
    """Spatial size ``(h, w)`` before each stride-2 conv and after the last one.

    Every conv has padding ``k // 2``; the decoder needs these sizes to undo each conv exactly
    (a stride-2 conv maps 7 and 8 pixels alike to 4, so the inverse is ambiguous without them).
    """
    h, w = image_shape[1], image_shape[2]
    sizes = [(h, w)]
    for k in kernels:
        h, w = ((s + 2 * (k // 2) - k) // 2 + 1 for s in (h, w))
        sizes.append((h, w))
    return sizes


class ConvEncoder(nn.Module):
    """Flat image x -> z: stride-2 convolutions (ReLU) then a linear embedding layer.

    Takes flat vectors of ``prod(image_shape)`` features, so the same DataModules (and the
    same ``(x, y, index)`` batches) serve MLP and conv encoders; it reshapes internally.
    Satisfies the encoder contract of `DEC`: ``embedding_dim`` and ``input_dim`` attributes.
    The default 32-64-128 channels with 5-5-3 kernels and a 10-d embedding follow the CAE of
    DCEC (Guo et al., 2017) and DEC-DA (Guo et al., 2018); unlike theirs, every conv here is
    padded (28 -> 14 -> 7 -> 4 rather than ... -> 3), so any image size works unchanged.

    Args:
        image_shape: ``(channels, height, width)`` of one image, e.g. (1, 28, 28) for MNIST.
        channels: output channels of each conv layer.
        kernels: kernel size of each conv layer (stride 2, padding ``k // 2``).
        embedding_dim: size of z.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = CONV_CHANNELS,
        kernels: Sequence[int] = CONV_KERNELS,
        embedding_dim: int = 10,
    ) -> None:
        super().__init__()
        self.image_shape, self.channels, self.kernels = _validate(image_shape, channels, kernels)
        self.input_dim = math.prod(self.image_shape)
        self.embedding_dim = int(embedding_dim)
        h, w = conv_sizes(self.image_shape, self.kernels)[-1]
        layers: list[nn.Module] = []
        c_in = self.image_shape[0]
        for c, k in zip(self.channels, self.kernels, strict=True):
            layers += [nn.Conv2d(c_in, c, k, stride=2, padding=k // 2), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.embedding = nn.Linear(c_in * h * w, self.embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(x.reshape(-1, *self.image_shape))
        return self.embedding(h.flatten(1))


class ConvDecoder(nn.Module):
    """z -> flat x̂, the mirror of a `ConvEncoder` with the same arguments; the output layer is linear.

    Each transposed conv restores exactly the spatial size its encoder conv received
    (``output_padding`` is computed from `conv_sizes`), so odd sizes such as 7x7 round-trip.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = CONV_CHANNELS,
        kernels: Sequence[int] = CONV_KERNELS,
        embedding_dim: int = 10,
    ) -> None:
        super().__init__()
        self.image_shape, self.channels, self.kernels = _validate(image_shape, channels, kernels)
        self.input_dim = math.prod(self.image_shape)  # what it reconstructs
        self.embedding_dim = int(embedding_dim)
        sizes = conv_sizes(self.image_shape, self.kernels)
        self.bottleneck = (self.channels[-1], *sizes[-1])
        self.expand = nn.Linear(self.embedding_dim, math.prod(self.bottleneck))
        layers: list[nn.Module] = []
        outs = [self.image_shape[0], *self.channels[:-1]]  # channels each deconv produces
        for i in reversed(range(len(self.kernels))):
            k = self.kernels[i]
            (h_in, w_in), (h_out, w_out) = sizes[i + 1], sizes[i]
            # ConvTranspose2d: out = (in - 1) * 2 - 2 * (k // 2) + k + output_padding
            pad = tuple(o - ((s - 1) * 2 - 2 * (k // 2) + k) for o, s in ((h_out, h_in), (w_out, w_in)))
            layers.append(nn.ConvTranspose2d(self.channels[i], outs[i], k, 2, k // 2, output_padding=pad))
            if i > 0:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.expand(z).relu().reshape(-1, *self.bottleneck)
        return self.deconvs(h).flatten(1)
