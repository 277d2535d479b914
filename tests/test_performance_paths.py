"""The fast paths the benchmarks rely on: one slice per batch, num_workers=0, large-batch refreshes."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from benchmarks.kmeans_compare import torch_kmeans
from benchmarks.throughput import matmul_params, step_matmuls
from dec_lightning.data import ArrayDataModule
from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.indexed import Batch, IndexedDataset
from dec_lightning.encoders.mlp import MLPEncoder
from dec_lightning.modules.dataset_pass import EVAL_BATCH_SIZE, whole_dataset_pass
from dec_lightning.modules.dec import DEC


class CountingDataset(IndexedDataset):
    """IndexedDataset that counts how the loader fetches from it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.item_calls = 0
        self.batch_calls: list[int] = []

    def __getitem__(self, i: int) -> Batch:
        self.item_calls += 1
        return super().__getitem__(i)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        self.batch_calls.append(len(indices))
        return super().__getitems__(indices)


def _datamodule(n: int, batch_size: int) -> tuple[ArrayDataModule, CountingDataset, np.ndarray]:
    x = np.random.default_rng(0).random((n, 6), dtype=np.float32)
    y = np.arange(n) % 3
    dm = ArrayDataModule(x, labels=y, batch_size=batch_size)
    dataset = CountingDataset(x, y)
    dm.dataset = dataset  # setup() keeps an existing dataset
    return dm, dataset, x


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_fetches_each_batch_with_one_getitems_call(shuffle: bool) -> None:
    dm, dataset, x = _datamodule(n=100, batch_size=32)
    loader = dm.train_dataloader() if shuffle else dm.predict_dataloader()
    seen = []
    for xb, yb, index in loader:
        torch.testing.assert_close(xb, torch.from_numpy(x)[index])
        assert torch.equal(yb, index % 3)
        seen.append(index)
    assert dataset.item_calls == 0
    assert dataset.batch_calls == [32, 32, 32, 4]
    assert sorted(torch.cat(seen).tolist()) == list(range(100))


def test_num_workers_defaults_to_zero_and_stays_an_option() -> None:
    for cls in (InMemoryDataModule, ArrayDataModule):
        assert inspect.signature(cls.__init__).parameters["num_workers"].default == 0
    dm, _, _ = _datamodule(n=10, batch_size=4)
    assert dm.train_dataloader().num_workers == 0
    dm2 = ArrayDataModule(np.zeros((10, 3), dtype=np.float32), num_workers=2)
    loader = dm2.train_dataloader()
    assert loader.num_workers == 2
    assert loader.persistent_workers  # workers are not restarted every epoch


def test_whole_dataset_pass_uses_large_batches_in_index_order() -> None:
    n = EVAL_BATCH_SIZE + 5
    _, dataset, x = _datamodule(n=n, batch_size=8)
    trainer = SimpleNamespace(
        train_dataloader=torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=lambda b: b),
        world_size=1,
        global_rank=0,
        strategy=None,
    )
    module = DEC(MLPEncoder([6, 4, 2]), n_clusters=3)
    out, labels = whole_dataset_pass(trainer, module, lambda t: t.sum(1, keepdim=True))
    assert dataset.batch_calls == [EVAL_BATCH_SIZE, 5]
    assert dataset.item_calls == 0
    torch.testing.assert_close(out[:, 0], torch.from_numpy(x).sum(1))
    assert torch.equal(labels, torch.arange(n) % 3)


def test_flop_count_matches_the_matmul_shapes() -> None:
    """6 FLOPs per weight and sample = forward + input-gradient + weight-gradient products."""
    dims, batch = (20, 7, 3), 5
    flops = sum(2 * m * k * n for m, k, n in step_matmuls(dims, batch))
    assert flops == 6 * matmul_params(dims) * batch
    assert matmul_params(dims) == 2 * (20 * 7 + 7 * 3)
    assert matmul_params() == 2 * (784 * 500 + 500 * 500 + 500 * 2000 + 2000 * 10)


def test_torch_kmeans_matches_sklearn_on_separated_blobs() -> None:
    """The benchmark's torch k-means is a fair competitor: same partition and inertia as scikit-learn."""
    x, y = make_blobs(n_samples=600, n_features=5, centers=4, cluster_std=0.5, random_state=1)
    x = x.astype(np.float32)
    centers, labels, iterations = torch_kmeans(torch.from_numpy(x), 4, n_init=3, seed=0)
    assert adjusted_rand_score(y, labels.numpy()) == pytest.approx(1.0)
    sk = KMeans(4, n_init=3, random_state=0).fit(x.astype(np.float64))
    inertia = float(((x.astype(np.float64) - centers.numpy().astype(np.float64)[labels.numpy()]) ** 2).sum())
    assert inertia == pytest.approx(sk.inertia_, rel=1e-4)
    assert 1 <= iterations < 300
    assert math.isfinite(inertia)
