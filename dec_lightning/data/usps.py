"""USPS: 9298 handwritten 16x16 digits, the DEC paper's second image benchmark."""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import numpy as np

from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.validation import MissingFileError

_FILES = ("usps.bz2", "usps.t.bz2")  # torchvision's names for the train and test splits
_N_PIXELS = 256
_PAIR = re.compile(r"(\d+):(\S+)")  # libsvm "index:value"; absent indices are 0


def read_usps_libsvm(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a libsvm-format USPS split: lines ``label 1:v1 ... 256:v256``, v in [-1, 1], label = digit + 1.

    Returns grey values v as float32 (n, 256) and digits 0..9. Parsed here rather than through
    `torchvision.datasets.USPS`, which truncates the values to uint8.
    """
    with bz2.open(path, "rt") as f:
        lines = [line.split(maxsplit=1) for line in f if line.strip()]
    x = np.zeros((len(lines), _N_PIXELS), dtype=np.float32)
    y = np.empty(len(lines), dtype=np.int64)
    for i, (label, features) in enumerate(lines):
        y[i] = int(float(label)) - 1
        pairs = np.array(_PAIR.findall(features), dtype=np.float64).reshape(-1, 2)
        x[i, pairs[:, 0].astype(np.int64) - 1] = pairs[:, 1]
    return x, y


class USPSDataModule(InMemoryDataModule):
    """USPS train (7291) and test (2007) concatenated: 9298 x 256, pixels in [0, 1].

    Pixels are ``(v + 1) / 2`` for the original grey value v in [-1, 1]. That is exactly
    DEC-keras' scaling (it reads DEC-format files holding v + 1 in [0, 2] and divides by 2)
    and, unlike torchvision's uint8 images, it keeps the 3-decimal precision of the source.

    Reads torchvision's files ``usps.bz2`` and ``usps.t.bz2`` from ``data_dir`` (or from
    ``data_dir/usps``). When they are absent but ``usps.h5`` (the Kaggle-style file, groups
    ``train`` and ``test`` with ``data`` in [0, 1] and ``target``) is there, it is read with
    h5py, which is then needed but is not a dependency of this package.

    Args:
        data_dir: folder holding the USPS files, or its parent.
        download: let `prepare_data` fetch the libsvm files with torchvision when missing.
        batch_size: samples per training batch (paper: 256).
        num_workers: loader worker processes.
    """

    name = "usps"

    def __init__(
        self, data_dir: str | Path = "data/usps", download: bool = False, batch_size: int = 256, num_workers: int = 0
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.data_dir = Path(data_dir)
        self.download = download

    @property
    def source(self) -> str:
        return f"USPS in {self.folder}"

    @property
    def folder(self) -> Path:
        """``data_dir`` itself, or its ``usps`` subfolder when only that one holds the files."""
        nested = self.data_dir / "usps"
        if not self._has_files(self.data_dir) and self._has_files(nested):
            return nested
        return self.data_dir

    @staticmethod
    def _has_files(folder: Path) -> bool:
        return all((folder / f).is_file() for f in _FILES) or (folder / "usps.h5").is_file()

    def prepare_data(self) -> None:
        if self.download and not all((self.folder / f).is_file() for f in _FILES):
            from torchvision.datasets import USPS

            for train in (True, False):
                USPS(self.folder, train=train, download=True)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        folder = self.folder
        if all((folder / f).is_file() for f in _FILES):
            parts = [read_usps_libsvm(folder / f) for f in _FILES]
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            return (x + 1.0) / 2.0, y
        if (folder / "usps.h5").is_file():
            return self._load_h5(folder / "usps.h5")
        raise MissingFileError(
            f"USPS not found in {self.data_dir}: expected usps.bz2 and usps.t.bz2 (torchvision layout) or usps.h5; "
            "pass download=True (--data.init_args.download true) to fetch them with torchvision"
        )

    @staticmethod
    def _load_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            import h5py
        except ImportError:
            raise ImportError(
                f"{path} needs h5py (pip install h5py), or use the usps.bz2/usps.t.bz2 files instead"
            ) from None
        with h5py.File(path, "r") as f:
            x = np.concatenate([f[s]["data"][:] for s in ("train", "test")]).astype(np.float32)
            y = np.concatenate([f[s]["target"][:] for s in ("train", "test")]).astype(np.int64)
        return x.reshape(len(x), -1), y
