"""Reuters text benchmarks: 4-class Reuters-21578 tf-idf, DEC's REUTERS-10K, or a rebuild from RCV1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.validation import MissingFileError, require_file

VARIANTS = ("reuters21578", "reuters10k", "rcv1")
REUTERS21578_FILE = "reuters21578_4cls_tfidf2000.npz"
REUTERS10K_FILE = "reutersidf10k.npy"
# DEC's REUTERS classes, numbered as DEC numbers them (cat_to_cid in its make_reuters_data)
DEC_CATEGORIES = ("CCAT", "GCAT", "MCAT", "ECAT")


def build_reuters10k(
    x: sp.spmatrix,
    target: sp.spmatrix | np.ndarray,
    target_names: Sequence[str],
    n_samples: int = 10000,
    n_features: int = 2000,
    seed: int = 1234,
    categories: Sequence[str] = DEC_CATEGORIES,
    scale: bool = True,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """REUTERS-10K as DEC made it, from a tf-idf corpus with multi-label topics (e.g. `fetch_rcv1`).

    DEC keeps the documents whose topics include exactly one of CCAT, GCAT, MCAT, ECAT
    (that one is the label), takes the 2000 most frequent terms and 10000 documents,
    computes tf-idf with unit L2 rows and multiplies it by sqrt(2000) (``scale``).

    `fetch_rcv1` has no raw counts, only log-tf-idf over 47236 terms, so this rebuild
    differs in two documented ways: "most frequent" is the document frequency among the
    eligible documents, and each row of the kept columns is re-normalised to unit L2 norm
    (rows with none of the kept terms stay zero). The 10000 documents are a seeded random
    draw from all eligible ones (DEC-keras takes the first 10000 in file order, then shuffles).

    Returns the sparse (n_samples, n_features) features and labels 0..3 in DEC's order.
    """
    x = sp.csr_matrix(x)
    target = sp.csr_matrix(target)
    names = list(target_names)
    missing = [c for c in categories if c not in names]
    if missing:
        raise ValueError(f"categories {missing} are not among the corpus' topics")
    topics = target[:, [names.index(c) for c in categories]].toarray() > 0
    eligible = np.flatnonzero(topics.sum(axis=1) == 1)
    if len(eligible) < n_samples:
        raise ValueError(f"only {len(eligible)} documents have exactly one of {list(categories)}; asked {n_samples}")
    labels = topics[eligible].argmax(axis=1)
    doc_freq = np.bincount(x[eligible].indices, minlength=x.shape[1])
    terms = np.sort(np.argsort(-doc_freq, kind="stable")[:n_features])
    pick = np.random.default_rng(seed).choice(len(eligible), size=n_samples, replace=False)
    sub = x[eligible[pick]][:, terms].astype(np.float64)
    norms = np.sqrt(np.asarray(sub.multiply(sub).sum(axis=1)).ravel())
    row_norm = np.sqrt(n_features) if scale else 1.0
    sub = sp.diags(np.where(norms > 0, row_norm / np.maximum(norms, 1e-300), 0.0)) @ sub
    return sp.csr_matrix(sub, dtype=np.float32), labels[pick].astype(np.int64)


class ReutersDataModule(InMemoryDataModule):
    """Reuters news by topic; tf-idf features kept sparse (batches are densified one at a time).

    Variants:
        ``reuters21578``: 7044 Reuters-21578 stories of the 4 most frequent single topics
            (earn, acq, crude, trade), 2000-term tf-idf, from
            ``data_dir/reuters/reuters21578_4cls_tfidf2000.npz`` (CSR arrays ``data``,
            ``indices``, ``indptr``, ``shape`` and ``labels``). A stand-in for REUTERS-10K
            that ships with the project's data; not the paper's set.
        ``reuters10k``: DEC's own ``data_dir/reuters/reutersidf10k.npy`` (10000 x 2000, the
            paper's REUTERS-10K). It is a pickled dict, so it is read with
            ``allow_pickle=True``: only load a copy from a source you trust.
        ``rcv1``: REUTERS-10K rebuilt from scikit-learn's `fetch_rcv1` (see `build_reuters10k`),
            cached by scikit-learn under ``data_dir/rcv1``.

    Args:
        data_dir: folder holding ``reuters/`` (and ``rcv1/`` for the rcv1 variant).
        variant: one of the above.
        scale: multiply the unit-L2 tf-idf rows by sqrt(n_features), as DEC does
            (``X * sqrt(2000)``), so features have a scale the autoencoder's defaults suit.
            ``reutersidf10k.npy`` already holds scaled values and is never rescaled.
        download: let `prepare_data` fetch RCV1 with scikit-learn (rcv1 variant only).
        seed: which 10000 RCV1 documents the rcv1 variant draws.
        batch_size: samples per training batch (paper: 256).
        num_workers: loader worker processes.
    """

    name = "reuters"

    def __init__(
        self,
        data_dir: str | Path = "data",
        variant: str = "reuters21578",
        scale: bool = True,
        download: bool = False,
        seed: int = 1234,
        batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.data_dir = Path(data_dir)
        self.variant = variant
        self.scale = scale
        self.download = download
        self.seed = seed

    @property
    def source(self) -> str:
        return f"Reuters ({self.variant}) in {self.data_dir}"

    def prepare_data(self) -> None:
        if self.download and self.variant == "rcv1":
            self._fetch_rcv1(download=True)

    def _fetch_rcv1(self, download: bool):  # -> sklearn Bunch
        from sklearn.datasets import fetch_rcv1

        try:
            return fetch_rcv1(data_home=str(self.data_dir / "rcv1"), download_if_missing=download)
        except OSError:
            raise MissingFileError(
                f"RCV1 not cached under {self.data_dir / 'rcv1'}; pass download=True "
                "(--data.init_args.download true) to fetch it with scikit-learn (about 650 MB)"
            ) from None

    def load_arrays(self) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
        if self.variant == "reuters10k":
            return self._load_reuters10k()
        if self.variant == "rcv1":
            bunch = self._fetch_rcv1(download=False)
            return build_reuters10k(bunch.data, bunch.target, bunch.target_names, seed=self.seed, scale=self.scale)
        x, y = self._load_reuters21578()
        if self.scale:
            x = (x * np.sqrt(x.shape[1])).tocsr()
        return x, y

    def _load_reuters21578(self) -> tuple[sp.csr_matrix, np.ndarray]:
        path = require_file(
            self.data_dir / "reuters" / REUTERS21578_FILE,
            "Reuters-21578 tf-idf file",
            "build it from the Reuters-21578 corpus with the project's build_reuters21578.py, "
            "or use variant='rcv1' (download=True) instead",
        )
        with np.load(path, allow_pickle=False) as z:
            x = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            y = z["labels"].astype(np.int64)
        return x, y

    def _load_reuters10k(self) -> tuple[np.ndarray, np.ndarray]:
        path = require_file(
            self.data_dir / "reuters" / REUTERS10K_FILE,
            "REUTERS-10K file",
            "get it with DEC-keras' data/reuters/get_data.sh (it builds the file from RCV1-v2), "
            "or use variant='rcv1' (download=True) to rebuild a REUTERS-10K-style set",
        )
        # DEC saved a dict with np.save, which only loads with pickling enabled
        data = np.load(path, allow_pickle=True).item()
        x = np.asarray(data["data"], dtype=np.float32)
        return x.reshape(len(x), -1), np.asarray(data["label"]).reshape(-1).astype(np.int64)
