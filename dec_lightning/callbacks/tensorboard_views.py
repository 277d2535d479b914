"""TensorBoard views of a DEC run: cluster sizes, embedding projector, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from scipy.optimize import linear_sum_assignment

from dec_lightning.modules.assignment import soft_assignment
from dec_lightning.modules.dataset_pass import whole_dataset_pass

SIZES_TAG = "cluster/sizes"
EMBEDDING_TAG = "final/embedding"
CONFUSION_IMAGE_TAG = "final/confusion_matrix"
CONFUSION_TEXT_TAG = "final/confusion_table"

# 3x5 bitmaps of the digits, enough to label the rows and columns of the confusion image
# without a font file or matplotlib.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
}
_WHITE = np.array([255, 255, 255], dtype=np.float64)
_DARK_BLUE = np.array([8, 48, 107], dtype=np.float64)


def _text_bitmap(text: str, scale: int) -> np.ndarray:
    """Boolean image of a string of digits, each glyph 3x5 pixels times ``scale``, 1 column apart."""
    glyphs = [np.array([c == "1" for c in _GLYPHS[ch]], dtype=bool).reshape(5, 3) for ch in text]
    gap = np.zeros((5, 1), dtype=bool)
    parts: list[np.ndarray] = []
    for glyph in glyphs:
        parts += [glyph, gap]
    bitmap = np.concatenate(parts[:-1], axis=1) if parts else np.zeros((5, 0), dtype=bool)
    return np.kron(bitmap, np.ones((scale, scale), dtype=bool)).astype(bool)


def _stamp(image: np.ndarray, bitmap: np.ndarray, center: tuple[int, int]) -> None:
    """Draw ``bitmap`` in black onto ``image`` (H, W, 3), centred at ``(row, col)``."""
    h, w = bitmap.shape
    top, left = center[0] - h // 2, center[1] - w // 2
    image[top : top + h, left : left + w][bitmap] = 0


def confusion_counts(preds: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """Class-by-cluster counts of the labelled samples, clusters ordered by their best-matching class.

    Columns follow the Hungarian matching used for ACC (DEC eq. 10): matched clusters
    first, in the order of their classes, so a good clustering shows as a diagonal;
    unmatched clusters follow. Returns ``(counts, class ids, cluster ids)``.
    """
    known = target >= 0
    preds, target = preds[known].astype(np.int64), target[known].astype(np.int64)
    classes, class_index = np.unique(target, return_inverse=True)
    n_clusters = int(preds.max()) + 1 if len(preds) else 0
    counts = np.zeros((len(classes), n_clusters), dtype=np.int64)
    np.add.at(counts, (class_index, preds), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    order = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    order += [c for c in range(n_clusters) if c not in order]
    return counts[:, order], [int(c) for c in classes], order


def confusion_image(
    counts: np.ndarray, row_names: Sequence[int], col_names: Sequence[int], cell: int = 20, scale: int = 2
) -> np.ndarray:
    """Render a count matrix as an RGB uint8 image (H, W, 3): rows = true classes, columns = clusters.

    Each row is normalised by its total, so the colour of a cell is the share of that class
    in that cluster (white 0 -> dark blue 1). Row and column ids are drawn in a 3x5 pixel
    font; NumPy only, so no plotting library is needed.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_rows, n_cols = counts.shape
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    label_width = max(len(str(n)) for n in [*row_names, *col_names, 0]) * 4 * scale
    cell = max(cell, label_width + 4)
    left, top = label_width + 6, 5 * scale + 6
    image = np.full((top + n_rows * cell + 1, left + n_cols * cell + 1, 3), 255, dtype=np.uint8)
    colours = _WHITE + shares[..., None] * (_DARK_BLUE - _WHITE)
    block = np.kron(colours, np.ones((cell, cell, 1)))
    image[top : top + n_rows * cell, left : left + n_cols * cell] = block.round().astype(np.uint8)
    image[top : top + n_rows * cell + 1 : cell, left:] = 200  # grid lines
    image[top:, left : left + n_cols * cell + 1 : cell] = 200
    for i, name in enumerate(row_names):
        _stamp(image, _text_bitmap(str(name), scale), (top + i * cell + cell // 2, (left - 2) // 2))
    for j, name in enumerate(col_names):
        _stamp(image, _text_bitmap(str(name), scale), (top // 2, left + j * cell + cell // 2))
    return image


def confusion_markdown(counts: np.ndarray, row_names: Sequence[int], col_names: Sequence[int]) -> str:
    """The same counts as a Markdown table, for TensorBoard's text tab."""
    header = "| class \\ cluster | " + " | ".join(str(c) for c in col_names) + " |"
    rule = "|---" * (len(col_names) + 1) + "|"
    rows = [f"| {r} | " + " | ".join(str(int(v)) for v in row) + " |" for r, row in zip(row_names, counts, strict=True)]
    return "\n".join([header, rule, *rows])


def tensorboard_writer(trainer: L.Trainer) -> Any | None:
    """The SummaryWriter of the trainer's first TensorBoard logger, on global rank 0 only."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TensorBoardViews(L.Callback):
    """Adds what scalars cannot show to a DEC run's TensorBoard log.

    * ``cluster/sizes`` (Histograms tab): the cluster labels at every refresh of P, one bin
      per cluster, so each bar is a cluster's size; a collapsing or swelling cluster is
      visible at a glance.
    * at the end of clustering, on the final model:
      ``final/embedding`` (Projector tab): up to ``max_samples`` embeddings with their
      cluster and true label as metadata; ``final/confusion_matrix`` (Images tab) and
      ``final/confusion_table`` (Text tab): classes against clusters, when labels exist.

    Without a `TensorBoardLogger` it does nothing. Under DDP every rank takes part in the
    final whole-dataset pass (a collective), and only global rank 0 writes.

    Args:
        max_samples: embeddings sent to the projector (a random subset when N is larger).
        seed: seed of that subset.
    """

    def __init__(self, max_samples: int = 2000, seed: int = 0) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.max_samples = max_samples
        self.seed = seed
        self._seen_refreshes = 0
        self._batch_step = 0

    @staticmethod
    def _has_tensorboard(trainer: L.Trainer) -> bool:
        return any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        count = getattr(pl_module, "refresh_count", None)
        if count is None or count == self._seen_refreshes:
            return
        self._seen_refreshes = count
        writer = tensorboard_writer(trainer)
        if writer is None or pl_module.labels is None:
            return
        # refreshes happen at the start of a batch: log at the step that batch started from
        edges = np.arange(pl_module.n_clusters + 1) - 0.5
        writer.add_histogram(SIZES_TAG, pl_module.labels.cpu().numpy(), self._batch_step, bins=edges)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, "centers") or not self._has_tensorboard(trainer):
            return
        alpha = pl_module.hparams.get("alpha", 1.0)

        def embed_and_assign(x: torch.Tensor) -> torch.Tensor:
            z = pl_module.embed(x)
            return torch.cat([z, soft_assignment(z, pl_module.centers, alpha)], dim=1)

        out, y = whole_dataset_pass(trainer, pl_module, embed_and_assign)
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        z, q = out[:, : -pl_module.n_clusters].cpu(), out[:, -pl_module.n_clusters :]
        preds, y = q.argmax(dim=1).cpu().numpy(), y.cpu().numpy()
        self.write_final(writer, z, preds, y, trainer.global_step)

    def write_final(self, writer: Any, z: torch.Tensor, preds: np.ndarray, y: np.ndarray, step: int) -> None:
        """Projector entry for a sample of the embeddings, and the confusion views when labels exist."""
        n = len(preds)
        generator = torch.Generator().manual_seed(self.seed)
        sample = torch.randperm(n, generator=generator)[: self.max_samples].sort().values.numpy()
        labelled = bool((y >= 0).any())
        if labelled:
            metadata: list[Any] = [[str(preds[i]), str(y[i]) if y[i] >= 0 else "unknown"] for i in sample]
            header = ["cluster", "label"]
        else:
            metadata, header = [str(preds[i]) for i in sample], None
        writer.add_embedding(z[sample], metadata=metadata, metadata_header=header, tag=EMBEDDING_TAG, global_step=step)
        if labelled:
            counts, classes, clusters = confusion_counts(preds, y)
            image = confusion_image(counts, classes, clusters)
            writer.add_image(CONFUSION_IMAGE_TAG, image, step, dataformats="HWC")
            note = (
                "Rows: true class; columns: cluster, ordered by the Hungarian matching behind ACC "
                "(a good clustering is a diagonal). The image colours each row by its shares.\n\n"
            )
            writer.add_text(CONFUSION_TEXT_TAG, note + confusion_markdown(counts, classes, clusters), step)
        writer.flush()
