"""`whole_dataset_pass` layout: DDP shards reassembled in dataset order, padding dropped, indices checked.

World sizes > 1 are emulated in one process: one thread per rank, each with its own fake
trainer whose ``strategy.all_gather`` stacks what every rank passed (as DDP does), so the
real `DistributedSampler` decides what each rank evaluates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import DataValidationError
from dec_lightning.modules.dataset_pass import whole_dataset_pass


class ThreadGather:
    """``all_gather`` across ``world`` threads: every rank gets ``stack([t_0, ..., t_{world-1}])``."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.slots: list[Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world, timeout=30)

    def for_rank(self, rank: int) -> Callable[[Tensor], Tensor]:
        def all_gather(t: Tensor) -> Tensor:
            self.slots[rank] = t
            self.barrier.wait()
            out = torch.stack(self.slots)  # DDP requires equal shapes: stack raises otherwise
            self.barrier.wait()  # nobody overwrites a slot before everyone has read it
            return out

        return all_gather


def fake_trainer(dataset: Dataset, world: int, rank: int, all_gather: Callable | None) -> SimpleNamespace:
    return SimpleNamespace(
        train_dataloader=DataLoader(dataset, batch_size=4, shuffle=True, collate_fn=collate_batch),
        world_size=world,
        global_rank=rank,
        strategy=SimpleNamespace(all_gather=all_gather),
    )


def run_pass(dataset: Dataset, world: int, batch_size: int = 2) -> list[tuple[Tensor, Tensor] | BaseException]:
    """Run the pass on ``world`` emulated ranks; row outputs are ``[x, rank that computed it]``."""
    gather = ThreadGather(world)
    results: list[tuple[Tensor, Tensor] | BaseException] = [RuntimeError("rank did not finish")] * world

    def rank_main(rank: int) -> None:
        trainer = fake_trainer(dataset, world, rank, gather.for_rank(rank) if world > 1 else None)

        def fn(x: Tensor) -> Tensor:
            return torch.cat([x, torch.full((len(x), 1), float(rank))], dim=1)

        try:
            results[rank] = whole_dataset_pass(trainer, L.LightningModule(), fn, batch_size=batch_size)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            results[rank] = err

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def numbered_dataset(n: int) -> IndexedDataset:
    """Sample i has features (i, 100 + i) and label 1000 + i, so every row says where it came from."""
    i = torch.arange(n, dtype=torch.float32)
    return IndexedDataset(torch.stack([i, 100 + i], dim=1), torch.arange(n) + 1000)


class ReindexedDataset(Dataset):
    """Wraps a dataset and reports index ``mapping[i]`` for position i (a permutation, or not)."""

    def __init__(self, base: IndexedDataset, mapping: list[int]) -> None:
        self.base, self.mapping = base, mapping

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y, _ = self.base[i]
        return x, y, torch.tensor(self.mapping[i])


@pytest.mark.parametrize(("world", "n"), [(1, 7), (2, 7), (2, 8), (3, 7), (4, 3), (5, 2), (2, 1)])
def test_ranks_return_n_rows_in_dataset_order(world: int, n: int) -> None:
    """Odd N, N < world, padding longer than N: every rank gets exactly N rows, row i from sample i."""
    dataset = numbered_dataset(n)
    results = run_pass(dataset, world)
    for output, labels in results:
        assert output.shape == (n, 3)
        torch.testing.assert_close(output[:, :2], dataset.x)
        assert torch.equal(labels, dataset.y)
        # each row is the copy computed by the rank that owns it, never a padding duplicate:
        # the non-shuffled sampler gives position i to rank i % world, and pads with 0, 1, ...
        torch.testing.assert_close(output[:, 2], (torch.arange(n) % world).float())


def test_padding_duplicates_never_overwrite() -> None:
    """N=5, 2 ranks: rank 1 also evaluates sample 0 as padding; its copy must not land in row 0."""
    results = run_pass(numbered_dataset(5), world=2)
    for output, _ in results:
        assert output[0, 2].item() == 0.0  # computed by rank 0, not by rank 1's padding copy


def test_subset_indices_raise_clear_error() -> None:
    """A Subset reports its parent's indices (5, 10, ...), not positions 0..N-1: clear error on every rank."""
    subset = Subset(numbered_dataset(40), list(range(5, 40, 5)))
    for world in (1, 2):
        results = run_pass(subset, world)
        for err in results:
            assert isinstance(err, DataValidationError)
            message = str(err)
            assert "third element" in message and "position 0..N-1" in message
            assert "Subset" in message and "for 7 samples" in message


@pytest.mark.parametrize(
    "mapping",
    [[0, 1, 2, 2, 4, 5], [0, 1, 2, 3, 4, -1], [1, 2, 3, 4, 5, 6]],
    ids=["duplicate", "negative", "shifted"],
)
def test_indices_that_are_not_a_permutation_raise(mapping: list[int]) -> None:
    dataset = ReindexedDataset(numbered_dataset(6), mapping)
    for world in (1, 2):
        for err in run_pass(dataset, world):
            assert isinstance(err, DataValidationError), err
            assert "position 0..N-1" in str(err)


def test_permuted_indices_are_ordered_by_index() -> None:
    """Indices that are a permutation are accepted: row j belongs to the sample reporting index j (P's lookup)."""
    n = 7
    mapping = [n - 1 - i for i in range(n)]
    base = numbered_dataset(n)
    for world in (1, 2):
        for output, labels in run_pass(ReindexedDataset(base, mapping), world):
            torch.testing.assert_close(output[:, :2], base.x.flip(0))
            assert torch.equal(labels, base.y.flip(0))
