"""Arrays for the beyond-DEC benchmarks: digits (bundled); USPS, MNIST, Reuters from the shared data folder.

Loaded directly (not through DataModules of their own) and fed to `ArrayDataModule`.
Pixels are scaled to [0, 1], as DEC-keras does; Reuters is the 4-class Reuters-21578 tf-idf
scaled by sqrt(d) as `ReutersDataModule` does, densified. ``DEC_DATA_DIR`` points at the data
folder (default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHAPES = {"digits": (1, 8, 8), "usps": (1, 16, 16), "mnist": (1, 28, 28)}
DATASETS = (*IMAGE_SHAPES, "reuters")


def data_dir() -> Path:
    return Path(os.environ.get("DEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: float32 features (images: in [0, 1], one flat image per row) and int64 labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return (x / 16.0).astype(np.float32), y.astype(np.int64)
    if name == "usps":
        from torchvision.datasets import USPS

        parts = [USPS(str(data_dir() / "usps"), train=t, download=False) for t in (True, False)]
        x = np.concatenate([p.data.reshape(len(p.data), -1) for p in parts]).astype(np.float32) / 255.0
        y = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
        return x, y
    if name == "mnist":
        from torchvision.datasets import MNIST

        parts = [MNIST(str(data_dir()), train=t, download=False) for t in (True, False)]
        x = np.concatenate([p.data.numpy().reshape(len(p.data), -1) for p in parts]).astype(np.float32) / 255.0
        y = np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64)
        return x, y
    if name == "reuters":
        from dec_lightning.data import ReutersDataModule

        x, y = ReutersDataModule(data_dir()).load_arrays()
        return x.toarray().astype(np.float32), y.astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
