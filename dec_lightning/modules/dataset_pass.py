"""One pass over the whole training set, in index order, identical on every rank."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Subset

from dec_lightning.data.indexed import IndexedDataset
from dec_lightning.data.validation import DataValidationError
from dec_lightning.modules.assignment import soft_assignment

EVAL_BATCH_SIZE = 2048


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    A pass frees hundreds of batch buffers, and glibc keeps up to tens of MB of freed heap
    mapped for reuse; with data larger than memory every MB of the process counts. The same
    remedy as Dask's "memory not released back to the OS" (dask.distributed worker-memory docs).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        pass


def full_precision(device: torch.device) -> AbstractContextManager:
    """Autocast off: under ``precision="bf16-mixed"`` the passes that decide the clustering stay float32.

    Mixed precision speeds up the training steps; P, the k-means input, the label changes and
    the final assignments are computed once per refresh over the whole dataset, where bf16's
    8-bit mantissa (~0.4% error per embedding coordinate) would move samples between clusters.
    """
    return torch.autocast(device_type=device.type, enabled=False)


def whole_dataset_pass(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    fn: Callable[[Tensor], Tensor],
    batch_size: int = EVAL_BATCH_SIZE,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every training sample once; return ``(outputs, labels)`` with N rows each.

    DEC's target distribution, k-means and stopping rule all need the whole dataset.
    Under DDP each rank evaluates a shard of a non-shuffled `DistributedSampler`; the
    gathered shards are interleaved back into the sampler's order and its wrap-around padding
    is sliced off, so duplicates never compete for a row (which copy wins an index-put with
    repeated indices is unspecified on CUDA). Row i is the sample whose returned index is i:
    the indices must be a permutation of 0..N-1, else `DataValidationError`, since P is
    looked up by them. Runs without gradients, in eval mode (restored after) and in float32
    even inside an autocast region (`full_precision`).

    Memory: batches are read one at a time (from a memory map too, `IndexedDataset`) and the
    outputs are written into one preallocated tensor, never a list concatenated at the end
    (twice the size). Labels are kept only when some sample has one (else a stride-0 view of
    -1 is returned) and indices only when they are not 0..N-1 in order, or under DDP, so a
    one-process pass over unlabelled data holds its outputs and nothing else of size N.

    ``rows`` (sorted, distinct sample indices) restricts the pass to those samples, in that
    order: `kmeans_on_embedding` embeds only the sample k-means is fitted on.
    """
    train_loader = trainer.train_dataloader
    if train_loader is None:
        raise RuntimeError("whole_dataset_pass needs the trainer's train dataloader; call it during fit")
    dataset = train_loader.dataset
    expected = None if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
    if expected is not None:
        dataset = Subset(dataset, expected.tolist())
    world = trainer.world_size
    sampler = (
        DistributedSampler(dataset, num_replicas=world, rank=trainer.global_rank, shuffle=False) if world > 1 else None
    )
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=train_loader.collate_fn)
    n = len(dataset)
    size = len(sampler) if sampler is not None else n  # rows this process evaluates
    device = pl_module.device
    output: Tensor | None = None
    label: Tensor | None = None
    index: Tensor | None = None
    filled = 0
    was_training = pl_module.training
    pl_module.eval()
    with torch.no_grad(), full_precision(device):
        for x, y, batch_index in loader:
            out = fn(x.to(device))
            end = filled + len(out)
            if end > size:
                raise DataValidationError(f"whole-dataset pass: the training dataset returned more than {size} rows")
            if output is None:
                output = out.new_empty((size, *out.shape[1:]))
            output[filled:end] = out
            if label is None and (world > 1 or bool((y >= 0).any())):
                label = torch.full((size,), -1, dtype=y.dtype, device=device)  # rows before: unlabelled
            if label is not None:
                label[filled:end] = y
            if index is None and (world > 1 or not torch.equal(batch_index, _positions(expected, filled, end))):
                index = _positions(expected, 0, size).to(device, copy=True)  # rows before matched their position
            if index is not None:
                index[filled:end] = batch_index
            filled = end
    pl_module.train(was_training)
    release_free_memory()
    if output is None or filled < size:
        raise DataValidationError(f"whole-dataset pass: the training dataset returned {filled} rows for {size} samples")
    if world > 1:
        # Rank r holds positions r, r + world, ... of range(N) padded to world * ceil(N / world)
        # by wrapping to the start: (world, per_rank) -> (per_rank, world) -> flat is that padded
        # list in order, and [:n] drops the padding. Shapes match on every rank, and
        # `Strategy.all_gather` takes a single tensor (a tuple raises), hence one call each.
        output, label, index = (
            trainer.strategy.all_gather(t).transpose(0, 1).flatten(0, 1)[:n] for t in (output, label, index)
        )
    if index is not None:
        expected = _positions(expected, 0, n).to(index.device)
        if not torch.equal(index, expected):  # one check on the usual path: index i at position i
            index, order = index.sort()
            if not torch.equal(index, expected):
                raise DataValidationError(_index_message(index, n))
            output = output[order]
            label = None if label is None else label[order]
    if label is None:
        label = torch.full((1,), -1, dtype=torch.long, device=output.device).expand(n)
    return output, label


def _positions(rows: Tensor | None, start: int, stop: int) -> Tensor:
    """The sample indices expected at positions start..stop-1 of a pass: ``rows`` or 0..N-1, never built whole."""
    return torch.arange(start, stop) if rows is None else rows[start:stop]


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


@torch.no_grad()
def embed_and_assign(module: L.LightningModule, dataset: IndexedDataset) -> tuple[Tensor, Tensor]:
    """Embeddings z and DEC's soft assignments Q (eq. 1) of every sample of ``dataset``, in eval mode, on the CPU.

    The pass without a trainer (the estimator's predict/transform, select-k's scores): the
    encoder runs once per batch of `EVAL_BATCH_SIZE`, as in `whole_dataset_pass`, and Q comes
    from that z, so predicting the training data reproduces the labels of the fit exactly.
    """
    was_training = module.training
    module.eval()
    zs, qs = [], []
    for start in range(0, len(dataset), EVAL_BATCH_SIZE):
        x = dataset.rows(torch.arange(start, min(start + EVAL_BATCH_SIZE, len(dataset)))).to(module.device)
        z = module.embed(x)
        zs.append(z.float().cpu())
        qs.append(soft_assignment(z, module.centers, module.hparams.alpha).float().cpu())
    module.train(was_training)
    return torch.cat(zs), torch.cat(qs)
