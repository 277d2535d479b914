"""Checks on data, files and settings as they enter, so bad input fails with one clear message.

Every error a user can fix without touching the code derives from `DECInputError`; the
``dec-lightning`` command prints those as one line instead of a traceback. Each is also
a `ValueError` or a `FileNotFoundError`, so ordinary ``except`` clauses keep working.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# float32 is what the models see; finite float64 values beyond this become inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Elements per chunk when scanning a dense array for NaN/inf: 16 MiB of float32, so the check
# never allocates a boolean mask of the whole array (a quarter of a float32 file's size).
_CHECK_CHUNK = 1 << 22


class DECInputError(Exception):
    """A problem with the user's data, files or configuration; the message says what to change."""


class DataValidationError(DECInputError, ValueError):
    """Input data that DEC cannot train on."""


class ConfigError(DECInputError, ValueError):
    """Settings that do not fit the data, the checkpoint or each other; the message names the config key."""


class MissingFileError(DECInputError, FileNotFoundError):
    """A data, checkpoint or weights file that is not there; the message says how to get it."""


def require_file(path: str | Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise `MissingFileError` saying how to obtain it.

    Args:
        path: the expected file.
        what: what the file is, e.g. ``"MNIST training images"``.
        hint: how to get it or where to point instead, e.g. which config key or env var to set.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        where = "a directory, not a file" if path.is_dir() else "not found"
        raise MissingFileError(f"{what} {where}: {path.resolve()}; {hint}")
    return path


def is_memory_mapped(x: object) -> bool:
    """True for a NumPy array backed by a memory-mapped file (``np.memmap``, ``np.load(mmap_mode=...)``).

    Follows ``.base``, so views and ``np.asarray`` of a map (which drops the ``np.memmap``
    subclass but keeps the map as its base) count too. Such arrays are read batch by batch
    and never copied whole (`IndexedDataset`).
    """
    while x is not None:
        if isinstance(x, (np.memmap, mmap.mmap)):
            return True
        x = getattr(x, "base", None)
    return False


def count_nonfinite(x: np.ndarray) -> int:
    """Number of values that are NaN, infinite, or become infinite as float32, scanned in row chunks.

    Chunked so that a memory-mapped file is read once, in pieces, without a full-size mask or
    float32 copy in memory.
    """
    rows = max(1, _CHECK_CHUNK // max(1, x.shape[1]))
    bad = 0
    for start in range(0, x.shape[0], rows):
        chunk = x[start : start + rows]
        if chunk.dtype != np.float32:
            with np.errstate(over="ignore"):
                chunk = chunk.astype(np.float32)
        finite = np.isfinite(chunk)
        if not finite.all():
            bad += int(finite.size - np.count_nonzero(finite))
    return bad


def validate_arrays(
    x: np.ndarray | sp.spmatrix, y: np.ndarray | None = None, *, source: str = "data"
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]:
    """Return float32 features and int64 labels, or raise `DataValidationError`.

    Catches what would otherwise surface deep inside torch or scikit-learn: non-numeric,
    non-2-D or empty features, NaN/inf (also finite values beyond float32's range, which
    become inf once cast), and labels that are not one integer per sample.

    A memory-mapped array (`is_memory_mapped`) is returned as it is, in its own dtype: casting
    it would copy the whole file into memory, so `IndexedDataset` casts each batch instead, and
    the NaN/inf scan reads it in chunks.
    """
    if sp.issparse(x):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataValidationError(f"{source}: features must be real numbers, got sparse dtype {x.dtype}")
        x = sp.csr_matrix(x, dtype=np.float32)
        values = x.data
    else:
        mapped = is_memory_mapped(x)
        x = x if mapped and isinstance(x, np.ndarray) else np.asarray(x)  # an np.memmap stays one
        if x.dtype == np.bool_ and not mapped:
            x = x.astype(np.float32)
        numeric = np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_
        if x.dtype == object or not numeric or np.issubdtype(x.dtype, np.complexfloating):
            raise DataValidationError(
                f"{source}: features must be real numbers, got dtype {x.dtype}; "
                "encode text or categorical columns as numbers first"
            )
        if x.ndim != 2:
            raise DataValidationError(
                f"{source}: features must be 2-D (n_samples, n_features), got shape {x.shape}; "
                + (
                    "for a single sample or feature use x.reshape(1, -1) or x.reshape(-1, 1)"
                    if x.ndim < 2
                    else "flatten images first, e.g. x.reshape(len(x), -1)"
                )
            )
        if not mapped:
            with np.errstate(over="ignore"):
                x = x.astype(np.float32, copy=False)
        values = x
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataValidationError(f"{source}: empty input, shape {x.shape}; it needs samples and features")
    bad = count_nonfinite(values.reshape(-1, 1) if values.ndim == 1 else values)
    if bad:
        raise DataValidationError(
            f"{source}: {bad} feature values are NaN, infinite or beyond float32's range "
            f"(|x| > {_FLOAT32_MAX:.3g}); impute, drop or rescale them first"
        )
    if y is not None:
        y = np.asarray(y)
        if y.ndim > 1 and y.size == max(y.shape):  # a column or row vector
            y = y.reshape(-1)
        if y.ndim != 1 or len(y) != x.shape[0]:
            raise DataValidationError(
                f"{source}: labels of shape {y.shape} for {x.shape[0]} samples; give one label per sample"
            )
        with np.errstate(invalid="ignore"):
            integral = np.issubdtype(y.dtype, np.integer) or (
                np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
            )
        if not integral:
            raise DataValidationError(
                f"{source}: labels must be integers (use -1 for unknown), got dtype {y.dtype}"
                + (" with NaN values" if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any() else "")
            )
        y = y.astype(np.int64)
        if (y < -1).any():
            raise DataValidationError(f"{source}: labels must be >= 0, or -1 for unknown; found {int(y.min())}")
    return x, y


def check_model_fits_data(encoder: object, datamodule: object, n_clusters: int | None = None) -> None:
    """Raise `ConfigError` if the data does not fit the encoder's input size or has fewer samples than clusters.

    Shared by `dec_lightning.modules.DEC.setup` and the ``dec-lightning`` command, which runs it
    before any trainer, logger or checkpoint folder is created. Checks what is known: the
    data module's ``input_dim`` and ``dataset`` (set up by now) and the encoder's ``input_dim``.

    Args:
        encoder: the encoder that will see the data.
        datamodule: the data module, already set up (reading ``input_dim`` may set it up).
        n_clusters: K, when the data is to be clustered; None skips the sample count check.
    """
    data_dim = getattr(datamodule, "input_dim", None)
    encoder_dim = getattr(encoder, "input_dim", None)
    if data_dim is not None and encoder_dim is not None and data_dim != encoder_dim:
        raise ConfigError(
            f"the data has {data_dim} features but the encoder expects {encoder_dim}; "
            f"set the encoder's input size (encoder.init_args.dims[0] in the config; image_shape for a ConvEncoder) "
            f"to {data_dim}"
        )
    dataset = getattr(datamodule, "dataset", None)
    if n_clusters is not None and dataset is not None and len(dataset) < n_clusters:
        raise ConfigError(
            f"model.n_clusters={n_clusters} but the data has only {len(dataset)} samples; "
            "K can be at most the number of samples"
        )
