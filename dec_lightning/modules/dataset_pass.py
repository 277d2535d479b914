"""One pass over the whole training set, in index order, identical on every rank."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from dec_lightning.data.validation import DataValidationError

EVAL_BATCH_SIZE = 2048


def whole_dataset_pass(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    fn: Callable[[Tensor], Tensor],
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every training sample once; return ``(outputs, labels)`` with N rows each.

    DEC's target distribution, k-means and stopping rule all need the whole dataset.
    Under DDP each rank evaluates a shard of a non-shuffled `DistributedSampler`; the
    gathered shards are interleaved back into the sampler's order and its wrap-around padding
    is sliced off, so duplicates never compete for a row (which copy wins an index-put with
    repeated indices is unspecified on CUDA). Row i is the sample whose returned index is i:
    the indices must be a permutation of 0..N-1, else `DataValidationError`, since P is
    looked up by them. Runs without gradients and in eval mode; the mode is restored after.
    """
    train_loader = trainer.train_dataloader
    if train_loader is None:
        raise RuntimeError("whole_dataset_pass needs the trainer's train dataloader; call it during fit")
    dataset = train_loader.dataset
    world = trainer.world_size
    sampler = (
        DistributedSampler(dataset, num_replicas=world, rank=trainer.global_rank, shuffle=False) if world > 1 else None
    )
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=train_loader.collate_fn)
    was_training = pl_module.training
    pl_module.eval()
    outputs, labels, indices = [], [], []
    with torch.no_grad():
        for x, y, index in loader:
            outputs.append(fn(x.to(pl_module.device)))
            labels.append(y.to(pl_module.device))
            indices.append(index.to(pl_module.device))
    pl_module.train(was_training)
    output, label, index = torch.cat(outputs), torch.cat(labels), torch.cat(indices)
    n = len(dataset)
    if world > 1:
        # Rank r holds positions r, r + world, ... of range(N) padded to world * ceil(N / world)
        # by wrapping to the start: (world, per_rank) -> (per_rank, world) -> flat is that padded
        # list in order, and [:n] drops the padding. Shapes match on every rank, and
        # `Strategy.all_gather` takes a single tensor (a tuple raises), hence one call each.
        output, label, index = (
            trainer.strategy.all_gather(t).transpose(0, 1).flatten(0, 1)[:n] for t in (output, label, index)
        )
    expected = torch.arange(n, device=index.device)
    if not torch.equal(index, expected):  # one check on the usual path: index i at position i
        index, order = index.sort()
        if not torch.equal(index, expected):
            raise DataValidationError(_index_message(index, n))
        output, label = output[order], label[order]
    return output, label


def _index_message(sorted_index: Tensor, n: int) -> str:
    values = sorted_index.unique()
    in_range = values[(values >= 0) & (values < n)]
    return (
        f"whole-dataset pass: the training dataset returned {values.numel()} distinct sample indices "
        f"({len(in_range)} of them in 0..{n - 1}, range {sorted_index[0].item()}..{sorted_index[-1].item()}) "
        f"for {n} samples; the third element of each item must be the sample's position 0..N-1 in the "
        "dataset, because DEC looks up its row of the target distribution by it. A torch.utils.data.Subset "
        "returns its parent's indices: build a new dataset from the selected rows instead, e.g. "
        "IndexedDataset(x[rows], y[rows])"
    )
