"""Flush subnormal floats to zero on the CPU while a stage trains: a speed setting, not a numerical one.

Adam's moments (running means of the gradient and its square) of a weight whose gradient has gone
to zero (a ReLU unit that stopped firing) decay by beta1 or beta2 per step through the subnormal
range (below 1.2e-38, IEEE 754), where x86 arithmetic takes a slow microcode path; late in
pretraining a large share of the moments can sit there. Flushing them to zero (FTZ/DAZ) keeps every
step on the fast path. How much it saves on which CPU: docs/performance.md.
"""

from __future__ import annotations

import lightning as L
import torch


class FlushDenormals(L.Callback):
    """``torch.set_flush_denormal(True)`` (x86 FTZ/DAZ) from ``setup`` to ``teardown`` of each fit.

    Subnormal inputs and results then read as 0; every value of normal size computes as before, so a
    run differs from one without only where a number below 1.2e-38 took part. The setting is the
    calling thread's: with one torch thread per process (this project's CPU benchmarks) it covers
    all the work; with more, torch's other intra-op threads keep their own. On a CPU without
    SSE3 (or a non-x86 one) torch cannot set it and this does nothing. ``teardown`` switches it
    off again (torch's default; torch has no way to read the previous value).

    In a config it sits in ``trainer.callbacks``; ``dec-lightning`` gives it to the pretraining
    trainer too, as it does the trainer's hardware settings.
    """

    def __init__(self) -> None:
        self.active = False  # whether flushing is on now (False also where the CPU cannot flush)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.active = torch.set_flush_denormal(True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        torch.set_flush_denormal(False)
        self.active = False
