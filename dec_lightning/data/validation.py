"""Checks on data as it enters, so bad input fails with one clear message."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class DataValidationError(ValueError):
    """Input data that DEC cannot train on; the message says what to change."""


def validate_arrays(
    x: np.ndarray | sp.spmatrix, y: np.ndarray | None = None, *, source: str = "data"
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]:
    """Return float32 features and int64 labels, or raise `DataValidationError`."""
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32)
        values = x.data
    else:
        x = np.asarray(x)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number):
            raise DataValidationError(f"{source}: features must be numeric, got dtype {x.dtype}")
        if x.ndim != 2:
            raise DataValidationError(
                f"{source}: features must be 2-D (n_samples, n_features), got shape {x.shape}; "
                "flatten images first, e.g. x.reshape(len(x), -1)"
            )
        x = x.astype(np.float32, copy=False)
        values = x
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataValidationError(f"{source}: empty input, shape {x.shape}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataValidationError(
            f"{source}: {int(bad.sum())} NaN or infinite feature values; impute or drop them first"
        )
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != x.shape[0]:
            raise DataValidationError(f"{source}: {len(y)} labels for {x.shape[0]} samples; lengths must match")
        integral = np.issubdtype(y.dtype, np.integer) or (
            np.issubdtype(y.dtype, np.number) and bool(np.all(np.mod(y, 1) == 0))
        )
        if not integral:
            raise DataValidationError(f"{source}: labels must be integers (use -1 for unknown), got {y.dtype}")
        y = y.astype(np.int64)
    return x, y
