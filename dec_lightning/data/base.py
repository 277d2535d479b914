"""Shared DataModule for datasets that fit in memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, RandomSampler

from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import ConfigError, validate_arrays


class EpochShuffleSampler(RandomSampler):
    """Shuffles with a permutation that depends only on ``(seed, epoch)``, resumable at any batch.

    PyTorch's `RandomSampler` draws each epoch's order from the global RNG, whose state
    is not in Lightning checkpoints, so a resumed run would see other batches than the
    uninterrupted run. Here epoch e's order is ``randperm(N)`` seeded with ``seed + e``.

    Under a trainer, ``batches_seen`` (the fit loop's count of batches drawn so far) places
    each new iterator in that stream: batch b of the run is always batch ``b mod B`` of
    epoch ``b // B`` (B batches per epoch: ``N // batch_size`` when the loader drops the last
    partial batch, else rounded up), however Lightning numbers its epochs. This makes
    resuming exact from any checkpoint; Lightning's own epoch count is not enough, since a run
    resumed from an epoch-end checkpoint under ``max_steps`` first draws one batch of a
    fresh iterator as the tail of the saved epoch. Without a trainer, ``set_epoch`` picks the
    epoch, as for `DistributedSampler` (which Lightning substitutes under DDP, since this is
    a `RandomSampler`).

    Args:
        data_source: the dataset (only its length is used).
        seed: default: torch's initial seed, which `seed_everything` sets.
        batch_size: samples per batch, to turn ``batches_seen`` into a position.
        batches_seen: returns how many batches the run has drawn before this iterator.
        drop_last: whether the loader drops each epoch's last partial batch.
    """

    def __init__(
        self,
        data_source: Sized,
        seed: int | None = None,
        batch_size: int = 1,
        batches_seen: Callable[[], int] | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(data_source)
        self.seed = torch.initial_seed() if seed is None else int(seed)
        self.epoch = 0
        self.batch_size = batch_size
        self.batches_seen = batches_seen
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        epoch, start = self.epoch, 0
        if self.batches_seen is not None:
            per_epoch = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
            epoch, batch = divmod(self.batches_seen(), max(per_epoch, 1))
            start = batch * self.batch_size
        generator = torch.Generator().manual_seed((self.seed + epoch) % 2**63)
        yield from torch.randperm(n, generator=generator)[start:].tolist()


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
        sampler, drop_last = None, False
        if shuffle:
            trainer = self.trainer
            world = 1 if trainer is None else trainer.world_size
            # Full batches only, when every process gets one: the global batches of W processes x B/W
            # samples are then exactly those of one process x B (a DistributedSampler pads the last
            # one with a duplicate), so DDP trains as one device does. The order changes every
            # epoch, so no sample is left out for long.
            drop_last = len(self.dataset) >= world * self.batch_size
            batches_seen = None if trainer is None else lambda: trainer.fit_loop.epoch_loop.batch_progress.total.ready
            sampler = EpochShuffleSampler(
                self.dataset, batch_size=self.batch_size, batches_seen=batches_seen, drop_last=drop_last
            )
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(shuffle=True)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)
