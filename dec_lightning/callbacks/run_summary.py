"""A one-screen summary at the end of DEC clustering: why it stopped, scores, cluster sizes, files."""

from __future__ import annotations

import time

import lightning as L
import torch

from dec_lightning.callbacks.tolerance_stopping import ToleranceStopping

_BAR_WIDTH = 30
_MAX_BARS = 20  # more clusters than this get one line of statistics instead of one bar each


def _stop_reason(trainer: L.Trainer) -> str:
    for callback in trainer.callbacks:
        if isinstance(callback, ToleranceStopping) and callback.stopped_step is not None:
            return f"labels settled (fewer than {callback.tol:.2%} changed between refreshes of P)"
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "max_steps reached, labels still changing"
    return "stopped before max_steps"


def cluster_size_lines(sizes: torch.Tensor) -> list[str]:
    """Cluster sizes as text bars (one per cluster), or one line of statistics for many clusters."""
    sizes = sizes.long().cpu()
    k, n = len(sizes), int(sizes.sum())
    stats = f"{k} clusters, min {int(sizes.min())}, max {int(sizes.max())}, mean {n / max(k, 1):.1f}"
    if k > _MAX_BARS:
        return [f"clusters:   {stats}"]
    largest = max(int(sizes.max()), 1)
    lines = [f"clusters:   {stats}"]
    for j, size in enumerate(sizes.tolist()):
        bar = "#" * round(_BAR_WIDTH * size / largest)
        lines.append(f"  {j:>4} {bar:<{_BAR_WIDTH}} {size:>7} ({100 * size / max(n, 1):4.1f}%)")
    return lines


class RunSummary(L.Callback):
    """Prints, on global rank 0 at the end of fitting, what a user asks first after a run.

    Runs at ``on_fit_end``, after `DEC` has assigned the whole dataset with the final model,
    so sizes and scores are the final ones; it prints before the ``dec-lightning`` command's
    closing line, which stays the last line of the output. The text is also kept in `text`.
    """

    def __init__(self) -> None:
        self.text = ""
        self._start = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        labels = getattr(pl_module, "labels", None)
        if labels is None or not hasattr(pl_module, "refresh_count"):
            return
        lines = [
            "-" * 20 + " DEC clustering summary " + "-" * 20,
            f"stopped:    at step {trainer.global_step} of at most {trainer.max_steps}: {_stop_reason(trainer)}",
            f"            {pl_module.refresh_count} refreshes of P, {time.perf_counter() - self._start:.0f}s of clustering",
        ]
        scores = getattr(pl_module, "scores", {})
        if scores:
            lines.append("scores:     " + "  ".join(f"{k.upper()}={v:.3f}" for k, v in scores.items()))
        else:
            lines.append("scores:     none (the data has no labels)")
        lines += cluster_size_lines(torch.bincount(labels.cpu(), minlength=pl_module.n_clusters))
        for logger in trainer.loggers:
            log_dir = getattr(logger, "log_dir", None)
            if log_dir:
                lines.append(f"logs:       {log_dir} ({type(logger).__name__})")
                if type(logger).__name__ == "TensorBoardLogger":
                    lines.append(f"            view with: tensorboard --logdir {logger.save_dir}")
        if not trainer.loggers:
            lines.append("logs:       none (no logger)")
        checkpoint = trainer.checkpoint_callback
        path = getattr(checkpoint, "best_model_path", "") or getattr(checkpoint, "last_model_path", "")
        lines.append(f"checkpoint: {path}" if path else "checkpoint: none written")
        self.text = "\n".join(lines)
        if trainer.is_global_zero:
            print(self.text, flush=True)
