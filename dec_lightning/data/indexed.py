"""In-memory dataset that yields ``(x, y, index)`` and fetches whole batches with one slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import Dataset

Batch = tuple[Tensor, Tensor, Tensor]


class IndexedDataset(Dataset):
    """Features, labels (-1 where unknown) and the sample index, held in memory.

    The index is what lets DEC look up each sample's row of the target distribution P
    under shuffling. Index -1 is the padding a DDP rank's last batch may hold
    (`EpochShuffleSampler`): it fetches a dummy row (the last one) that the losses weigh 0.

    ``__getitems__`` makes `DataLoader` fetch a batch with one tensor slice instead of one
    Python call per sample; use `collate_batch` as the loader's ``collate_fn``. A sparse
    (CSR) feature matrix stays sparse and only the rows of a batch are densified.
    """

    def __init__(self, x: Tensor | np.ndarray | sp.spmatrix, y: Tensor | np.ndarray | None = None) -> None:
        if sp.issparse(x):
            self.x: Tensor | sp.csr_matrix = sp.csr_matrix(x, dtype=np.float32)
        else:
            self.x = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x).float()
        n = self.x.shape[0]
        self.y = torch.full((n,), -1, dtype=torch.long) if y is None else torch.as_tensor(y).long().reshape(-1)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def input_dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def has_labels(self) -> bool:
        return bool((self.y >= 0).any())

    def rows(self, index: Tensor) -> Tensor:
        """Dense float32 features of the given rows."""
        if isinstance(self.x, Tensor):
            return self.x[index]
        return torch.from_numpy(self.x[index.numpy()].toarray())

    def __getitem__(self, i: int) -> Batch:
        index = torch.tensor([int(i)])
        return self.rows(index)[0], self.y[index][0], index[0]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.rows(index), self.y[index], index


def collate_batch(batch: Any) -> Batch:
    """Collate for `IndexedDataset`: batches arrive already stacked from ``__getitems__``."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)
