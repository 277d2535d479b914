"""Name the current DEC phase in Lightning's progress bar: layer-wise k/K, fine-tune, clustering."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


def describe_phase(trainer: L.Trainer, pl_module: L.LightningModule) -> str:
    """One line saying where the run is, in optimizer steps of the whole stage.

    Lightning's bar counts batches of the current epoch, which says little when a stage
    is defined in steps (pretraining phases, clustering up to ``max_steps``).
    """
    step, total = trainer.global_step, trainer.max_steps
    of_total = f"{step}/{total}" if total and total > 0 else str(step)
    if hasattr(pl_module, "phase") and hasattr(pl_module, "num_layers"):  # AutoencoderPretraining
        layer, _ = pl_module.phase(max(step - 1, 0))  # the phase of the step just taken
        name = "fine-tune" if layer < 0 else f"layer-wise {layer + 1}/{pl_module.num_layers}"
        return f"pretrain {name} · step {of_total}"
    if hasattr(pl_module, "refresh_count"):  # DEC clustering
        text = f"clustering · step {of_total} · P refreshes {pl_module.refresh_count}"
        delta = getattr(pl_module, "delta_label", math.nan)
        if isinstance(delta, float) and math.isfinite(delta):
            text += f" · labels changed {100 * delta:.2f}%"
        return text
    return f"{type(pl_module).__name__} · step {of_total}"


class PhaseProgress(L.Callback):
    """Sets the description of the trainer's TQDM progress bar to `describe_phase`.

    A plain callback rather than a progress bar subclass, so it can sit in a config that
    is also run with ``--trainer.enable_progress_bar false`` (Lightning refuses a progress
    bar callback then); without a TQDM bar it does nothing.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        progress = trainer.progress_bar_callback
        if not isinstance(progress, TQDMProgressBar) or not trainer.is_global_zero:
            return
        try:
            bar = progress.train_progress_bar
        except TypeError:  # not created (yet)
            return
        # the bar redraws right after this hook, when it updates its count
        bar.set_description(describe_phase(trainer, pl_module), refresh=False)
