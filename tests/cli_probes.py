"""Callbacks that tests add to real ``dec-lightning`` runs with ``--trainer.callbacks+=cli_probes.…``."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL the process at the start of optimizer step ``step``: a job killed without warning."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
