"""scikit-learn's bundled 8x8 digits: the default dataset, no download needed."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from dec_lightning.data.base import InMemoryDataModule


class DigitsDataModule(InMemoryDataModule):
    """1797 handwritten digits, 64 features scaled from 0..16 to [0, 1], 10 classes."""

    name = "digits"

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        digits = load_digits()
        return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
