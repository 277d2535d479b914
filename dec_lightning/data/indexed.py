"""Dataset that yields ``(x, y, index)`` and fetches whole batches with one slice, in memory or from a memory map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dec_lightning.data.validation import is_memory_mapped

Batch = tuple[Tensor, Tensor, Tensor]


class IndexedDataset(Dataset):
    """Features, labels (-1 where unknown) and the sample index.

    The index is what lets DEC look up each sample's row of the target distribution P
    under shuffling. Index -1 is the padding a DDP rank's last batch may hold
    (`EpochShuffleSampler`): it fetches a dummy row (the last one) that the losses weigh 0.

    ``__getitems__`` makes `DataLoader` fetch a batch with one tensor slice instead of one
    Python call per sample; use `collate_batch` as the loader's ``collate_fn``. A sparse
    (CSR) feature matrix stays sparse and only the rows of a batch are densified. A
    memory-mapped array (``np.load(path, mmap_mode="r")``, ``np.memmap``) stays a map: each
    batch reads its rows from the file and casts them to float32, so data larger than memory
    is never copied whole. Without labels, ``y`` is a stride-0 view of one -1, not N of them.
    """

    def __init__(self, x: Tensor | np.ndarray | sp.spmatrix, y: Tensor | np.ndarray | None = None) -> None:
        if sp.issparse(x):
            self.x: Tensor | sp.csr_matrix | np.ndarray = sp.csr_matrix(x, dtype=np.float32)
        elif is_memory_mapped(x):
            self.x = x
        else:
            self.x = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x).float()
        n = self.x.shape[0]
        if y is None:
            self.y = torch.full((1,), -1, dtype=torch.long).expand(n)
        else:
            self.y = torch.as_tensor(y).long().reshape(-1)

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
        if isinstance(self.x, np.ndarray):
            return torch.from_numpy(_read_rows(self.x, index.numpy()))
        return torch.from_numpy(self.x[index.numpy()].toarray())

    def __getitem__(self, i: int) -> Batch:
        index = torch.tensor([int(i)])
        return self.rows(index)[0], self.y[index][0], index[0]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.rows(index), self.y[index], index


def _read_rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows of a memory-mapped array as a float32 array in memory; a run of consecutive rows is one slice.

    Whole-dataset passes walk the data in order, so their batches are single contiguous reads.
    """
    if len(index) and index[0] >= 0 and index[-1] - index[0] == len(index) - 1 and (np.diff(index) == 1).all():
        return np.array(x[index[0] : index[-1] + 1], dtype=np.float32)
    return np.asarray(x[index], dtype=np.float32)


def collate_batch(batch: Any) -> Batch:
    """Collate for `IndexedDataset`: batches arrive already stacked from ``__getitems__``."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)
