"""Shared DataModule for datasets that fit in memory."""

from __future__ import annotations

import lightning as L
import numpy as np
import scipy.sparse as sp
from torch.utils.data import DataLoader

from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import validate_arrays


class InMemoryDataModule(L.LightningDataModule):
    """Loads ``(x, y)`` once in `setup` and serves it as `IndexedDataset` batches.

    DEC clusters the training set itself, so there is one dataset: ``train_dataloader``
    shuffles it, ``predict_dataloader`` walks it in index order. Subclasses implement
    `load_arrays`.

    Args:
        batch_size: samples per training batch (per device under DDP).
        num_workers: loader worker processes; 0 is fastest for in-memory tensors.
    """

    name = "data"

    def __init__(self, batch_size: int = 256, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.dataset: IndexedDataset | None = None

    def load_arrays(self) -> tuple[np.ndarray | sp.spmatrix, np.ndarray | None]:
        """Return features (n, d) and labels (n,) or None."""
        raise NotImplementedError

    @property
    def source(self) -> str:
        """Where the data comes from, for error messages."""
        return type(self).__name__

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            x, y = validate_arrays(*self.load_arrays(), source=self.source)
            self.dataset = IndexedDataset(x, y)

    @property
    def input_dim(self) -> int:
        self.setup()
        assert self.dataset is not None
        return self.dataset.input_dim

    def _loader(self, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(shuffle=True)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)
