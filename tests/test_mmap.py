"""Data larger than memory: a memory-mapped ``.npy`` is read batch by batch, never copied whole, same results.

The memory checks sample the process's anonymous memory (RssAnon: heap and tensors, not the
page cache a map is read through) with `benchmarks.scaling.PeakRssAnon`, and show that the
same measurement does see a copy of the file, so they can fail.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from benchmarks.scaling import PeakRssAnon
from dec_lightning import DEC
from dec_lightning.callbacks import KMeansInit
from dec_lightning.callbacks.kmeans import kmeans_on_embedding, nearest_center
from dec_lightning.data import ArrayDataModule, DataValidationError, validation
from dec_lightning.data import base as data_base
from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.validation import is_memory_mapped
from dec_lightning.encoders import MLPEncoder
from dec_lightning.metrics.clustering import label_change_fraction
from dec_lightning.modules import DEC as DECModule
from dec_lightning.modules import whole_dataset_pass
from dec_lightning.modules.assignment import target_distribution

# a schedule of seconds; every setting named, so the estimator's "auto" defaults do not apply
TINY = {
    "n_clusters": 3,
    "hidden_dims": (32,),
    "embedding_dim": 3,
    "pretrain_steps": 60,
    "cluster_steps": 60,
    "update_interval": 20,
    "n_init": 3,
    "batch_size": 64,
    "accelerator": "cpu",
}


def blobs(n: int, d: int, k: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 3
    return (means[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def write_npy(path: Path, n: int, d: int, chunk: int = 4096) -> Path:
    """A float32 .npy written chunk by chunk, so the test process never holds it whole."""
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, d)).astype(np.float32) * 3
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        x[start : start + rows] = means[rng.integers(3, size=rows)] + rng.standard_normal((rows, d), dtype=np.float32)
    x.flush()
    del x
    return path


def stub_trainer(dataset: IndexedDataset) -> SimpleNamespace:
    """What `whole_dataset_pass` and `kmeans_on_embedding` read from a trainer, for one process."""
    return SimpleNamespace(
        train_dataloader=DataLoader(dataset, batch_size=64, collate_fn=collate_batch),
        world_size=1,
        global_rank=0,
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npy_file_is_memory_mapped_and_batches_match_the_in_memory_path(tmp_path: Path, dtype: type) -> None:
    x = blobs(1000, 12).astype(dtype)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped, in_memory = ArrayDataModule(path, batch_size=64), ArrayDataModule(np.load(path), batch_size=64)
    mapped.setup()
    in_memory.setup()
    assert isinstance(mapped.dataset.x, np.memmap) and mapped.dataset.x.dtype == dtype  # cast per batch
    assert Path(mapped.dataset.x.filename) == path.resolve()
    assert isinstance(in_memory.dataset.x, torch.Tensor)
    for make in ("train_dataloader", "predict_dataloader"):
        torch.manual_seed(0)  # the shuffling sampler's seed
        got = list(getattr(mapped, make)())
        torch.manual_seed(0)
        want = list(getattr(in_memory, make)())
        assert len(got) == len(want) == 16
        for (xb, yb, ib), (xw, yw, iw) in zip(got, want, strict=True):
            assert xb.dtype == torch.float32 and torch.equal(xb, xw)
            assert torch.equal(ib, iw) and torch.equal(yb, yw)
    out_mapped, y_mapped = whole_dataset_pass(stub_trainer(mapped.dataset), DECModule(MLPEncoder([12, 3])), lambda b: b)
    assert torch.equal(out_mapped, torch.from_numpy(x.astype(np.float32)))
    assert (y_mapped == -1).all() and y_mapped.stride() == (0,)  # unlabelled: no N-sized label array


def test_nonfinite_values_are_found_in_every_chunk_of_a_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_CHECK_CHUNK", 40)  # 10 rows of 4 per chunk: the bad values sit in two chunks
    x = np.zeros((100, 4))
    x[3, 1], x[95, 2] = np.nan, 1e39  # 1e39 is finite in float64, inf as float32
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(DataValidationError, match="2 feature values are NaN, infinite or beyond float32"):
        ArrayDataModule(tmp_path / "bad.npy").setup()


def test_estimator_on_a_map_matches_the_in_memory_fit_exactly(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, blobs(600, 10))
    mapped = DEC(**TINY).fit(np.load(path, mmap_mode="r"))
    in_memory = DEC(**TINY).fit(np.load(path))
    assert len(np.unique(mapped.labels_)) == 3
    np.testing.assert_array_equal(mapped.labels_, in_memory.labels_)
    np.testing.assert_array_equal(mapped.cluster_centers_, in_memory.cluster_centers_)
    assert mapped.n_iter_ == in_memory.n_iter_
    np.testing.assert_array_equal(
        mapped.predict_proba(np.load(path, mmap_mode="r")), in_memory.predict_proba(np.load(path))
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RssAnon is read from /proc (Linux)")
def test_anonymous_memory_stays_far_below_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 256 MiB file through the data module and an estimator fit: RssAnon grows by < 15% of it; a copy shows 100%.

    What does grow is a fit's working memory (batches, k-means, Lightning: ~30 MB here), not the file.
    """
    path = write_npy(tmp_path / "big.npy", 131072, 512)
    file_bytes = path.stat().st_size
    DEC(**TINY).fit(blobs(300, 512))  # first-fit allocations (lazy imports, Lightning) happen outside the window

    datamodule = ArrayDataModule(path)
    with PeakRssAnon(interval=0.002) as setup_and_pass:
        datamodule.setup()
        out, _ = whole_dataset_pass(
            stub_trainer(datamodule.dataset), DECModule(MLPEncoder([512, 3])), lambda b: b[:, :3]
        )
    assert out.shape == (131072, 3)
    assert setup_and_pass.growth_bytes < 0.15 * file_bytes, setup_and_pass.growth_bytes / 2**20

    datasets: list[IndexedDataset] = []

    class Recording(IndexedDataset):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            datasets.append(self)

    monkeypatch.setattr(data_base, "IndexedDataset", Recording)
    with PeakRssAnon(interval=0.002) as fit:
        estimator = DEC(**TINY).fit(np.load(path, mmap_mode="r"))
    assert datasets and all(is_memory_mapped(d.x) for d in datasets)  # the fit read batches from the map
    assert len(estimator.labels_) == 131072
    assert fit.growth_bytes < 0.15 * file_bytes, fit.growth_bytes / 2**20

    with PeakRssAnon(interval=0.002) as copy:  # the measurement sees a copy of the file
        in_memory = np.array(np.load(path, mmap_mode="r"))
    assert copy.growth_bytes > 0.9 * file_bytes
    del in_memory


def test_kmeans_init_on_a_uniform_sample_embeds_only_the_sample() -> None:
    dataset = IndexedDataset(blobs(5000, 8, k=4))
    torch.manual_seed(0)
    module = DECModule(MLPEncoder([8, 16, 3]), n_clusters=4)
    embed, embedded = module.embed, []

    def counting_embed(x: torch.Tensor) -> torch.Tensor:
        embedded.append(len(x))
        return embed(x)

    module.embed = counting_embed
    trainer = stub_trainer(dataset)
    full_centers, full_labels = kmeans_on_embedding(trainer, module, n_init=3, seed=0)
    assert sum(embedded) == 5000
    embedded.clear()
    centers, labels = kmeans_on_embedding(trainer, module, n_init=3, seed=0, max_samples=1000, with_labels=False)
    assert labels is None and sum(embedded) == 1000  # only the sample is embedded
    embedded.clear()
    again, labels = kmeans_on_embedding(trainer, module, n_init=3, seed=0, max_samples=1000)
    assert torch.equal(again, centers)  # the sample is drawn with the k-means seed
    assert sum(embedded) == 1000 + 5000  # labels: a second pass assigns every sample to its nearest centre
    z = embed(torch.from_numpy(dataset.x.numpy())).detach()
    assert torch.equal(labels, nearest_center(z, centers))

    def inertia(c: torch.Tensor) -> float:
        return float((z[:, None, :] - c[None]).pow(2).sum(-1).min(dim=1).values.sum())

    assert inertia(centers) <= 1.02 * inertia(full_centers)  # the sample's centres serve the whole data
    assert len(full_labels) == 5000
    assert KMeansInit().max_samples == 1_000_000
    with pytest.raises(ValueError, match="max_samples"):
        KMeansInit(max_samples=0)


def test_refresh_state_is_computed_in_place_with_the_same_values() -> None:
    """P overwrites Q and the new labels the old ones (chunk by chunk, N > one chunk): same numbers as out of place."""
    generator = torch.Generator().manual_seed(0)
    n, k = 70001, 10  # more rows than one chunk (65536)
    q1 = torch.softmax(torch.randn(n, k, generator=generator) * 3, dim=1)
    q2 = torch.softmax(torch.randn(n, k, generator=generator) * 3, dim=1)
    module = DECModule(MLPEncoder([4, k]), n_clusters=k)
    module.update_target(q1.clone())
    first_labels = module.labels
    expected_p = target_distribution(q2)
    expected_delta = label_change_fraction(q2.argmax(dim=1), q1.argmax(dim=1))
    q = q2.clone()
    module.update_target(q)
    assert module.target.data_ptr() == q.data_ptr()  # no second N x K array
    assert module.labels.data_ptr() == first_labels.data_ptr()  # no second label array
    assert torch.equal(module.target, expected_p)  # bit for bit
    assert torch.equal(module.labels, q2.argmax(dim=1))
    assert module.delta_label == expected_delta and 0.5 < expected_delta < 1
