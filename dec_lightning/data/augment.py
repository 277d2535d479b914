"""Random small shifts and rotations of flat image vectors, for training batches only (DEC-DA)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomShiftRotate(nn.Module):
    """Randomly rotate and translate each image of a batch of flat vectors.

    DEC-DA (Guo et al., 2018) trains the autoencoder and the clustering stage on augmented
    samples (Keras ``rotation_range=10, width/height_shift_range=0.1``, the defaults here)
    while the target distribution P and k-means use the clean data. The modules apply this
    to the batch in ``training_step`` only, on the batch's device; `whole_dataset_pass`
    calls ``forward``/``embed`` on the dataset directly, so P, k-means and the final
    assignments always see clean data. Draws from torch's global RNG, which
    `seed_everything` seeds. Has no parameters or state.

    Args:
        image_shape: ``(channels, height, width)`` of one flat sample.
        max_rotation: largest rotation in degrees, drawn uniformly in ``[-max, max]``.
        max_shift: largest translation as a fraction of the image size, per axis.
        padding_mode: how pixels shifted in from outside are filled (``grid_sample``):
            "zeros" suits digits on a zero background; "border" repeats the edge pixels.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        max_rotation: float = 10.0,
        max_shift: float = 0.1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3 or any(s < 1 for s in self.image_shape):
            raise ValueError(f"image_shape must be (channels, height, width), got {self.image_shape}")
        if max_rotation < 0 or not 0 <= max_shift < 1:
            raise ValueError(f"need max_rotation >= 0 and 0 <= max_shift < 1, got {max_rotation}, {max_shift}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be zeros, border or reflection, got {padding_mode!r}")
        self.max_rotation = float(max_rotation)
        self.max_shift = float(max_shift)
        self.padding_mode = padding_mode
        self.input_dim = math.prod(self.image_shape)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"samples have {x.shape[-1]} features but image_shape {self.image_shape} needs {self.input_dim}"
            )
        n = x.shape[0]
        angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(self.max_rotation)
        # grid_sample's coordinates span [-1, 1], so a shift of s * size pixels is 2 * s there
        shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * 2 * self.max_shift
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        images = x.reshape(n, *self.image_shape)
        grid = F.affine_grid(theta.to(x.dtype), list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, padding_mode=self.padding_mode, align_corners=False)
        return out.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, max_rotation={self.max_rotation}, max_shift={self.max_shift}"
