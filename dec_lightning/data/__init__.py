"""DataModules; every dataset yields ``(x, y, index)`` with ``y = -1`` where unlabeled."""

from dec_lightning.data.arrays import ArrayDataModule, load_array_file
from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.digits import DigitsDataModule
from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.data.mnist import MNISTDataModule
from dec_lightning.data.reuters import ReutersDataModule, build_reuters10k
from dec_lightning.data.usps import USPSDataModule
from dec_lightning.data.validation import DataValidationError, validate_arrays

__all__ = [
    "ArrayDataModule",
    "DataValidationError",
    "DigitsDataModule",
    "InMemoryDataModule",
    "IndexedDataset",
    "MNISTDataModule",
    "ReutersDataModule",
    "USPSDataModule",
    "build_reuters10k",
    "collate_batch",
    "load_array_file",
    "validate_arrays",
]
