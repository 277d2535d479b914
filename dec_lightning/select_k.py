"""Choosing the number of clusters K by DEC's generalizability (Xie et al., 2016, sec. 5.5).

DEC's loss on the data it was trained on keeps falling as K grows, so it cannot choose K.
Section 5.5 of the paper instead trains DEC for each K on a training split and compares the
loss there with the loss on held-out data:

    G = L_train / L_validation,

where each L is DEC's objective KL(P || Q) (eq. 2), with P computed from that split's own Q
(eq. 3), averaged over the split's samples. G is close to 1 while the clusters found on the
training split also fit unseen samples; once K passes the number of clusters the data has,
DEC splits real clusters at arbitrary places, held-out samples fall between the pieces, their
soft assignments turn less confident, L_validation grows and G drops sharply. The paper picks
the K just before that drop (MNIST: G falls from 9 to 10 clusters).

`select_k` runs that protocol with ONE pretrained autoencoder shared by all K (pretrained on
the training split only, so the held-out samples are never seen), and DEC trained per K from a
copy of it. Both ``dec-lightning select-k`` and `dec_lightning.DEC.select_k` call it.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from lightning.pytorch.loggers import Logger
from sklearn.metrics import silhouette_score
from torch import Tensor, nn

from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.indexed import IndexedDataset
from dec_lightning.data.validation import ConfigError
from dec_lightning.files import atomic_write
from dec_lightning.metrics.clustering import clustering_scores
from dec_lightning.modules.assignment import kl_divergence, target_distribution
from dec_lightning.modules.dataset_pass import embed_and_assign

RULE = (
    "the K just before the sharpest drop of generalizability G = L_train / L_holdout between consecutive "
    "K tried (DEC paper, sec. 5.5); if G never drops, the K with the highest G"
)
CSV_FILE = "select_k.csv"
_K_SPEC = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*(?::\s*(\d+)\s*)?$")


def parse_k_range(spec: str | int | Iterable[int]) -> list[int]:
    """The K values to try, from ``"5:15"`` (both ends included), ``"5:15:2"`` (a step), ``"4,8,10"`` or integers.

    Returned sorted and without repeats; at least two values, each >= 2 (a single cluster is
    no clustering, and a single K leaves nothing to choose between).
    """
    if isinstance(spec, str):
        text = spec.strip()
        match = _K_SPEC.match(text)
        if match:
            start, stop, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
            if step < 1 or stop < start:
                raise ConfigError(f"K range {spec!r}: expected START:STOP[:STEP] with START <= STOP and STEP >= 1")
            ks = list(range(start, stop + 1, step))
        elif re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
            ks = [int(v) for v in text.split(",")]
        else:
            raise ConfigError(
                f"K range {spec!r} is not understood: write START:STOP (both included, e.g. 5:15), "
                "START:STOP:STEP or a comma-separated list (e.g. 4,8,10)"
            )
    elif isinstance(spec, (int, np.integer)):
        ks = [int(spec)]
    else:
        ks = list(spec)
        if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in ks):
            raise ConfigError(f"K values must be integers, got {ks!r}")
        ks = [int(k) for k in ks]
    ks = sorted(set(ks))
    if ks and ks[0] < 2:
        raise ConfigError(f"K values must be >= 2 (a single cluster is no clustering), got {ks[0]}")
    if len(ks) < 2:
        raise ConfigError(f"select K needs at least two K values to compare, got {ks}")
    return ks


def check_ks(ks: Sequence[int], n_train: int, n_holdout: int) -> None:
    """Every K must fit the training split (k-means needs K samples) and the held-out split (scored there)."""
    n = min(n_train, n_holdout)
    if ks[-1] > n:
        raise ConfigError(
            f"K={ks[-1]} is more than the samples of the {'training' if n_train <= n_holdout else 'held-out'} "
            f"split ({n}); try fewer clusters or more data"
        )


def split_dataset(dataset: IndexedDataset, holdout: float, seed: int) -> tuple[IndexedDataset, IndexedDataset]:
    """A seeded random split into a training set and a held-out set holding ``holdout`` of the samples.

    Both are new `IndexedDataset` s indexed 0..n-1, as DEC's lookup of P by sample index requires.
    """
    if not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ConfigError(f"the held-out fraction must be strictly between 0 and 1, got {holdout!r}")
    n = len(dataset)
    n_holdout = round(n * holdout)
    if n_holdout < 1 or n_holdout > n - 1:
        raise ConfigError(f"a held-out fraction of {holdout} leaves an empty split of the {n} samples")
    order = np.random.default_rng(seed).permutation(n)
    return _subset(dataset, np.sort(order[n_holdout:])), _subset(dataset, np.sort(order[:n_holdout]))


def _subset(dataset: IndexedDataset, rows: np.ndarray) -> IndexedDataset:
    x = dataset.x[rows] if sp.issparse(dataset.x) else dataset.rows(torch.as_tensor(rows))
    return IndexedDataset(x, dataset.y[torch.as_tensor(rows)])


def datamodule_of(dataset: IndexedDataset, batch_size: int, name: str = "data") -> InMemoryDataModule:
    """A DataModule serving ``dataset`` (already loaded) with the package's seeded, resumable shuffling."""
    data = InMemoryDataModule(batch_size=batch_size)
    data.dataset = dataset
    data.name = name
    return data


def dec_loss(q: Tensor) -> float:
    """DEC's objective on a set of soft assignments: mean over rows of KL(P || Q), P from this Q (eqs. 2-3)."""
    return float(kl_divergence(target_distribution(q.double()), q.double()))


def generalizability(q_train: Tensor, q_holdout: Tensor) -> tuple[float, float, float]:
    """``(G, L_train, L_holdout)`` with G = L_train / L_holdout (sec. 5.5); each split gets its own P."""
    loss_train, loss_holdout = dec_loss(q_train), dec_loss(q_holdout)
    g = loss_train / loss_holdout if loss_holdout > 0 else math.nan
    return g, loss_train, loss_holdout


def recommend_k(ks: Sequence[int], g: Sequence[float]) -> int:
    """`RULE`: the K before the largest drop G(K_i) - G(K_i+1); the first on ties; NaN G are skipped."""
    if len(ks) != len(g) or not ks:
        raise ValueError(f"need one G per K, got {len(ks)} K and {len(g)} G")
    drops = [(g[i] - g[i + 1], -i) for i in range(len(ks) - 1) if not (math.isnan(g[i]) or math.isnan(g[i + 1]))]
    if drops and max(drops)[0] > 0:
        return int(ks[-max(drops)[1]])
    finite = [(v, -i) for i, v in enumerate(g) if not math.isnan(v)]
    return int(ks[-max(finite)[1]]) if finite else int(ks[0])


@dataclass
class KScore:
    """One K's row of the table: G and its two losses, and the held-out split's clustering quality."""

    k: int
    generalizability: float
    loss_train: float
    loss_holdout: float
    silhouette: float  # of the held-out embedding under its DEC labels (a seeded subsample)
    acc: float  # held-out ACC/NMI against the labels; NaN without labels
    nmi: float
    steps: int  # DEC steps run for this K
    seconds: float


@dataclass
class SelectKResult:
    """The table over K, the recommended K and the rule that chose it."""

    scores: list[KScore]
    recommended_k: int
    rule: str = RULE
    csv_path: Path | None = field(default=None)

    @property
    def ks(self) -> list[int]:
        return [s.k for s in self.scores]

    def rows(self) -> list[dict[str, float | int]]:
        return [{**asdict(s), "recommended": int(s.k == self.recommended_k)} for s in self.scores]

    def write_csv(self, path: str | Path) -> Path:
        """One row per K (``recommended`` = 1 on the pick), written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = [f.name for f in fields(KScore)] + ["recommended"]

        def write(f: IO[bytes]) -> None:
            lines = [",".join(names)]
            for row in self.rows():
                lines.append(",".join(_csv_value(row[name]) for name in names))
            f.write(("\n".join(lines) + "\n").encode())

        atomic_write(path, write)
        self.csv_path = path
        return path

    def log_to(self, logger: Logger) -> None:
        """TensorBoard (or any logger) scalars ``select_k/<column>`` with K as the step."""
        for s in self.scores:
            metrics = {
                f"select_k/{name}": float(getattr(s, name))
                for name in ("generalizability", "loss_train", "loss_holdout", "silhouette", "acc", "nmi")
                if not math.isnan(getattr(s, name))
            }
            logger.log_metrics(metrics, step=s.k)
        logger.log_metrics({"select_k/recommended_k": float(self.recommended_k)}, step=self.recommended_k)
        logger.save()

    def table(self) -> str:
        """The table as Markdown, the pick marked."""
        out = ["| K | G = L_train / L_holdout | L_train | L_holdout | silhouette | ACC | NMI | DEC steps |"]
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for s in self.scores:
            mark = " ←" if s.k == self.recommended_k else ""
            out.append(
                f"| {s.k}{mark} | {s.generalizability:.3f} | {s.loss_train:.4f} | {s.loss_holdout:.4f} | "
                f"{s.silhouette:.3f} | {_num(s.acc)} | {_num(s.nmi)} | {s.steps} |"
            )
        return "\n".join(out)

    def summary(self) -> str:
        """The pick, its rule, and the size of the drop behind it: a drop of a few thousandths is noise."""
        best_silhouette = max(self.scores, key=lambda s: -math.inf if math.isnan(s.silhouette) else s.silhouette)
        i = self.ks.index(self.recommended_k)
        drop = ""
        if i + 1 < len(self.scores):
            here, after = self.scores[i], self.scores[i + 1]
            drop = f"G {here.generalizability:.3f} at K={here.k} -> {after.generalizability:.3f} at K={after.k}; "
        return (
            f"recommended K={self.recommended_k} (rule: {self.rule}); {drop}highest silhouette at K={best_silhouette.k}"
        )


def _num(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def _csv_value(v: float) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def score_k(
    module: L.LightningModule,
    train: IndexedDataset,
    holdout: IndexedDataset,
    silhouette_samples: int,
    seed: int,
) -> dict[str, float]:
    """G and its losses, and the held-out silhouette, ACC and NMI, of a DEC model trained on ``train``."""
    _, q_train = embed_and_assign(module, train)
    z_holdout, q_holdout = embed_and_assign(module, holdout)
    g, loss_train, loss_holdout = generalizability(q_train, q_holdout)
    labels = q_holdout.argmax(dim=1)
    scores = clustering_scores(labels, holdout.y)
    return {
        "generalizability": g,
        "loss_train": loss_train,
        "loss_holdout": loss_holdout,
        "silhouette": embedding_silhouette(z_holdout.numpy(), labels.numpy(), silhouette_samples, seed),
        "acc": scores.get("acc", math.nan),
        "nmi": scores.get("nmi", math.nan),
    }


def embedding_silhouette(z: np.ndarray, labels: np.ndarray, max_samples: int, seed: int) -> float:
    """Silhouette of the embedding on at most ``max_samples`` seeded rows (it is quadratic in N); NaN if undefined."""
    if max_samples < 2:
        raise ConfigError(f"the silhouette needs at least 2 samples, got silhouette_samples={max_samples}")
    if len(z) > max_samples:
        rows = np.random.default_rng(seed).choice(len(z), max_samples, replace=False)
        z, labels = z[rows], labels[rows]
    if not 2 <= len(np.unique(labels)) <= len(z) - 1:
        return math.nan
    return float(silhouette_score(z, labels))


def select_k(
    ks: Sequence[int],
    train: IndexedDataset,
    holdout: IndexedDataset,
    encoder: nn.Module,
    build_module: Callable[[nn.Module, int], L.LightningModule],
    build_trainer: Callable[[int], L.Trainer],
    batch_size: int,
    seed: int,
    silhouette_samples: int = 2000,
    logger: Logger | None = None,
    csv_path: str | Path | None = None,
    report: Callable[[str], None] | None = None,
) -> SelectKResult:
    """Train DEC for every K on ``train`` from a copy of the pretrained ``encoder``; score each on ``holdout``.

    Args:
        ks: the K values, e.g. from `parse_k_range`.
        train, holdout: the two splits (`split_dataset`); the encoder must not have seen ``holdout``.
        encoder: the pretrained encoder, shared: each K starts from a deep copy of it.
        build_module: ``(encoder copy, K) -> DEC module`` (the caller's settings).
        build_trainer: ``K -> lightning.Trainer`` with DEC's callbacks (k-means init, refresh of P, tol).
        batch_size: training batch size of the DEC stage.
        seed: reseeds everything before each K, so a K's row does not depend on the other K tried.
        silhouette_samples: held-out rows the silhouette is computed on.
        logger: gets the table as scalars ``select_k/*`` with K as the step.
        csv_path: where to write the table.
        report: called with one line per K as it finishes.
    """
    check_ks(ks, len(train), len(holdout))
    data = datamodule_of(train, batch_size, name="select_k_train")
    scores = []
    for k in ks:
        start = time.perf_counter()
        L.seed_everything(seed, verbose=False)
        module = build_module(copy.deepcopy(encoder), k)
        trainer = build_trainer(k)
        trainer.fit(module, datamodule=data)
        row = KScore(
            k=k,
            steps=int(trainer.global_step),
            seconds=0.0,
            **score_k(module, train, holdout, silhouette_samples, seed),
        )
        row.seconds = round(time.perf_counter() - start, 1)
        scores.append(row)
        if report is not None:
            report(
                f"K={k}: G={row.generalizability:.3f} L_train={row.loss_train:.4f} L_holdout={row.loss_holdout:.4f} "
                f"silhouette={row.silhouette:.3f} ACC={_num(row.acc)} NMI={_num(row.nmi)} "
                f"steps={row.steps} {row.seconds:.0f}s"
            )
    result = SelectKResult(scores, recommend_k(ks, [s.generalizability for s in scores]))
    if csv_path is not None:
        result.write_csv(csv_path)
    if logger is not None:
        result.log_to(logger)
    return result
