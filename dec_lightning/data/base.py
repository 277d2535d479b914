"""Shared DataModule for datasets that fit in memory."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, RandomSampler

from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import ConfigError, validate_arrays


class EpochShuffleSampler(RandomSampler):
    """Shuffles with a permutation that depends only on ``(seed, epoch)``.

    PyTorch's `RandomSampler` draws each epoch's order from the global RNG, whose state
    is not in Lightning checkpoints, so a run resumed at an epoch boundary would see other
    batches than the uninterrupted run. Here Lightning's per-epoch ``set_epoch`` call fixes
    the order, as `DistributedSampler` does under DDP (Lightning swaps this sampler for one,
    since it is a `RandomSampler`). The permutation is drawn at the first index;
    `InMemoryDataModule` also sets the epoch when it builds the loader, because a resumed
    run's loader (and its worker processes) start before Lightning's ``set_epoch``.

    Args:
        data_source: the dataset (only its length is used).
        seed: default: torch's initial seed, which `seed_everything` sets.
    """

    def __init__(self, data_source: Sized, seed: int | None = None) -> None:
        super().__init__(data_source)
        self.seed = torch.initial_seed() if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed + self.epoch) % 2**63)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


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
            raise ConfigError(f"data.init_args.batch_size must be >= 1, got {batch_size}")
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
        sampler = None
        if shuffle:
            sampler = EpochShuffleSampler(self.dataset)
            if self.trainer is not None:
                # the epoch Lightning passes to set_epoch; a resumed run asks for its loader
                # (and worker processes may prefetch from it) before that call
                sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(shuffle=True)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)
