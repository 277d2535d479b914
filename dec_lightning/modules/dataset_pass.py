"""One pass over the whole training set, in index order, identical on every rank."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

EVAL_BATCH_SIZE = 2048


def whole_dataset_pass(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    fn: Callable[[Tensor], Tensor],
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every training sample once; return ``(outputs, labels)`` with N rows each.

    DEC's target distribution, k-means and stopping rule all need the whole dataset.
    Under DDP each rank evaluates a shard (non-shuffled `DistributedSampler`); the shards
    and their sample indices are all-gathered and scattered back by index, which drops the
    duplicates the sampler pads with, so every rank ends up with the same N rows in dataset
    order. Runs without gradients and in eval mode; the module's mode is restored after.
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
    if world > 1:
        # equal shapes on every rank: the sampler pads each shard to ceil(N / world).
        # `Strategy.all_gather` takes a single tensor (a tuple raises), hence one call each.
        output, label, index = (trainer.strategy.all_gather(t).flatten(0, 1) for t in (output, label, index))
    n = len(dataset)
    ordered_output = output.new_empty((n, *output.shape[1:]))
    ordered_label = label.new_empty(n)
    ordered_output[index] = output
    ordered_label[index] = label
    return ordered_output, ordered_label
