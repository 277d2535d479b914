"""DataModules: shapes, the (x, y, index) contract under shuffling, and every supported file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dec_lightning.data import ArrayDataModule, DataValidationError, DigitsDataModule


def collect(loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, idx = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(idx)


def assert_batches_match_rows(dm, dense_x: np.ndarray, y: np.ndarray | None) -> None:
    """Every batch's (x, y) are the dataset rows its index names."""
    expected_y = torch.full((len(dense_x),), -1) if y is None else torch.as_tensor(y)
    for x_b, y_b, index in dm.train_dataloader():
        assert x_b.dtype == torch.float32 and x_b.layout == torch.strided
        assert index.dtype == torch.long and y_b.dtype == torch.long
        torch.testing.assert_close(x_b, torch.from_numpy(dense_x[index.numpy()]).float())
        assert torch.equal(y_b, expected_y[index])


# --- DigitsDataModule ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=256)
    dm.setup("fit")
    return dm


def test_digits_shape_range_and_labels(digits) -> None:
    ds = digits.dataset
    assert tuple(ds.x.shape) == (1797, 64)
    assert digits.input_dim == 64
    assert ds.x.dtype == torch.float32
    assert ds.x.min() >= 0 and ds.x.max() <= 1
    assert ds.x.max() == 1  # scaled from 0..16, not left as raw pixel counts
    assert ds.y.dtype == torch.long
    assert sorted(ds.y.unique().tolist()) == list(range(10))
    assert ds.has_labels
    assert digits.name == "digits"


def test_digits_batches_match_their_index(digits) -> None:
    ds = digits.dataset
    for x, y, index in digits.train_dataloader():
        assert len(x) == len(y) == len(index) <= 256
        assert torch.equal(x, ds.x[index])
        assert torch.equal(y, ds.y[index])


def test_shuffled_loader_covers_every_index_once_per_epoch(digits) -> None:
    orders = []
    loader = digits.train_dataloader()
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start (no trainer attached here)
        _, _, index = collect(loader)
        assert len(index) == 1797
        assert torch.equal(index.sort().values, torch.arange(1797))
        orders.append(index)
    assert not torch.equal(orders[0], torch.arange(1797))  # actually shuffled
    assert not torch.equal(orders[0], orders[1])  # reshuffled each epoch


def test_predict_loader_is_in_index_order(digits) -> None:
    x, y, index = collect(digits.predict_dataloader())
    assert torch.equal(index, torch.arange(1797))
    assert torch.equal(x, digits.dataset.x) and torch.equal(y, digits.dataset.y)


# --- ArrayDataModule ----------------------------------------------------------------------------
@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float64)
    y = rng.integers(0, 3, size=50)
    return x, y


def make_dm(data, **kwargs) -> ArrayDataModule:
    dm = ArrayDataModule(data, batch_size=8, **kwargs)
    dm.setup("fit")
    return dm


def test_array_from_numpy(arrays) -> None:
    x, y = arrays
    dm = make_dm(x, labels=y)
    assert dm.dataset.x.dtype == torch.float32
    np.testing.assert_allclose(dm.dataset.x.numpy(), x, rtol=1e-6)
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    assert dm.input_dim == 6
    assert_batches_match_rows(dm, x, y)


def test_array_without_labels_is_unlabeled(arrays) -> None:
    x, _ = arrays
    dm = make_dm(x)
    assert torch.equal(dm.dataset.y, torch.full((50,), -1))
    assert not dm.dataset.has_labels
    assert_batches_match_rows(dm, x, None)


def test_array_from_npy_with_npy_labels(arrays, tmp_path: Path) -> None:
    x, y = arrays
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    dm = make_dm(str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    assert isinstance(dm.dataset.x, np.memmap)  # memory-mapped by default, in the file's dtype
    np.testing.assert_array_equal(dm.dataset.x, x)
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    assert_batches_match_rows(dm, x, y)
    in_memory = make_dm(str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"), mmap=False)
    np.testing.assert_allclose(in_memory.dataset.x.numpy(), x, rtol=1e-6)
    assert_batches_match_rows(in_memory, x, y)


@pytest.mark.parametrize(("x_key", "y_key"), [("x", "y"), ("features", "labels")])
def test_array_from_dense_npz(arrays, tmp_path: Path, x_key: str, y_key: str) -> None:
    x, y = arrays
    np.savez(tmp_path / "d.npz", **{x_key: x, y_key: y})
    dm = make_dm(tmp_path / "d.npz")
    np.testing.assert_allclose(dm.dataset.x.numpy(), x, rtol=1e-6)
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    assert_batches_match_rows(dm, x, y)


def test_array_npz_named_keys(arrays, tmp_path: Path) -> None:
    x, y = arrays
    np.savez(tmp_path / "d.npz", emb=x, truth=y, x=np.zeros((3, 3)))
    dm = make_dm(tmp_path / "d.npz", data_key="emb", labels_key="truth")
    np.testing.assert_allclose(dm.dataset.x.numpy(), x, rtol=1e-6)
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    with pytest.raises(DataValidationError, match="nope"):
        make_dm(tmp_path / "d.npz", data_key="nope")


def sparse_arrays() -> tuple[sp.csr_matrix, np.ndarray]:
    x = sp.random(40, 30, density=0.1, format="csr", random_state=0, dtype=np.float64)
    y = np.arange(40) % 4
    return x, y


def test_array_from_csr_npz_stays_sparse(tmp_path: Path) -> None:
    """A CSR archive (keys data/indices/indptr/shape) is held sparse; only batches are densified."""
    x, y = sparse_arrays()
    np.savez(tmp_path / "s.npz", data=x.data, indices=x.indices, indptr=x.indptr, shape=np.array(x.shape), y=y)
    dm = make_dm(tmp_path / "s.npz")
    assert sp.issparse(dm.dataset.x) and dm.dataset.x.format == "csr"
    assert dm.dataset.x.dtype == np.float32
    assert dm.dataset.x.nnz == x.nnz
    assert dm.input_dim == 30
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    assert_batches_match_rows(dm, x.toarray(), y)


def test_scipy_sparse_matrix_input_stays_sparse() -> None:
    x, y = sparse_arrays()
    dm = make_dm(x.tocoo(), labels=y)  # any scipy format is accepted and stored as CSR
    assert sp.issparse(dm.dataset.x) and dm.dataset.x.format == "csr"
    assert_batches_match_rows(dm, x.toarray(), y)
    _, _, index = collect(dm.train_dataloader())
    assert torch.equal(index.sort().values, torch.arange(40))


@pytest.mark.parametrize("label_column", ["label", 2])
def test_array_from_csv_with_header_and_label_column(arrays, tmp_path: Path, label_column) -> None:
    x, y = arrays
    x = x[:, :4]
    table = np.column_stack([x[:, :2], y, x[:, 2:]])  # labels in the middle, not last
    path = tmp_path / "t.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,label,c,d", comments="", fmt="%.8f")
    dm = make_dm(str(path), label_column=label_column)
    assert dm.input_dim == 4
    np.testing.assert_allclose(dm.dataset.x.numpy(), x, rtol=1e-6, atol=1e-7)
    assert torch.equal(dm.dataset.y, torch.from_numpy(y))
    assert_batches_match_rows(dm, x, y)


def test_csv_without_header_or_labels(arrays, tmp_path: Path) -> None:
    x, _ = arrays
    path = tmp_path / "t.csv"
    np.savetxt(path, x, delimiter=",", fmt="%.8f")
    dm = make_dm(path)
    assert len(dm.dataset) == 50  # the first row is data, not a header
    np.testing.assert_allclose(dm.dataset.x.numpy(), x, rtol=1e-6, atol=1e-7)
    assert not dm.dataset.has_labels


def test_csv_unknown_label_column(arrays, tmp_path: Path) -> None:
    x, _ = arrays
    path = tmp_path / "t.csv"
    np.savetxt(path, x, delimiter=",", header=",".join("abcdef"), comments="", fmt="%.4f")
    with pytest.raises(DataValidationError, match="no column named 'label'"):
        make_dm(path, label_column="label")
