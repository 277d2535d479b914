"""Checks on data, files and settings as they enter, so bad input fails with one clear message.

Every error a user can fix without touching the code derives from `DECInputError`; the
``dec-lightning`` command prints those as one line instead of a traceback. Each is also
a `ValueError` or a `FileNotFoundError`, so ordinary ``except`` clauses keep working.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

# float32 is what the models see; finite float64 values beyond this become inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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


def validate_arrays(
    x: np.ndarray | sp.spmatrix, y: np.ndarray | None = None, *, source: str = "data"
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]:
    """Return float32 features and int64 labels, or raise `DataValidationError`.

    Catches what would otherwise surface deep inside torch or scikit-learn: non-numeric,
    non-2-D or empty features, NaN/inf (also finite values beyond float32's range, which
    become inf once cast), and labels that are not one integer per sample.
    """
    if sp.issparse(x):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataValidationError(f"{source}: features must be real numbers, got sparse dtype {x.dtype}")
        x = sp.csr_matrix(x, dtype=np.float32)
        values = x.data
    else:
        x = np.asarray(x)
        if x.dtype == np.bool_:
            x = x.astype(np.float32)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
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
        with np.errstate(over="ignore"):
            x = x.astype(np.float32, copy=False)
        values = x
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataValidationError(f"{source}: empty input, shape {x.shape}; it needs samples and features")
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataValidationError(
            f"{source}: {int(bad.sum())} feature values are NaN, infinite or beyond float32's range "
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
