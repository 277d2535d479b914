"""Shared DataModule for datasets that fit in memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, DistributedSampler

from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import ConfigError, validate_arrays

# Sample indices turned into Python ints at a time by `EpochShuffleSampler`.
_YIELD_CHUNK = 1 << 16


class EpochShuffleSampler(DistributedSampler):
    """Shuffles with a permutation that depends only on ``(seed, epoch)``; deals it to DDP ranks; resumable.

    PyTorch's `RandomSampler` draws each epoch's order from the global RNG, whose state
    is not in Lightning checkpoints, so a resumed run would see other batches than the
    uninterrupted run. Here epoch e's order is ``randperm(N)`` seeded with ``seed + e``.

    With W processes (``num_replicas``), rank r gets the positions r, r + W, ... of that order,
    padded at the end to a multiple of W with index -1: the ranks' batches of B/W samples
    together are exactly the batches of B samples one process draws, the last partial one
    included, and a padding entry (fetched as a dummy row) is recognised by its index and
    weighs nothing in the loss (`dec_lightning.modules.reduction.sample_weights`). Being a
    `DistributedSampler`, Lightning keeps it instead of substituting its own.

    Under a trainer, ``batches_seen`` (the fit loop's count of batches drawn so far) places
    each new iterator in that stream: batch b of the run is always batch ``b mod B`` of
    epoch ``b // B`` (B batches per epoch), however Lightning numbers its epochs. This makes
    resuming exact; Lightning's own epoch count is not enough, since a run resumed from an
    epoch-end checkpoint under ``max_steps`` first draws one batch of a fresh iterator as the
    tail of the saved epoch. Without a trainer, ``set_epoch`` picks the epoch.

    Args:
        data_source: the dataset (only its length is used).
        seed: default: torch's initial seed, which `seed_everything` sets.
        batch_size: samples per batch and process, to turn ``batches_seen`` into a position.
        batches_seen: returns how many batches this process has drawn before this iterator.
        num_replicas, rank: the DDP world size and this process's rank.
    """

    def __init__(
        self,
        data_source: Sized,
        seed: int | None = None,
        batch_size: int = 1,
        batches_seen: Callable[[], int] | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        seed = torch.initial_seed() if seed is None else int(seed)
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.batches_seen = batches_seen

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.epoch, 0
        if self.batches_seen is not None:
            epoch, batch = divmod(self.batches_seen(), math.ceil(self.num_samples / self.batch_size))
            start = batch * self.batch_size
        generator = torch.Generator().manual_seed((self.seed + epoch) % 2**63)
        # int32 draws the same permutation as int64 in half the memory; the order is kept as a
        # tensor and turned into Python ints a chunk at a time (a list of N ints costs ~36 bytes
        # per sample for the whole epoch: more than 10M x 100 float32 features' budget allows)
        dtype = torch.int32 if len(self.dataset) < 2**31 else torch.int64
        order = torch.randperm(len(self.dataset), generator=generator, dtype=dtype)
        if self.total_size > len(order):
            order = torch.cat([order, torch.full((self.total_size - len(order),), -1, dtype=dtype)])
        for chunk in order[self.rank :: self.num_replicas][start:].split(_YIELD_CHUNK):
            yield from chunk.tolist()


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
            trainer = self.trainer
            world, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
            batches_seen = None if trainer is None else lambda: trainer.fit_loop.epoch_loop.batch_progress.total.ready
            sampler = EpochShuffleSampler(
                self.dataset, batch_size=self.batch_size, batches_seen=batches_seen, num_replicas=world, rank=rank
            )
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
