"""User data: a numpy array, or a path to ``.npy``, ``.npz`` or ``.csv``."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.validation import DataValidationError, DECInputError, require_file

_DATA_KEYS = ("x", "X", "data", "features")
_LABEL_KEYS = ("y", "labels", "label", "target")


def _pick_key(archive: np.lib.npyio.NpzFile, wanted: str | None, candidates: tuple[str, ...], path: Path) -> str | None:
    if wanted is not None:
        if wanted not in archive.files:
            raise DataValidationError(f"{path}: no array named {wanted!r}; it holds {archive.files}")
        return wanted
    return next((k for k in candidates if k in archive.files), None)


def _load_csv(path: Path, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray | None]:
    with path.open() as f:
        first = f.readline().strip().split(",")
    try:
        [float(v) for v in first]
        header: list[str] | None = None
    except ValueError:
        header = [h.strip() for h in first]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input contained no data")  # reported as empty below
            table = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataValidationError(
            f"{path}: not a numeric table ({err}); every row needs the same number of comma-separated "
            "numbers, after at most one header line; encode text columns as numbers and impute missing values"
        ) from None
    if table.size == 0:
        raise DataValidationError(f"{path}: no data rows")
    if label_column is None:
        return table, None
    if isinstance(label_column, str):
        if header is None or label_column not in header:
            raise DataValidationError(f"{path}: no column named {label_column!r}; header is {header}")
        label_column = header.index(label_column)
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise DataValidationError(f"{path}: label_column={label_column} but the file has {table.shape[1]} columns")
    y = table[:, label_column]
    return np.delete(table, label_column, axis=1), y


def load_array_file(
    path: str | Path,
    labels_key: str | None = None,
    data_key: str | None = None,
    label_column: str | int | None = None,
    mmap: bool = False,
) -> tuple[np.ndarray | sp.spmatrix, np.ndarray | None]:
    """Read features and optional labels from ``.npy``, ``.npz`` (dense or scipy sparse) or ``.csv``.

    ``mmap=True`` memory-maps a ``.npy`` file read-only (``np.load(mmap_mode="r")``) instead of
    reading it: the features then live in the page cache, not in the process's memory.
    """
    path = require_file(path, "data file", "check the path given as data.init_args.data")
    suffix = path.suffix.lower()
    try:
        return _load_file(path, suffix, labels_key, data_key, label_column, mmap)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, DECInputError):
            raise
        raise DataValidationError(f"{path}: cannot read as {suffix} ({err})") from None


def _load_file(
    path: Path, suffix: str, labels_key: str | None, data_key: str | None, label_column: str | int | None, mmap: bool
) -> tuple[np.ndarray | sp.spmatrix, np.ndarray | None]:
    if suffix == ".npy":
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False), None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if {"data", "indices", "indptr", "shape"} <= set(archive.files):
                x = sp.csr_matrix(
                    (archive["data"], archive["indices"], archive["indptr"]), shape=tuple(archive["shape"])
                )
            else:
                key = _pick_key(archive, data_key, _DATA_KEYS, path)
                if key is None:
                    raise DataValidationError(
                        f"{path}: no features array; name one with data_key (it holds {archive.files})"
                    )
                x = archive[key]
            label_key = _pick_key(archive, labels_key, _LABEL_KEYS, path)
            return x, None if label_key is None else archive[label_key]
    if suffix == ".csv":
        return _load_csv(path, label_column)
    raise DataValidationError(f"{path}: unsupported file type {suffix!r}; use .npy, .npz or .csv")


class ArrayDataModule(InMemoryDataModule):
    """Cluster one's own data.

    Args:
        data: an array (n, d), a scipy sparse matrix, or a path to ``.npy``/``.npz``/``.csv``.
        labels: optional ground truth (array or ``.npy`` path), used only for metrics.
        data_key: array name inside an ``.npz`` (default: the first of x, X, data, features).
        labels_key: label array name inside an ``.npz`` (default: the first of y, labels, label, target).
        label_column: CSV column (name or position) holding labels, removed from the features.
        batch_size: samples per training batch (per device under DDP).
        num_workers: loader worker processes.
        mmap: memory-map a ``.npy`` file read-only instead of reading it into memory, so data
            larger than memory can be clustered: batches and whole-dataset passes read rows from
            the file (page cache) and cast them to float32 one batch at a time. Results are
            identical either way. An ``np.memmap`` given as ``data`` is always used as a map.
    """

    name = "arrays"

    def __init__(
        self,
        # `Path` in the union keeps jsonargparse from replacing a path by the file's text
        data: str | Path | np.ndarray,
        labels: str | Path | np.ndarray | None = None,
        data_key: str | None = None,
        labels_key: str | None = None,
        label_column: str | int | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        mmap: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.mmap = mmap
        self.data = data
        self.labels = labels
        self.data_key = data_key
        self.labels_key = labels_key
        self.label_column = label_column

    @property
    def source(self) -> str:
        return str(self.data) if isinstance(self.data, (str, Path)) else "ArrayDataModule(data=<array>)"

    def load_arrays(self) -> tuple[np.ndarray | sp.spmatrix, np.ndarray | None]:
        if isinstance(self.data, (str, Path)):
            x, y = load_array_file(self.data, self.labels_key, self.data_key, self.label_column, mmap=self.mmap)
        else:
            x, y = self.data, None
        if self.labels is not None:
            if isinstance(self.labels, (str, Path)):
                path = require_file(self.labels, "labels file", "check the path given as data.init_args.labels")
                try:
                    y = np.load(path, allow_pickle=False)
                except (ValueError, OSError) as err:
                    raise DataValidationError(f"{path}: cannot read labels as .npy ({err})") from None
            else:
                y = self.labels
        return x, y
