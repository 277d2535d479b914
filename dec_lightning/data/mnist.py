"""MNIST: the 70000 handwritten digits of the DEC paper's main benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.validation import MissingFileError


class MNISTDataModule(InMemoryDataModule):
    """torchvision MNIST, train (60000) and test (10000) concatenated: 70000 x 784.

    DEC clusters all 70000 images, so both splits are one dataset, train first. Pixels are
    divided by 255 to lie in [0, 1], as DEC-keras does (``x / 255.``); the original Caffe
    DEC used the same scale.

    Args:
        data_dir: torchvision root, the folder holding ``MNIST/raw/``.
        download: let `prepare_data` fetch the files with torchvision when they are missing.
        batch_size: samples per training batch (paper: 256).
        num_workers: loader worker processes.
    """

    name = "mnist"

    def __init__(
        self, data_dir: str | Path = "data", download: bool = False, batch_size: int = 256, num_workers: int = 0
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.data_dir = Path(data_dir)
        self.download = download

    @property
    def source(self) -> str:
        return f"MNIST in {self.data_dir}"

    def prepare_data(self) -> None:
        """Download with torchvision, only when asked: a missing dataset should not mean a surprise fetch."""
        if self.download:
            from torchvision.datasets import MNIST

            for train in (True, False):
                MNIST(self.data_dir, train=train, download=True)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from torchvision.datasets import MNIST

        parts = []
        for train in (True, False):
            try:
                parts.append(MNIST(self.data_dir, train=train, download=False))
            except RuntimeError:
                raise MissingFileError(
                    f"MNIST not found under {self.data_dir / 'MNIST' / 'raw'}; pass download=True "
                    "(--data.init_args.download true) to fetch it with torchvision, or point data_dir at "
                    "the folder that holds MNIST/raw/"
                ) from None
        x = np.concatenate([p.data.numpy().reshape(len(p.data), -1) for p in parts]).astype(np.float32) / 255.0
        y = np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64)
        return x, y
