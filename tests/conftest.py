"""Shared fixtures: one CPU thread, a seeded blobs datamodule, quiet trainer settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

# The test machine is shared: one thread everywhere, set before torch/numpy spin up pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from dec_lightning.data import ArrayDataModule

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]

BLOBS_N = 240
BLOBS_DIM = 16
BLOBS_K = 4


@pytest.fixture(scope="session")
def trainer_kwargs() -> dict[str, Any]:
    """CPU trainer without logger, checkpoints, progress bar or summary: fast and side-effect free.

    Session-scoped so module-scoped fixtures can use it; pass it as ``**trainer_kwargs``, don't mutate it.
    """
    return {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }


def blobs_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated Gaussian blobs in 16-D: clusterable in a handful of steps."""
    x, y = make_blobs(n_samples=BLOBS_N, n_features=BLOBS_DIM, centers=BLOBS_K, cluster_std=1.0, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return blobs_arrays()


@pytest.fixture
def blobs_datamodule(blobs: tuple[np.ndarray, np.ndarray]) -> ArrayDataModule:
    """Seeded tiny labelled datamodule (240 x 16, 4 clusters, batch 32 -> 8 batches per epoch)."""
    L.seed_everything(0, verbose=False)
    x, y = blobs
    return ArrayDataModule(x, labels=y, batch_size=32)


@pytest.fixture
def data_dir() -> Path:
    """Real datasets (MNIST, USPS, Reuters): ``$DEC_DATA_DIR``, default ``<repo>/../shared/data``."""
    path = Path(os.environ.get("DEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path}; set DEC_DATA_DIR to the shared data folder")
    return path


@pytest.fixture
def fsync_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``os.fsync`` patched to record what it syncs, "file" or "dir", in the returned list."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced
